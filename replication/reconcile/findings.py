"""What a reconcile establishes about each object, written into its ObjectState. ORM edge.

A run writes a finding for every object it found missing or mismatched, every object its
repair copied or deleted, and every object it found in sync that had an open problem (an
open failure, or a lacking finding): so a failure whose later success report was lost does
not stay open forever. In-flight, unverified and extra objects get none (an extra its repair
deleted does), nor do kept ones: a key kept at a guard release (finding "kept", written by
replication/protection/guard.py through ``upsert_findings``) keeps its record until a
finding of a later run, made because the source changed it again, replaces it.

It works in the same streaming pass as the diff and keeps memory flat: findings go out in
batched upserts, and the pair's problem keys in the range are read from the database in
pages, in S3's key order, and merged with the listing as it goes by; so are its kept keys.
A pair with no open problem and nothing kept costs two empty queries per range.
"""

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db import connection
from django.db.models import Q

from replication.models import ObjectState, ReconcileRun
from replication.models.events import LACKING_FINDINGS, OPEN_PROBLEM, ByteOrdered, Finding
from replication.reconcile.checksums import worth_checking
from replication.reconcile.diff import IN_SYNC, MISMATCHED, MISSING, Difference, Entry, still_kept
from replication.reconcile.ranges import KeyRange
from replication.rows import insert_rows

_FLUSH_ROWS = 500
_PAGE = 1000
_UNREAD = object()

# The finding a difference's kind establishes.
_FINDING_OF_KIND = {MISSING: Finding.MISSING, MISMATCHED: Finding.MISMATCHED}


def problems(pair_id: int) -> Q:
    """ObjectState rows of a pair with an open problem: an open failure, or a lacking finding
    that no newer event superseded (the two queryset methods of ObjectState, in one filter)."""
    return Q(pair_id=pair_id) & OPEN_PROBLEM


def problem_keys(pair_id: int, prefix: str, bounds: KeyRange) -> Iterator[str]:
    """The keys (relative to ``prefix``) of the pair's open problems in ``bounds``, in S3's
    key order, read a page at a time."""
    for key, *_ in _in_key_order(problems(pair_id), prefix, bounds, ()):
        yield key


def kept_keys(pair_id: int, prefix: str, bounds: KeyRange) -> Iterator[tuple[str, str, datetime]]:
    """(key relative to ``prefix``, kept ETag, kept at) of the pair's kept keys in ``bounds``,
    in S3's key order, read a page at a time."""
    kept = Q(pair_id=pair_id, finding=Finding.KEPT)
    yield from _in_key_order(kept, prefix, bounds, ("kept_etag", "kept_at"))


def _in_key_order(condition: Q, prefix: str, bounds: KeyRange, fields: tuple[str, ...]):
    # Keyset pages along object_state_problems_idx / object_state_kept_idx (pair, key in byte
    # order): each page starts after the last key of the one before and reads only its own
    # rows, so a million problems cost a thousand short index scans, not a thousand sorts.
    rows = (
        ObjectState.objects.filter(condition, key__startswith=prefix)
        .annotate(byte_key=ByteOrdered("key"))
        .order_by("byte_key")
    )
    if bounds.end is not None:
        rows = rows.filter(byte_key__lte=prefix + bounds.end)
    if bounds.start_after is None:
        # Every key of the prefix sorts at or after the prefix itself: start the scan there.
        page = rows.filter(byte_key__gte=prefix)
    else:
        page = rows.filter(byte_key__gt=prefix + bounds.start_after)
    while True:
        found = list(page.values_list("key", *fields)[:_PAGE])
        for key, *values in found:
            yield (key[len(prefix) :], *values)
        if len(found) < _PAGE:
            return
        page = rows.filter(byte_key__gt=found[-1][0])


