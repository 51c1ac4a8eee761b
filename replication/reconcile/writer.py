"""The range writer: a range's discrepancy rows, stored in batches under the run's cap."""

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from replication.models import Discrepancy, ReconcileRun
from replication.reconcile.diff import Difference
from replication.reconcile.repair import Repaired
from replication.rows import insert_rows

FLUSH_ROWS = 500


class DiscrepancyWriter:
    """Stores discrepancy rows in batches, at most RECONCILE_MAX_DISCREPANCY_ROWS per run.

    Ranges of one run write concurrently, so each batch first reserves its share of the cap
    on the run row; once the cap is reached rows are dropped (the counts stay complete, and
    a repair acts on every difference it finds, stored or not).
    """

    def __init__(self, run: ReconcileRun, *, range_index: int | None = None):
        self.run = run
        self.range_index = range_index
        self.cap = settings.RECONCILE_MAX_DISCREPANCY_ROWS
        self.pending: list[tuple[Difference, Repaired | None]] = []
        self.full = False

    def add(self, difference: Difference, repaired: Repaired | None = None) -> None:
        """Store ``difference``, with what the repair did to it if it acted on it."""
        if self.full:
            return
        self.pending.append((difference, repaired))
        if len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        granted = self._reserve(len(self.pending))
        rows = self.pending[:granted]
        if granted < len(self.pending):
            self.full = True
        self.pending = []
        if rows:
            insert_discrepancies(self.run, self.range_index, rows)

    def _reserve(self, wanted: int) -> int:
        with transaction.atomic():
            stored = (
                ReconcileRun.objects.select_for_update()
                .values_list("discrepancies_stored", flat=True)
                .get(id=self.run.id)
            )
            granted = max(0, min(wanted, self.cap - stored))
            if granted:
                ReconcileRun.objects.filter(id=self.run.id).update(
                    discrepancies_stored=F("discrepancies_stored") + granted
                )
        return granted


# What a difference says of itself, as the columns of an inserted row.
_DIFFERENCE_COLUMNS = (
    "key",
    "range_index",
    "kind",
    "source_size",
    "source_etag",
    "source_last_modified",
    "backup_size",
    "backup_etag",
    "backup_last_modified",
)


def _values(prefix: str, range_index: int | None, difference: Difference) -> tuple:
    """``difference`` as the values of _DIFFERENCE_COLUMNS."""
    source, backup = difference.source, difference.backup
    return (
        # The source key as S3 names it, the one convention for people (see Discrepancy).
        prefix + difference.key,
        range_index,
        difference.kind,
        source.size if source else None,
        source.etag if source else "",
        source.last_modified if source else None,
        backup.size if backup else None,
        backup.etag if backup else "",
        backup.last_modified if backup else None,
    )


def insert_discrepancies(
    run: ReconcileRun,
    range_index: int | None,
    rows_of: Iterable[tuple[Difference, Repaired | None]],
) -> None:
    """Discrepancy rows of (difference, what the repair did) pairs, in multi-row INSERTs
    without model instances (a tenth of bulk_create's CPU: tens of thousands of rows)."""
    columns = (
        "run",
        *_DIFFERENCE_COLUMNS,
        "repaired",
        "repair_outcome",
        "repair_error",
        "settled",
    )
    fields = [Discrepancy._meta.get_field(name) for name in columns]
    moment = Discrepancy._meta.get_field("source_last_modified")
    prepared: dict = {}  # a listing repeats few distinct timestamps

    def when(value):
        if value not in prepared:
            prepared[value] = moment.get_db_prep_save(value, connection)
        return prepared[value]

    prefix = run.pair.source_prefix
    rows = []
    for d, repaired in rows_of:
        values = [
            when(v) if isinstance(v, datetime) else v for v in _values(prefix, range_index, d)
        ]
        if repaired is None:
            rows.append((run.id, *values, False, "", "", ""))
        else:
            rows.append((run.id, *values, repaired.done, repaired.outcome, repaired.error, ""))
    insert_rows(Discrepancy, fields, rows)
