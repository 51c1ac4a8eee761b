"""The range writer: a range's discrepancy rows, stored in batches under the run's cap."""

from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from replication.models import Discrepancy, ReconcileRun
from replication.reconcile.diff import Difference
from replication.rows import insert_rows

FLUSH_ROWS = 500


class DiscrepancyWriter:
    """Stores discrepancy rows in batches, at most RECONCILE_MAX_DISCREPANCY_ROWS per run.

    Ranges of one run write concurrently, so each batch first reserves its share of the cap
    on the run row; once the cap is reached rows are dropped (the counts stay complete).
    """

    def __init__(self, run: ReconcileRun, *, keep_for_repair: bool, range_index: int | None = None):
        self.run = run
        self.range_index = range_index
        self.cap = settings.RECONCILE_MAX_DISCREPANCY_ROWS
        self.keep_for_repair = keep_for_repair
        self.pending: list[Difference] = []
        self.kept: list[Discrepancy] = []
        self.full = False

    def add(self, difference: Difference) -> None:
        if self.full:
            return
        self.pending.append(difference)
        if len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        granted = self._reserve(len(self.pending))
        differences = self.pending[:granted]
        if granted < len(self.pending):
            self.full = True
        self.pending = []
        if not differences:
            return
        if self.keep_for_repair:
            # The repair updates the rows it acts on: model instances, with their ids.
            rows = [self._row(d) for d in differences]
            Discrepancy.objects.bulk_create(rows)
            self.kept.extend(rows)
        else:
            insert_discrepancies(self.run, self.range_index, differences)

    def _row(self, difference: Difference) -> Discrepancy:
        values = _values(self.run.pair.source_prefix, self.range_index, difference)
        return Discrepancy(run=self.run, **dict(zip(_DIFFERENCE_COLUMNS, values, strict=True)))

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


# What a difference says of itself, the same for a model instance and an inserted row.
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


def insert_discrepancies(run: ReconcileRun, range_index: int | None, differences) -> None:
    """The rows DiscrepancyWriter._row would make, in multi-row INSERTs without model
    instances (a tenth of bulk_create's CPU: tens of thousands of rows in a large run)."""
    columns = ("run", *_DIFFERENCE_COLUMNS, "repaired", "repair_outcome", "repair_error")
    fields = [Discrepancy._meta.get_field(name) for name in columns]
    moment = Discrepancy._meta.get_field("source_last_modified")
    prepared: dict = {}  # a listing repeats few distinct timestamps

    def when(value):
        if value not in prepared:
            prepared[value] = moment.get_db_prep_save(value, connection)
        return prepared[value]

    prefix = run.pair.source_prefix
    rows = []
    for d in differences:
        values = [
            when(v) if isinstance(v, datetime) else v for v in _values(prefix, range_index, d)
        ]
        rows.append((run.id, *values, False, "", ""))
    insert_rows(Discrepancy, fields, rows)
