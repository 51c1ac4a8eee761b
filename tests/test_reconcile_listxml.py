"""The lean ListObjectsV2 parser reads every page exactly as botocore's own parser does."""

import importlib.util
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.handlers import decode_list_object_v2
from botocore.parsers import RestXMLParser
from moto import mock_aws

from replication import s3 as s3_clients
from replication.reconcile.listing import ListingError, Side, list_pages
from replication.reconcile.listxml import ListXMLError, parse_list_page

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("s3sim", ROOT / "bench" / "s3sim.py")
s3sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s3sim)

_OUTPUT = (
    botocore.session.get_session()
    .get_service_model("s3")
    .operation_model("ListObjectsV2")
    .output_shape
)

ODD_KEYS = [
    "plain/key.txt",
    "with space and+plus",
    "amp&lt<gt>quote\"apos'",
    "percent%20not-encoded%",
    "\u00e9t\u00e9/\u65e5\u672c/\U0001f600.bin",
    "tab\tand\nnewline\rcarriage",
    "ctrl\x01\x1f",
    "trailing/",
    "~tilde;semi=eq?q#hash",
]


def botocore_page(body: bytes, strip: int = 0) -> tuple:
    """The reference: botocore's parser, then its URL decoding (as for an auto-set type)."""
    parsed = RestXMLParser().parse({"body": body, "headers": {}, "status_code": 200}, _OUTPUT)
    decode_list_object_v2(parsed, context={"encoding_type_auto_set": True})
    objects = [
        (o["Key"][strip:], o["Size"], o["ETag"].strip('"'), o["LastModified"])
        for o in parsed.get("Contents", [])
    ]
    prefixes = [p["Prefix"] for p in parsed.get("CommonPrefixes", [])]
    token = parsed.get("NextContinuationToken") if parsed.get("IsTruncated") else None
    return objects, prefixes, parsed.get("IsTruncated", False), token


def lean_page(body: bytes, strip: int = 0) -> tuple:
    page = parse_list_page(body, strip)
    objects = [(e.key, e.size, e.etag, e.last_modified) for e in page.objects]
    return objects, page.common_prefixes, page.is_truncated, page.next_token


def recorded_moto_pages(keys, **params) -> list[bytes]:
    """Raw ListObjectsV2 bodies as moto sends them, paginated through boto3."""
    bodies = []
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="pages")
        for n, key in enumerate(keys):
            client.put_object(Bucket="pages", Key=key, Body=b"x" * n)
        client.meta.events.register(
            "before-parse.s3.ListObjectsV2",
            lambda response_dict, **kw: bodies.append(response_dict["body"]),
        )
        for _ in client.get_paginator("list_objects_v2").paginate(Bucket="pages", **params):
            pass
    return bodies


@pytest.mark.parametrize(
    "params",
    [{}, {"PaginationConfig": {"PageSize": 3}}, {"Delimiter": "/"}, {"Prefix": "plain/"}],
    ids=["one-page", "pages", "delimiter", "prefix"],
)
def test_lean_parser_equals_botocore_on_moto_pages_with_odd_keys(params):
    bodies = recorded_moto_pages(ODD_KEYS, **params)
    assert bodies
    for body in bodies:
        assert b"<EncodingType>url</EncodingType>" in body
        assert lean_page(body) == botocore_page(body)
        assert lean_page(body, strip=2) == botocore_page(body, strip=2)


@pytest.mark.parametrize("url", [True, False], ids=["url", "xml-escaped"])
@pytest.mark.parametrize("delimiter", ["", "/"])
def test_lean_parser_equals_botocore_on_generated_pages(url, delimiter):
    bucket = s3sim.Bucket("bak-5000-dirs", seed=3)
    query = {"list-type": "2", "_bucket": bucket.name, "max-keys": "700", "delimiter": delimiter}
    if url:
        query["encoding-type"] = "url"
    for start in range(0, 5000, 997):  # pages around the keys with odd characters
        query["start-after"] = bucket.key(start, 0)
        body = s3sim.list_objects(bucket, query)
        assert lean_page(body) == botocore_page(body)


def test_lean_parser_reads_pages_written_another_way():
    # Pretty-printed, other element order, an owner, checksums, entities and CRLF: the fast
    # path does not match, the generic pass must read it as botocore does.
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>tok&amp;en==</NextContinuationToken>
  <Contents>
    <Size>12</Size>
    <Key>a&#38;b&#x20;c&#13;d\r\ne</Key>
    <ETag>"0123456789abcdef0123456789abcdef-2"</ETag>
    <LastModified>2026-11-27T10:00:00.123Z</LastModified>
    <Owner><ID>abc</ID><DisplayName>me</DisplayName></Owner>
    <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents><Key>second</Key><LastModified>2026-11-27T10:00:01Z</LastModified><ETag>&quot;e&quot;</ETag><ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType><Size>0</Size></Contents>
</ListBucketResult>"""
    assert lean_page(body) == botocore_page(body)
    assert lean_page(body)[0][0][0] == "a&b c\rd\ne"
    assert lean_page(body)[3] == "tok&en=="


def test_an_empty_page_and_a_body_that_is_no_listing():
    empty = s3sim.list_objects(s3sim.Bucket("src-0", 1), {"list-type": "2", "_bucket": "src-0"})
    assert lean_page(empty) == botocore_page(empty) == ([], [], False, None)
    with pytest.raises(ListXMLError):
        parse_list_page(b"<Error><Code>InternalError</Code></Error>")


def test_the_listing_client_lists_through_the_lean_parser_like_a_plain_client():
    side = Side("source", "pages", "plain/")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="pages")
        for n in range(7):
            client.put_object(Bucket="pages", Key=f"plain/{n} &%+", Body=b"x" * n)
        lean = [
            e for page in list_pages(s3_clients.listing_client("us-east-1"), side) for e in page
        ]
        plain = [e for page in list_pages(client, side) for e in page]
    assert lean == plain
    assert [e.key for e in lean] == [f"{n} &%+" for n in range(7)]


def test_an_error_body_sent_with_200_is_an_error_not_an_empty_listing():
    sim = s3sim.S3Sim(latency=0).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(
                s3sim,
                "list_objects",
                lambda *a: b"<?xml version='1.0'?><Error><Code>X</Code></Error>",
            )
            mp.setenv("AWS_ENDPOINT_URL", sim.endpoint)
            mp.setattr(s3_clients.settings, "S3_MAX_ATTEMPTS", 1, raising=False)
            s3_clients.reset_clients()
            with pytest.raises(ListingError):
                list(
                    list_pages(s3_clients.listing_client("us-east-1"), Side("source", "src-5", ""))
                )
    finally:
        sim.stop()
