"""Small factories for the objects most tests need. Keyword arguments override defaults."""

import itertools

from replication.models import BucketPair, IngestKey

_seq = itertools.count(1)


def make_pair(**fields) -> BucketPair:
    n = next(_seq)
    values = {
        "name": f"pair-{n}",
        "source_bucket": f"source-{n}",
        "backup_bucket": f"backup-{n}",
    }
    values.update(fields)
    pair = BucketPair(**values)
    pair.full_clean()
    pair.save()
    return pair


def make_ingest_key(**fields) -> IngestKey:
    values = {"name": f"key-{next(_seq)}"}
    values.update(fields)
    return IngestKey.objects.create(**values)
