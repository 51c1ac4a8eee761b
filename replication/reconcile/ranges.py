"""Key ranges: how one pair is cut into pieces that several workers reconcile at once. Pure.

A range holds the keys ``k`` (prefix removed) with ``start_after < k <= end``; ``None`` is an
open bound. Boundaries are keys sampled every N source objects by the previous run, so the
ranges come out about N objects each; the listing of a range starts with S3's ``StartAfter``
and stops at the first key past ``end``, so no key is listed twice or skipped.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple


class KeyRange(NamedTuple):
    start_after: str | None = None
    end: str | None = None

    def contains(self, key: str) -> bool:
        return (self.start_after is None or key > self.start_after) and (
            self.end is None or key <= self.end
        )


def split(boundaries: Iterable[str], max_ranges: int) -> list[KeyRange]:
    """Ranges covering every key, cut at (at most ``max_ranges - 1`` of) ``boundaries``."""
    cuts = sorted(set(boundaries))
    if max_ranges < 1:
        raise ValueError("max_ranges must be at least 1")
    if len(cuts) > max_ranges - 1:
        # Regroup the len(cuts) + 1 pieces into max_ranges ranges of as many pieces each, give
        # or take one: the first range too, or the run waits on the others.
        pieces = len(cuts) + 1
        cuts = [cuts[i * pieces // max_ranges - 1] for i in range(1, max_ranges)]
    starts = [None, *cuts]
    ends = [*cuts, None]
    return [KeyRange(start, end) for start, end in zip(starts, ends, strict=True)]


class BoundarySampler:
    """Remembers every ``every``-th key it sees: the cut points for the next run."""

    def __init__(self, every: int):
        self.every = max(1, every)
        self.seen = 0
        self.boundaries: list[str] = []

    def see(self, key: str) -> None:
        self.seen += 1
        if self.seen % self.every == 0:
            self.boundaries.append(key)

    def see_all(self, items: Sequence, key: Callable[[object], str] | None = None) -> None:
        """``see`` the key of each of ``items`` in turn, without a call per item (a page)."""
        first = self.every - self.seen % self.every - 1  # the first of them to remember
        chosen = items[first :: self.every]
        self.boundaries.extend(chosen if key is None else map(key, chosen))
        self.seen += len(items)


# --- The first run: no previous run has sampled boundaries, so probe the key space ---------

Probe = Callable[[list[tuple[str | None, int]]], list[list[str]]]
"""Answers a batch of ``(start_after, max_keys)`` listings with their keys, in order."""

PROBE_PAGE = 200  # the first probe: a bucket smaller than this is one range
TOP = "\U0010ffff"  # sorts after every character a key can hold
_MAX_DEPTH = 3
_MAX_ESTIMATE_DEPTH = 12
_LEVELS_AT_ONCE = 3  # levels down the first key walked together while estimating the size
_WALK = 16
_AHEAD = 4  # at most this many characters asked at once in a walk
MIN_RANGE_KEYS = 10_000  # a first run plans no range smaller than this (ten S3 pages)
_MAX_PROBES = 2000
_NEXT_ROUNDS = 4
_PREFIX_ASKS = 3  # lengths asked at once while looking for the keys' common prefix


def first_run_cuts(probe: Probe, wanted: int) -> list[str]:
    """Cut points for a pair's first run, found by start-after probes of its source keys.

    The keys' common prefix is found first (a bucket whose keys all sit under one
    directory), then the distinct next characters after it (one probe per character of the
    alphabet the first page uses, digits always, then "the key after each branch" for the
    characters the first page did not show), level by level until there are ``wanted`` or
    more branches: sequential numbers branch on their leading digits, a tree of directories
    on its names. The size of the bucket is estimated along the way (``_estimate``) and no
    range is planned smaller than MIN_RANGE_KEYS, so a small bucket stays one range.
    Any cut is correct (the ranges still cover every key once); only the balance depends on
    them.
    """
    if wanted < 2:
        return []
    probe = _remembering(probe)
    (first,) = probe([(None, PROBE_PAGE)])
    if len(first) < PROBE_PAGE:
        return []
    # The key after the first page (is a branch held whole by it?) rides along with the
    # prefix search's first round trip.
    prefix = _common_prefix(_also_asking(probe, (first[-1], 1)), first[0], first[-1])
    alphabet = sorted(set("".join(first)) | set("0123456789"))
    estimate, branches = _estimate(probe, first, prefix, alphabet, wanted * MIN_RANGE_KEYS)
    wanted = min(wanted, estimate // MIN_RANGE_KEYS)
    if wanted < 2:
        return []
    for _ in range(_MAX_DEPTH - 1):
        if len(branches) >= wanted or len(branches) * (len(alphabet) + 1) > _MAX_PROBES:
            break
        deeper = _deeper(probe, branches, alphabet)
        if not deeper:
            break
        branches = deeper
    # A cut at a branch's own name ends the range before that branch's keys (longer keys sort
    # after it); the first branch needs no cut.
    return branches[1:]


def too_small_to_split(objects: int) -> bool:
    """True for a source of this many objects: probes would plan it as one range anyway,
    since no range is planned smaller than MIN_RANGE_KEYS."""
    return objects < 2 * MIN_RANGE_KEYS


def _remembering(probe: Probe) -> Probe:
    """``probe``, asking S3 only what it was not asked before (the steps overlap)."""
    known: dict[tuple[str | None, int], list[str]] = {}

    def ask(asks: list[tuple[str | None, int]]) -> list[list[str]]:
        new = [a for a in dict.fromkeys(asks) if a not in known]
        if new:
            known.update(zip(new, probe(new), strict=True))
        return [known[a] for a in asks]

    return ask


def _also_asking(probe: Probe, ask: tuple[str | None, int]) -> Probe:
    """``probe``, adding ``ask`` to its next round trip (for a remembering probe to keep)."""
    pending = [ask]

    def with_it(asks: list[tuple[str | None, int]]) -> list[list[str]]:
        extra = [pending.pop()] if pending else []
        return probe(asks + extra)[: len(asks)]

    return with_it


def _deeper(probe: Probe, stems: list[str], alphabet: list[str]) -> list[str]:
    """The branches of all ``stems``, each walked from its smallest (the key after it)."""
    answers = probe([(stem, 1) for stem in stems])
    starts = {
        stem: keys[0][: len(stem) + 1]
        for stem, keys in zip(stems, answers, strict=True)
        if keys and keys[0].startswith(stem) and len(keys[0]) > len(stem)
    }
    return _walk(probe, starts, alphabet)


def _walk(probe: Probe, starts: dict[str, str], alphabet: list[str]) -> list[str]:
    """The branches of each stem, walked from its first branch ``starts[stem]``.

    Each step asks for the key after the last branch found ("the key after this branch"),
    which costs least where there are few; all stems share each round trip. Each step also
    asks ahead, for twice as many characters as the step before (up to _AHEAD), which of
    the alphabet's next characters' branches come after: where branches follow one another
    in the alphabet (digits, letters), one round trip finds several. A stem with more than
    _WALK branches has them found all at once by alphabet instead.
    """
    walking = {stem: [branch] for stem, branch in starts.items()}
    walked: list[str] = []
    wide: list[str] = []
    ahead = 1
    while walking:
        guesses = {}
        for stem, found in walking.items():
            last = found[-1][-1]
            room = _WALK + 1 - len(found)
            guesses[stem] = [last, *[c for c in alphabet if c > last][: min(ahead, room) - 1]]
        asks = [(stem + c + TOP, 1) for stem, chars in guesses.items() for c in chars]
        answers = iter(probe(asks))
        for stem, chars in guesses.items():
            found = walking[stem]
            ended = False
            for guess, after in zip(chars, [next(answers) for _ in chars], strict=True):
                if ended or guess != found[-1][-1]:
                    continue  # a guessed character that is not the next branch: its answer is moot
                if not (after and after[0].startswith(stem) and len(after[0]) > len(stem)):
                    ended = True
                else:
                    found.append(after[0][: len(stem) + 1])
            if ended:
                walked += walking.pop(stem)
            elif len(found) > _WALK:
                wide.append(stem)
                del walking[stem]
        ahead = min(ahead * 2, _AHEAD)
    return sorted(walked + (_branches(probe, wide, alphabet) if wide else []))


def _branches(probe: Probe, stems: list[str], alphabet: list[str]) -> list[str]:
    """The distinct one-character extensions of ``stems`` that some key starts with."""

    def branch_of(stem: str, keys: list[str]) -> str | None:
        if keys and keys[0].startswith(stem) and len(keys[0]) > len(stem):
            return keys[0][: len(stem) + 1]
        return None

    # Each stem's first key after the stem itself finds its smallest branch.
    asks = [(stem, stem + c) for stem in stems for c in ("", *alphabet)]
    answers = probe([(bound, 1) for _stem, bound in asks])
    found = {branch_of(stem, keys) for (stem, _bound), keys in zip(asks, answers, strict=True)}
    found.discard(None)
    # Characters the first page did not show: the key after each branch finds the next.
    new = found
    for _ in range(_NEXT_ROUNDS):
        asks = [(branch[:-1], branch + TOP) for branch in sorted(new)]
        answers = probe([(bound, 1) for _stem, bound in asks])
        new = {branch_of(stem, keys) for (stem, _bound), keys in zip(asks, answers, strict=True)}
        new -= found | {None}
        if not new:
            break
        found |= new
    return sorted(found)


def _estimate(
    probe: Probe, first: list[str], prefix: str, alphabet: list[str], enough: int
) -> tuple[int, list[str]]:
    """Roughly how many keys there are (or at least ``enough``), and the branches of ``prefix``.

    Down the first key's branches from ``prefix``: the product of the levels' fan-outs times
    the keys of the first branch the first page holds whole (keys spread evenly, as numbered
    or dated keys are). The first page says which branches those levels go down, so up to
    _LEVELS_AT_ONCE levels are walked together, in the same round trips. Stops as soon as the
    product alone says the bucket is big enough.
    """
    after_first: list[str] | None = None

    def whole(branch: str) -> bool:
        # The first page holds the branch whole: it ends before the page does, or the key
        # after the page is not in it.
        nonlocal after_first
        if not first[-1].startswith(branch):
            return True
        if after_first is None:
            (after_first,) = probe([(first[-1], 1)])
        return not (after_first and after_first[0].startswith(branch))

    multiplier = 1
    top: list[str] = []
    stem = prefix
    depth = 0
    while depth < _MAX_ESTIMATE_DEPTH:
        # The stems of the next levels down the first key, while its branches are not whole.
        stems = [stem]
        while len(stems) < _LEVELS_AT_ONCE and len(first[0]) > len(stems[-1]) + 1:
            head = first[0][: len(stems[-1]) + 1]
            if whole(head):
                break
            stems.append(head)
        found = _levels(probe, stems, first[0], alphabet)
        for level in stems:
            branches = found[level]
            if level == prefix:
                top = branches
            depth += 1
            if not branches:
                return multiplier * PROBE_PAGE, top
            head = branches[0]
            if whole(head):
                inside = sum(1 for key in first if key.startswith(head))
                return multiplier * len(branches) * inside, top
            multiplier *= len(branches)
            if multiplier * PROBE_PAGE >= enough:
                return multiplier * PROBE_PAGE, top
        stem = head
    return multiplier * PROBE_PAGE, top


def _levels(
    probe: Probe, stems: list[str], first: str, alphabet: list[str]
) -> dict[str, list[str]]:
    """The branches of each of ``stems`` (prefixes of the first key ``first``, one per level),
    walked together."""
    walkable = {stem: first[: len(stem) + 1] for stem in stems if len(first) > len(stem)}
    found: dict[str, list[str]] = {stem: [] for stem in stems}
    for branch in _walk(probe, walkable, alphabet) if walkable else []:
        found[branch[:-1]].append(branch)
    for stem in stems:
        if stem not in walkable:
            found[stem] = _branches(probe, [stem], alphabet)
    return found


def _common_prefix(probe: Probe, first: str, last_seen: str) -> str:
    """The longest prefix of ``first`` that every key shares (nothing sorts after it + TOP)."""
    limit = 0
    while limit < min(len(first), len(last_seen)) and first[limit] == last_seen[limit]:
        limit += 1
    low, high = 0, limit  # every key shares first[:low]; first[:high + 1] is not shared
    while low < high:
        # Several lengths per round trip, evenly between the bounds: sharing is monotone
        # (a key past first[:m] + TOP shares no longer prefix either), so the shortest
        # length that is not shared ends the round.
        step = (high - low) / (_PREFIX_ASKS + 1)
        lengths = sorted({low + max(1, round(step * i)) for i in range(1, _PREFIX_ASKS + 1)})
        lengths = [m for m in lengths if m <= high]
        for m, after in zip(lengths, probe([(first[:m] + TOP, 1) for m in lengths]), strict=True):
            if after:
                high = m - 1
                break
            low = m
    return first[:low]
