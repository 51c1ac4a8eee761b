"""CSV export of a run's discrepancies, written for spreadsheets that execute formulas.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets skip before looking) is read as a formula by Excel and LibreOffice; keys and
error messages are untrusted, so such cells get a leading apostrophe (OWASP's advice).
"""

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# The CSV's columns: Discrepancy fields, in this order (the view reads exactly these).
HEADER = [
    "key",
    "kind",
    "source_size",
    "source_etag",
    "source_last_modified",
    "backup_size",
    "backup_etag",
    "backup_last_modified",
    "repair_outcome",
    "repair_error",
]


def neutralise(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


class _Line:
    """A file-like object whose write returns what was written, for csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[object]], header: list[str] = HEADER) -> Iterator[str]:
    """One CSV line per row, header first, every cell neutralised; nothing is held in memory."""
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([neutralise(cell) for cell in row])