class FindingWriter:
    """Collects one range's findings from the difference stream and upserts them in batches.

    ``see`` takes every difference of the range in key order, and the in-sync objects that
    ``wants_in_sync`` chose (``diff(..., in_sync=writer.wants_in_sync)``); ``repaired``
    takes the keys a repair copied. The differences pass through ``noting`` on their way to
    the checksums, so that an object they prove in sync is resolved only if it, too, had an
    open problem.
    """

    def __init__(self, run: ReconcileRun, bounds: KeyRange):
        self.run = run
        self.pair = run.pair
        self.prefix = self.pair.source_prefix
        # When the run began listing: every event before then, the listing could see.
        self.at: datetime = run.started_at
        self._problems = problem_keys(self.pair.id, self.prefix, bounds)
        # Read on first need (a range with nothing in sync asks nothing); None when exhausted.
        self._next_problem: object = _UNREAD
        self._kept = kept_keys(self.pair.id, self.prefix, bounds)
        self._next_kept: object = _UNREAD
        self.pending: list[dict] = []
        self.written = 0
        # Keys with an open problem that may yet come out in sync, asked about while the
        # merge ran ahead; at most the differences waiting for HEADs.
        self._wanted: set[str] = set()

    def wants_in_sync(self, key: str) -> bool:
        """Whether an object found in sync needs a finding (it had an open problem): the
        merge asks this of every in-sync key, in key order, and passes on only those."""
        wanted = self._is_problem(key)
        if wanted:
            self._wanted.add(key)
        return wanted

    def copy_failed(self, key: str) -> bool:
        """Whether the object's copy is known to have failed: an open failure, or the lacking
        finding of an earlier run that nothing superseded (the failure it followed is no
        longer "open", but the backup still lacks the object). The merge asks this of young
        differing keys, in key order, to count them missing, not in flight."""
        return self._is_problem(key)

    def kept(self, key: str, source: Entry | None, backup: Entry) -> bool:
        """Whether a differing or extra object is one the backup keeps as a guard release
        said, and still is (``still_kept``). The merge asks this in key order."""
        if self._next_kept is _UNREAD:
            self._next_kept = next(self._kept, None)
        while self._next_kept is not None and self._next_kept[0] < key:
            self._next_kept = next(self._kept, None)
        if self._next_kept is None or self._next_kept[0] != key:
            return False
        _, kept_etag, kept_at = self._next_kept
        return still_kept(kept_etag, kept_at, source, backup)

    def noting(self, differences: Iterable[Difference]) -> Iterator[Difference]:
        """``differences`` unchanged, asking ``wants_in_sync`` (in key order, as the merge
        does) of those the checksums may prove in sync."""
        for difference in differences:
            if difference.kind != IN_SYNC and worth_checking(difference):
                self.wants_in_sync(difference.key)
            yield difference

    def see(self, difference: Difference, *, copied: bool = False) -> None:
        """Note ``difference``; ``copied`` when the repair copied it (then that is the finding)."""
        wanted = difference.key in self._wanted
        self._wanted.discard(difference.key)
        if copied:
            self.repaired(difference.key, difference.source.last_modified)
            return
        finding = _FINDING_OF_KIND.get(difference.kind)
        if finding is not None:
            self._add(difference.key, finding, difference.source.last_modified)
        elif difference.kind == IN_SYNC and wanted:
            # Chosen by wants_in_sync before (which has moved past this key by now, the
            # merge running ahead of the HEADs).
            self._add(difference.key, Finding.IN_SYNC, difference.source.last_modified)

    def repaired(self, key: str, source_modified_at: datetime | None) -> None:
        self._add(key, Finding.REPAIRED, source_modified_at)

    def deleted(self, key: str) -> None:
        """An extra the repair deleted from the backup (a pair that mirrors deletes)."""
        self._add(key, Finding.DELETED, None)

    def _is_problem(self, key: str) -> bool:
        if self._next_problem is _UNREAD:
            self._next_problem = next(self._problems, None)
        while self._next_problem is not None and self._next_problem < key:
            self._next_problem = next(self._problems, None)
        return self._next_problem == key

    def _add(self, key: str, finding: str, source_modified_at: datetime | None) -> None:
        lacking = finding in LACKING_FINDINGS
        self.pending.append(
            {
                "key": self.prefix + key,
                "finding": finding,
                "source_modified_at": source_modified_at,
                "lacking_since": self.at if lacking else None,
            }
        )
        if len(self.pending) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            upsert_findings(self.pair.id, self.run.id, self.at, self.pending)
            self.written += len(self.pending)
            self.pending = []


