"""bench/s3sim.py, the benchmarks' synthetic S3, answers boto3 as moto does for the same objects."""

import importlib.util
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("s3sim", ROOT / "bench" / "s3sim.py")
s3sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s3sim)

BUCKETS = ["bak-1500-dirs", "src-1100-flat", "bak-700-onedir"]


@pytest.fixture(scope="module")
def sim():
    server = s3sim.S3Sim(latency=0, seed=7).start()
    yield boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    server.stop()


@pytest.fixture(scope="module")
def moto():
    """The same objects, put into moto (through its backend: thousands of PUTs are slow)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for name in BUCKETS:
            client.create_bucket(Bucket=name)
            for _i, _v, key in s3sim.Bucket(name, seed=7).walk(0, 0):
                backend.put_object(name, key, b"")
        yield client


def listing(client, **params):
    keys, prefixes = [], []
    for page in client.get_paginator("list_objects_v2").paginate(**params):
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes


@pytest.mark.parametrize("bucket", BUCKETS)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"PaginationConfig": {"PageSize": 333}},
        {"Delimiter": "/"},
        {"Prefix": "data/00001/", "PaginationConfig": {"PageSize": 250}},
        {"Prefix": "data/", "Delimiter": "/", "PaginationConfig": {"PageSize": 1}},
        {"Prefix": "00000012"},
        {"StartAfter": "data/00000/000000500.bin", "PaginationConfig": {"PageSize": 400}},
        {"StartAfter": "0000000512 a", "Prefix": "00000005"},
        {"StartAfter": "logs/2026/0000000007.gz.extra"},
    ],
)
def test_s3sim_lists_the_same_keys_in_the_same_order_as_moto(sim, moto, bucket, params):
    ours = listing(sim, Bucket=bucket, **params)
    assert ours == listing(moto, Bucket=bucket, **params)


def test_keys_come_in_utf8_byte_order_with_the_known_diff(sim):
    source, _ = listing(sim, Bucket="src-1500-dirs")
    backup, _ = listing(sim, Bucket="bak-1500-dirs")
    want = s3sim.known_diff(1500)

    assert source == sorted(source, key=str.encode) and len(source) == 1500
    assert backup == sorted(backup, key=str.encode)
    assert set(source) - set(backup) == want["missing"]
    assert set(backup) - set(source) == want["extra"]


def test_head_and_get_agree_with_the_listing_and_changed_objects_differ(sim):
    listed = {
        o["Key"]: o
        for page in sim.get_paginator("list_objects_v2").paginate(Bucket="bak-1500-dirs")
        for o in page["Contents"]
    }
    want = s3sim.known_diff(1500)
    key = sorted(want["mismatched"])[0]
    head = sim.head_object(Bucket="bak-1500-dirs", Key=key, ChecksumMode="ENABLED")
    source = sim.head_object(Bucket="src-1500-dirs", Key=key, ChecksumMode="ENABLED")
    body = sim.get_object(Bucket="bak-1500-dirs", Key=key, ChecksumMode="ENABLED")["Body"].read()

    assert head["ETag"] == listed[key]["ETag"] != source["ETag"]
    assert head["ContentLength"] == listed[key]["Size"] == len(body)
    assert head["ChecksumSHA256"] != source["ChecksumSHA256"]
    same = "data/00000/000000004.bin"
    assert (
        sim.head_object(Bucket="bak-1500-dirs", Key=same)["ETag"]
        == sim.head_object(Bucket="src-1500-dirs", Key=same)["ETag"]
    )


def test_unknown_buckets_and_keys_are_s3_errors(sim):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="NoSuchBucket"):
        sim.list_objects_v2(Bucket="no-such-bucket")
    with pytest.raises(ClientError, match="404"):
        sim.head_object(Bucket="src-10", Key="data/00000/000000010.bin")


def every_listing_query(bucket):
    """Listing queries of every form over a bucket's keys: each bound, edge and encoding."""
    keys = [key for _i, _v, key in bucket.walk(0, 0)]
    bounds = ["", keys[0], keys[1], keys[-1], keys[-1] + "~", "data/00000/000000996", "0"]
    bounds += [k for k in keys if not s3sim._PLAIN.match(k)][:4]
    for after in bounds:
        for prefix in ("", "data/00001/", "logs/2026/000000", "00000005", "zz"):
            for max_keys in ("1000", "333", "1", "0"):
                for extra in ({}, {"encoding-type": "url"}):
                    yield {
                        "list-type": "2",
                        "start-after": after,
                        "prefix": prefix,
                        "max-keys": max_keys,
                        **extra,
                    }
                    yield {"marker": after, "prefix": prefix, "max-keys": max_keys, **extra}
        if after:
            token = s3sim._encode_token(after)
            yield {"list-type": "2", "continuation-token": token, "start-after": keys[0]}


@pytest.mark.parametrize("name", BUCKETS)
def test_a_prepared_bucket_answers_every_listing_byte_for_byte_as_before(name):
    computed, prepared = s3sim.Bucket(name, seed=7), s3sim.Bucket(name, seed=7)
    prepared.prepare()
    for query in every_listing_query(computed):
        query["_bucket"] = name
        assert s3sim.list_objects(prepared, query) == s3sim.list_objects(computed, query), query
