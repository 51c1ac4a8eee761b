"""The tests' second S3 (tests/s3_backends.py): on loopback only, and empty for each test."""

import sys
from pathlib import Path

import boto3
import pytest

pytestmark = pytest.mark.s3_backends


def listening_addresses(port: int) -> set[str]:
    """The addresses with a socket listening on ``port``, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path("/proc/net", table).read_text().splitlines()[1:]:
            fields = line.split()
            address, local_port = fields[1].split(":")
            if fields[3] == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                if table == "tcp":
                    address = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
                found.add(address)
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's /proc/net/tcp")
def test_localstack_listens_on_loopback_only(localstack):
    assert listening_addresses(localstack.port) == {"127.0.0.1"}


def test_every_test_starts_with_an_s3_without_buckets(s3_server):
    s3 = boto3.client("s3", region_name="us-east-1")

    assert s3.list_buckets()["Buckets"] == []


def test_localstack_is_emptied_of_versions_delete_markers_uploads_and_buckets(localstack):
    s3 = localstack.client()
    s3.create_bucket(Bucket="left-behind")
    s3.put_bucket_versioning(Bucket="left-behind", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="left-behind", Key="k", Body=b"v1")
    s3.put_object(Bucket="left-behind", Key="k", Body=b"v2")
    s3.delete_object(Bucket="left-behind", Key="k")
    s3.create_multipart_upload(Bucket="left-behind", Key="unfinished")

    localstack.remove_every_bucket()

    assert s3.list_buckets()["Buckets"] == []