# --- The upsert ------------------------------------------------------------------------------

# A row that only a finding creates: the event columns empty (see ObjectState).
_NO_EVENT = {
    "version_id": "",
    "event_name": "",
    "event_time": None,
    "sequencer": "",
    "sequencer_order": None,
    "attempt": 1,
    "size": None,
    "etag": "",
    "status": "",
    "error_code": "",
    "error_message": "",
    "finished_at": None,
    "updated_at": None,
}
# What a finding other than "kept" stores in the kept columns (callers may leave them out).
_NOT_KEPT = {"kept_etag": "", "kept_at": None}
# Any finding replaces a kept record: "kept" comes with its ETag and time, the others clear them.
_FINDING_FIELDS = [
    "finding",
    "finding_run",
    "finding_at",
    "source_modified_at",
    "kept_etag",
    "kept_at",
    "lacking_since",  # last: assigned by its own rule
]


def _upsert_clause() -> str:
    q = connection.ops.quote_name
    table = q(ObjectState._meta.db_table)
    column = {name: q(ObjectState._meta.get_field(name).column) for name in _FINDING_FIELDS}
    lacking = ", ".join(f"'{value}'" for value in LACKING_FINDINGS)
    assignments = [f"{column[name]} = EXCLUDED.{column[name]}" for name in _FINDING_FIELDS[:-1]]
    # Lacking since the first of consecutive runs that found it lacking: kept while the stored
    # finding is lacking and no newer event came between; restarted otherwise.
    still_lacking = (
        f"EXCLUDED.{column['lacking_since']} IS NOT NULL "
        f"AND {table}.{column['finding']} IN ({lacking}) "
        f"AND {table}.{column['lacking_since']} IS NOT NULL "
        f"AND ({table}.{q('event_time')} IS NULL "
        f"OR {table}.{q('event_time')} <= {table}.{column['finding_at']})"
    )
    assignments.append(
        f"{column['lacking_since']} = CASE WHEN {still_lacking} "
        f"THEN {table}.{column['lacking_since']} ELSE EXCLUDED.{column['lacking_since']} END"
    )
    # An older run never overwrites a newer run's finding (a redelivered range, say).
    newer = (
        f"{table}.{column['finding_at']} IS NULL "
        f"OR {table}.{column['finding_at']} <= EXCLUDED.{column['finding_at']}"
    )
    return (
        f"ON CONFLICT ({q('pair_id')}, {q('key')}) DO UPDATE SET {', '.join(assignments)} "
        f"WHERE {newer}"
    )


def upsert_findings(pair_id: int, run_id: int, at: datetime, findings: list[dict]) -> None:
    """INSERT ... ON CONFLICT (pair, key) DO UPDATE of the finding columns only: the event
    columns belong to ingest. ``findings`` holds key, finding, source_modified_at,
    lacking_since, kept_etag and kept_at; keys must be unique within the call. ``run_id`` is
    None for a finding no run made (keys kept at a guard release)."""
    fields = [f for f in ObjectState._meta.concrete_fields if not f.primary_key]
    # Every column but six is the same for all rows: prepared once, not once per row (a
    # large run upserts tens of thousands of findings).
    fixed = {**_NO_EVENT, "pair_id": pair_id, "finding_run_id": run_id, "finding_at": at}
    template = [
        f.get_db_prep_save(fixed[f.attname], connection) if f.attname in fixed else None
        for f in fields
    ]
    varying = [(i, f) for i, f in enumerate(fields) if f.attname not in fixed]
    prepared: dict = {}  # (field, value) -> database value: few distinct timestamps

    def prep(field, value):
        if value is None:
            return None
        if isinstance(value, str):
            return field.get_db_prep_save(value, connection)
        cached = prepared.get((field.attname, value))
        if cached is None:
            cached = prepared[field.attname, value] = field.get_db_prep_save(value, connection)
        return cached

    rows = []
    for finding in findings:
        row = template.copy()
        for i, f in varying:
            row[i] = prep(f, finding.get(f.attname, _NOT_KEPT.get(f.attname)))
        rows.append(row)
    insert_rows(ObjectState, fields, rows, _upsert_clause())
