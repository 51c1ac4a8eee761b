"""Which of several results for one object is the newest (pure: no Django, no I/O).

S3 stamps every event with a ``sequencer``, a hexadecimal string that grows with each change
to a key. Events arrive in any order (S3 delivers at least once, Lambda retries, batches
overlap), so the current state of an object is the result whose sequencer is greatest.

S3's documentation says to compare two sequencers by right-padding the shorter with zeros and
then comparing the strings (older copies of that page said left-pad; the current one is
right). We store that padded form, upper-cased and of one fixed width, so a plain string
comparison gives S3's order in Python and in the database alike: fixed-width strings of
``0-9A-F`` sort the same under every collation PostgreSQL and SQLite offer.
"""

import re
from collections.abc import Hashable, Iterable
from datetime import datetime
from typing import NamedTuple, Protocol, TypeVar

# S3's sequencers are 16 to 18 hex digits today. Twice that leaves room to grow; a longer one
# is refused rather than cut, because cutting it could make two different events compare equal.
SEQUENCER_WIDTH = 32

_HEX = re.compile(r"[0-9A-Fa-f]+", re.ASCII)


class Precedence(NamedTuple):
    """Orders results for one object: the greatest wins.

    Results of the same S3 event (a retry, or the event delivered twice and handled twice)
    share its sequencer: the one that finished last is the newest, so a failure that a later
    retry fixed is superseded whatever attempt number each carries (a redelivered event
    starts again at attempt 1). ``attempt`` breaks the last tie so every server picks the
    same winner.
    """

    sequencer_order: str
    finished_at: datetime
    attempt: int


def sequencer_order(sequencer: str) -> str:
    """The fixed-width form of ``sequencer`` whose string order is S3's event order.

    Raises ValueError when ``sequencer`` is not 1 to SEQUENCER_WIDTH hex digits.
    """
    if not _HEX.fullmatch(sequencer):
        raise ValueError("must be a hexadecimal string")
    if len(sequencer) > SEQUENCER_WIDTH:
        raise ValueError(f"must be at most {SEQUENCER_WIDTH} hexadecimal digits")
    return sequencer.upper().ljust(SEQUENCER_WIDTH, "0")


class _Ranked(Protocol):
    @property
    def precedence(self) -> Precedence: ...


T = TypeVar("T", bound=_Ranked)
K = TypeVar("K", bound=Hashable)


def newest_per_object(results: Iterable[tuple[K, T]]) -> dict[K, T]:
    """Keep, for each object key, the result with the greatest precedence.

    On equal precedence the first one seen is kept, as the database keeps the stored one.
    """
    newest: dict[K, T] = {}
    for obj, result in results:
        current = newest.get(obj)
        if current is None or result.precedence > current.precedence:
            newest[obj] = result
    return newest
