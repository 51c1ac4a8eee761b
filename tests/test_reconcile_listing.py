"""Listing both sides with boto3 against moto and LocalStack: prefixes, pages, key ranges,
clear errors."""

from datetime import UTC, datetime, timedelta

import boto3
import botocore.utils
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from replication import s3 as s3_clients
from replication.reconcile import listing
from replication.reconcile.listing import ListingError, ParallelListing, Side, describe_error
from replication.reconcile.ranges import split
from tests.s3_backends import differs_from_s3

pytestmark = pytest.mark.s3_backends

SOURCE = Side("source", "listing-src", "data/")
BACKUP = Side("backup", "listing-bak", "copies/2026/")


@pytest.fixture
def s3(s3_server):
    client = boto3.client("s3", region_name="us-east-1")
    for side in (SOURCE, BACKUP):
        client.create_bucket(Bucket=side.bucket)
    return client


def put(s3, side: Side, key: str, body: bytes = b"x") -> None:
    s3.put_object(Bucket=side.bucket, Key=side.prefix + key, Body=body)


def keys(entries) -> list[str]:
    return [e.key for e in entries]


def test_listing_strips_each_sides_prefix_and_ignores_keys_outside_it(s3):
    put(s3, SOURCE, "a.txt")
    put(s3, SOURCE, "dir/b.txt", b"hello")
    s3.put_object(Bucket=SOURCE.bucket, Key="elsewhere/c.txt", Body=b"x")
    s3.put_object(Bucket=SOURCE.bucket, Key="data-old/d.txt", Body=b"x")
    put(s3, BACKUP, "a.txt")

    with ParallelListing(s3, SOURCE, s3, BACKUP) as both:
        source, backup = list(both.source), list(both.backup)

    assert keys(source) == ["a.txt", "dir/b.txt"]
    assert keys(backup) == ["a.txt"]
    hello = source[1]
    assert hello.size == 5
    assert hello.etag == "5d41402abc4b2a76b9719d911017c592"  # md5("hello"), without quotes


def test_listing_follows_every_page(s3, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    for n in range(7):
        put(s3, SOURCE, f"k{n}")
    pages = list(listing.list_pages(s3, SOURCE))
    assert len(pages) == 4
    assert keys(e for page in pages for e in page) == [f"k{n}" for n in range(7)]


def test_key_ranges_partition_a_listing_exactly(s3, monkeypatch, request):
    differs_from_s3(
        request,
        "localstack",
        "compares StartAfter with URL-encoded keys under encoding-type=url (which botocore "
        "always asks for): keys beyond ASCII that sort after it are left out",
    )
    monkeypatch.setattr(listing, "PAGE_SIZE", 3)
    all_keys = [f"k{n:02d}" for n in range(20)] + ["\u00e9t\u00e9", "\U0001f600"]
    for key in all_keys:
        put(s3, SOURCE, key)
    ranges = split(["k04", "k05", "k13", "\u00e9t\u00e9"], max_ranges=8)

    listed = [keys(e for page in listing.list_pages(s3, SOURCE, r) for e in page) for r in ranges]

    assert [key for part in listed for key in part] == all_keys
    assert listed[1] == ["k05"]


def test_empty_and_absent_prefixes_list_nothing(s3):
    with ParallelListing(s3, SOURCE, s3, BACKUP) as both:
        assert list(both.source) == []
        assert list(both.backup) == []


def test_missing_bucket_is_reported_in_one_line(s3):
    gone = Side("backup", "no-such-bucket", "")
    with pytest.raises(ListingError) as raised, ParallelListing(s3, SOURCE, s3, gone) as both:
        list(both.source)
        list(both.backup)
    assert str(raised.value) == "backup bucket 'no-such-bucket' does not exist"


def test_unreachable_endpoint_is_reported_in_one_line():
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(ListingError, match="cannot reach the S3 endpoint for source bucket"):
        list(listing.list_pages(s3, SOURCE))


def client_error(code: str, status: int, **extra) -> ClientError:
    response = {"Error": {"Code": code, "Message": "nope", **extra}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status, "HTTPHeaders": {}}
    return ClientError(response, "ListObjectsV2")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            client_error("AccessDenied", 403),
            "access denied to source bucket 'listing-src': "
            "the credentials need s3:ListBucket on it",
        ),
        (
            client_error("PermanentRedirect", 301, Region="eu-west-1"),
            "source bucket 'listing-src' is in another region than the pair's (it is in eu-west-1)",
        ),
        (
            client_error("AuthorizationHeaderMalformed", 400),
            "source bucket 'listing-src' is in another region than the pair's",
        ),
        (client_error("NoSuchBucket", 404), "source bucket 'listing-src' does not exist"),
        (
            client_error("SlowDown", 503),
            "S3 error listing source bucket 'listing-src': SlowDown nope",
        ),
    ],
)
def test_s3_errors_become_one_line_an_operator_can_act_on(error, message):
    assert describe_error(error, SOURCE) == message


def test_a_consumer_leaving_early_stops_the_listing_threads(s3, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 1)
    for n in range(30):
        put(s3, SOURCE, f"k{n:02d}")
    with ParallelListing(s3, SOURCE, s3, BACKUP) as both:
        assert next(both.source).key == "k00"
    for thread in both._threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27T12:00:00.000Z",
        "2026-11-27T12:00:00Z",
        "2026-11-27T12:00:00.123456+00:00",
        "Fri, 27 Nov 2026 12:00:00 GMT",  # HEAD's Last-Modified
        "1764244800",
    ],
)
def test_fast_timestamp_parser_agrees_with_botocores(value):
    parsed = s3_clients.parse_timestamp(value)
    assert parsed == botocore.utils.parse_timestamp(value)
    assert parsed.utcoffset() == timedelta(0)


def test_project_clients_list_aware_timestamps(s3):
    put(s3, SOURCE, "a")
    (entry,) = next(listing.list_pages(s3_clients.client("us-east-1"), SOURCE))
    assert entry.last_modified.utcoffset() == timedelta(0)
    assert abs(entry.last_modified - datetime.now(UTC)) < timedelta(minutes=5)
