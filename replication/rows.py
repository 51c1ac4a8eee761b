"""Multi-row INSERTs of rows already prepared for the database, and per-row UPDATEs of many
model instances. I/O edge.

Ingest stores batches of events and states this way on SQLite, and reconcile its discrepancy
and finding rows (tens of thousands in a large run, where building model instances for
``bulk_create`` cost ten times the CPU of the rows themselves). Restore and reconcile write
outcomes with ``update_rows``: ``bulk_update``'s CASE with a WHEN per row and field cost a
restore more CPU than all its copies.
"""

from django.db import connection, models


def insert_rows(
    model: type[models.Model], fields: list[models.Field], rows: list, suffix: str = ""
) -> list:
    """INSERT ``rows`` (sequences of database values in ``fields`` order) into ``model``'s
    table, in batches the database accepts; ``suffix`` (ON CONFLICT, RETURNING) ends each.

    Returns the rows a RETURNING clause gave, else one empty tuple per row written (inserted,
    or updated by an upsert: SQLite and PostgreSQL count both).
    """
    quote = connection.ops.quote_name
    into = f"{quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    batch = connection.ops.bulk_batch_size(fields, rows) or len(rows)
    written: list = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            params = [value for row in chunk for value in row]
            values = ", ".join([one_row] * len(chunk))
            cursor.execute(f"INSERT INTO {into} VALUES {values} {suffix}", params)  # noqa: S608
            if "RETURNING" in suffix:
                written += cursor.fetchall()
            else:
                written += [()] * cursor.rowcount
    return written


def update_rows(model: type[models.Model], objs: list, field_names: list[str]) -> None:
    """Write ``field_names`` of each of ``objs`` (saved instances of ``model``): one UPDATE
    by primary key, executed for every row at once."""
    if not objs:
        return
    fields = [model._meta.get_field(name) for name in field_names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    pk = quote(model._meta.pk.column)
    # Only the model's own table and column names are spliced in; every value is a parameter.
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {pk} = %s"  # noqa: S608
    params = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields]
        + [obj.pk]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
