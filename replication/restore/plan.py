"""What a restore brings back, decided from the backup's versions. Pure.

A restore to ``at`` takes, for each key, the newest version whose LastModified is at or
before ``at``; when that newest entry is a delete marker the key did not exist then and is
skipped. The versions arrive in S3's ListObjectVersions order (keys ascending, a key's
versions together), so the plan holds one key's versions at a time: memory does not grow
with the bucket.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from replication.buckets import RESERVED_PREFIX

DRILL_PREFIX = RESERVED_PREFIX + "drills/"


class Version(NamedTuple):
    """One entry of a ListObjectVersions answer; ``key`` relative to the listed prefix."""

    key: str
    version_id: str
    last_modified: datetime
    size: int
    etag: str  # without quotes; "" for a delete marker
    is_delete_marker: bool = False
    is_latest: bool = False


class Choice(NamedTuple):
    """What the plan decided for one key: ``version`` is None when nothing is restored;
    then ``deleted`` says whether a delete marker was the newest entry at the time (else the
    key did not exist yet)."""

    key: str
    version: Version | None
    deleted: bool = False


def _newest_first(versions: list[Version]) -> list[Version]:
    # S3 lists a key's versions newest first; the sort is stable, so equal times keep that
    # order, except that the entry S3 marks latest comes first among equals (moto lists a
    # key's delete markers after its versions).
    return sorted(versions, key=lambda v: (v.last_modified, v.is_latest), reverse=True)


def choose(versions: list[Version], at: datetime) -> Choice:
    """The decision for one key's versions (all of the same key)."""
    for version in _newest_first(versions):
        if version.last_modified <= at:
            if version.is_delete_marker:
                return Choice(version.key, None, deleted=True)
            return Choice(version.key, version)
    return Choice(versions[0].key, None)


def plan(versions: Iterable[Version], at: datetime) -> Iterator[Choice]:
    """One choice per key, in key order, holding one key's versions at a time."""
    group: list[Version] = []
    for version in versions:
        if group and version.key != group[0].key:
            yield choose(group, at)
            group = []
        group.append(version)
    if group:
        yield choose(group, at)


@dataclass
class Totals:
    """The plan in figures: what is restored, what is skipped, how old the backup goes."""

    objects: int = 0
    bytes: int = 0
    deleted: int = 0  # keys whose newest entry at the time is a delete marker
    absent: int = 0  # keys that did not exist at the time (first written later)
    oldest: datetime | None = None  # the oldest version or delete marker seen

    def add(self, choice: Choice) -> None:
        if choice.version is not None:
            self.objects += 1
            self.bytes += choice.version.size
        elif choice.deleted:
            self.deleted += 1
        else:
            self.absent += 1


def counted(versions: Iterable[Version], totals: Totals) -> Iterator[Version]:
    """``versions`` unchanged, noting the oldest LastModified in ``totals`` on the way."""
    oldest = totals.oldest
    for version in versions:
        if oldest is None or version.last_modified < oldest:
            oldest = totals.oldest = version.last_modified
        yield version


def parse_time(text: str, now: datetime) -> datetime:
    """``--at``: ISO 8601, UTC when it has no offset, or ``now``. ValueError saying why."""
    text = text.strip()
    if text.lower() == "now":
        return now
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give ISO 8601, e.g. 2026-12-01T14:30:00Z (UTC without "
            "an offset), or 'now'"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def time_problem(at: datetime, now: datetime, *, versioned: bool, tolerance_s: float = 60) -> str:
    """Why ``at`` cannot be restored to, before listing anything; "" when it can be."""
    if at > now:
        return f"{_utc(at)} is in the future (it is now {_utc(now)})"
    if not versioned and (now - at).total_seconds() > tolerance_s:
        return (
            "the backup bucket does not keep versions, so only its current state can be "
            f"restored (--at now), not {_utc(at)}"
        )
    return ""


def empty_plan_problem(totals: Totals, at: datetime, prefix: str) -> str:
    """Why a plan with nothing to restore is refused; "" when it has objects."""
    if totals.objects:
        return ""
    where = f"under {prefix!r}" if prefix else "in the backup"
    if totals.oldest is None:
        return f"nothing to restore: the backup holds no versions {where}"
    if totals.oldest > at:
        return (
            f"{_utc(at)} is before the oldest backup version {where} ({_utc(totals.oldest)}): "
            "nothing existed then"
        )
    return f"nothing to restore: every key {where} was deleted at {_utc(at)}"


@dataclass(frozen=True)
class Target:
    """Where restored objects land: ``prefix`` followed by each key relative to the pair."""

    bucket: str
    prefix: str

    @property
    def location(self) -> str:
        return f"{self.bucket}/{self.prefix}"


def target_problem(
    target: Target,
    *,
    source: Target,
    backup: Target,
    into_source: bool = False,
) -> str:
    """Why ``target`` may not be written by a restore of the pair; "" when it may.

    A target that shares keys with the source or the backup would be copied again by the
    Lambda or counted by reconcile; the reserved prefix at the backup bucket's root is the
    one exception.
    """
    if into_source:
        return ""
    if target.bucket == backup.bucket and target.prefix.startswith(RESERVED_PREFIX):
        return ""
    for name, side in (("source", source), ("backup", backup)):
        if target.bucket == side.bucket and (
            target.prefix.startswith(side.prefix) or side.prefix.startswith(target.prefix)
        ):
            return (
                f"the target {target.location} is inside the pair's {name} "
                f"{side.location}: restore elsewhere, under {backup.bucket}/{RESERVED_PREFIX}, "
                "or into the source with --into-source"
            )
    return ""


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
