"""Multi-row INSERTs of rows already prepared for the database. I/O edge.

Reconcile writes tens of thousands of discrepancy and finding rows in a large run; building
model instances for ``bulk_create`` cost ten times the CPU of the rows themselves.
"""

from django.db import connection, models


def insert_rows(
    model: type[models.Model], fields: list[models.Field], rows: list, suffix: str = ""
) -> None:
    """INSERT ``rows`` (sequences of database values in ``fields`` order) into ``model``'s
    table, in batches the database accepts; ``suffix`` (an ON CONFLICT clause) ends each."""
    quote = connection.ops.quote_name
    into = f"{quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    batch = connection.ops.bulk_batch_size(fields, rows) or len(rows)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            params = [value for row in chunk for value in row]
            values = ", ".join([one_row] * len(chunk))
            cursor.execute(f"INSERT INTO {into} VALUES {values} {suffix}", params)  # noqa: S608
