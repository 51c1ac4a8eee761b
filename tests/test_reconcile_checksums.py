"""The checksum second opinion against moto: HEADs settle what the listing cannot.

moto 5.2.5 stores and returns CRC32, SHA1 and SHA256 checksums, full-object multipart CRC32
included; CRC64NVME and CRC32C need botocore's optional CRT on the client, so these tests use
CRC32 where real S3 would default to CRC64NVME. moto does not make SSE-KMS ETags, so a test
sets one on the stored object, as S3 would show it to both the listing and HEAD.
"""

from itertools import count

import pytest
from django.utils import timezone
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from replication import s3 as s3_clients
from replication.models import Finding, ObjectState, ReconcileRun
from replication.reconcile import verify
from replication.reconcile.checksums import from_head
from replication.reconcile.diff import IN_SYNC, UNVERIFIED, Difference, Entry, Tally
from replication.reconcile.listing import Side
from replication.reconcile.verify import second_opinion
from tests.lambda_support import answer_on_the_wire, answer_with_error
from tests.reconcile_support import (
    an_hour_ago,
    failed_copy,
    found,
    prefixed_pair,
    reconcile_now,
)

SOURCE, BACKUP = "sum-src", "sum-bak"
SRC_PREFIX, BAK_PREFIX = "live/", "copies/"
MiB = 1024 * 1024
KMS_ETAG = "c0ffee00c0ffee00c0ffee00c0ffee00"


@pytest.fixture
def docs(db, s3):
    return prefixed_pair(SOURCE, BACKUP, SRC_PREFIX, BAK_PREFIX)


def body_of(size: int, fill: bytes = b"a") -> bytes:
    return fill * size


def upload_in_parts(s3, bucket: str, key: str, body: bytes, **checksum) -> str:
    """A multipart upload in 5 MiB parts; ``checksum`` as create_multipart_upload takes it."""
    algorithm = checksum.get("ChecksumAlgorithm")
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **checksum)
    parts = []
    for number, start in enumerate(range(0, len(body), 5 * MiB), start=1):
        extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
        part = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body[start : start + 5 * MiB],
            **extra,
        )
        done = {"PartNumber": number, "ETag": part["ETag"]}
        if algorithm:
            done[f"Checksum{algorithm}"] = part[f"Checksum{algorithm}"]
        parts.append(done)
    complete = {"ChecksumType": checksum["ChecksumType"]} if "ChecksumType" in checksum else {}
    result = s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
        **complete,
    )
    return result["ETag"].strip('"')


FULL_CRC32 = {"ChecksumAlgorithm": "CRC32", "ChecksumType": "FULL_OBJECT"}


def multipart_source(s3, key: str, body: bytes, **checksum) -> str:
    return upload_in_parts(s3, SOURCE, SRC_PREFIX + key, body, **checksum)


def put_backup(s3, key: str, body: bytes, **checksum) -> str:
    return s3.put_object(Bucket=BACKUP, Key=BAK_PREFIX + key, Body=body, **checksum)["ETag"]


def put_source(s3, key: str, body: bytes, **checksum) -> str:
    return s3.put_object(Bucket=SOURCE, Key=SRC_PREFIX + key, Body=body, **checksum)["ETag"]


def give_kms_etag(bucket: str, key: str) -> None:
    """SSE-KMS ETags are not MD5s of the content; moto always makes MD5s, so set one."""
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key)
    stored._etag = KMS_ETAG


def before_head(hook) -> None:
    """Calls ``hook(bucket, key)`` before each HeadObject the run's client makes."""
    s3_clients.listing_client().meta.events.register(
        "before-parameter-build.s3.HeadObject",
        lambda params, **_: hook(params["Bucket"], params["Key"]),
    )


def count_heads() -> list[tuple[str, str]]:
    heads: list[tuple[str, str]] = []
    before_head(lambda bucket, key: heads.append((bucket, key)))
    return heads


def assert_counts_add_up(run: ReconcileRun) -> None:
    # No young object in these tests: every object is in exactly one category.
    in_both = run.in_sync + run.mismatched + run.unverified
    assert run.in_flight == 0
    assert run.source_objects == in_both + run.missing
    assert run.destination_objects == in_both + run.extra


def test_the_reconcile_clients_head_reads_as_botocores_parser_does(s3):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        put_source(s3, "plain.txt", b"no checksum")
        put_source(s3, "sha.txt", b"sha", ChecksumAlgorithm="SHA256")
        put_source(s3, "crc.txt", b"crc", ChecksumAlgorithm="CRC32")
        multipart_source(s3, "full.bin", body, **FULL_CRC32)
        multipart_source(s3, "parts.bin", body, ChecksumAlgorithm="CRC32", ChecksumType="COMPOSITE")
    lean, plain = s3_clients.listing_client(), s3_clients.client()

    for name in ("plain.txt", "sha.txt", "crc.txt", "full.bin", "parts.bin"):
        ask = {"Bucket": SOURCE, "Key": SRC_PREFIX + name, "ChecksumMode": "ENABLED"}
        lean_head, plain_head = lean.head_object(**ask), plain.head_object(**ask)
        fields = lean_head.keys() - {"ResponseMetadata"}
        assert {f: lean_head[f] for f in fields} == {f: plain_head[f] for f in fields}, name
        assert from_head(lean_head) == from_head(plain_head), name
    assert from_head(lean.head_object(Bucket=SOURCE, Key=SRC_PREFIX + "sha.txt")).algorithm is None


def test_a_head_refused_on_the_wire_is_a_failure_the_run_reads_not_an_answer(s3):
    with an_hour_ago():
        put_source(s3, "sha.txt", b"sha", ChecksumAlgorithm="SHA256")
    lean = s3_clients.listing_client()
    answer_on_the_wire(lean, "HeadObject", status=403, code="AccessDenied", times=1)
    failures: list[str] = []

    assert verify.head_checksum(lean, SOURCE, SRC_PREFIX + "sha.txt", failures) is None
    assert len(failures) == 1 and "403" in failures[0]
    assert verify.head_checksum(lean, SOURCE, SRC_PREFIX + "sha.txt").algorithm == "SHA256"


def test_multipart_source_with_full_object_checksum_copied_single_part_is_in_sync(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        etag = multipart_source(s3, "big.bin", body, **FULL_CRC32)
        backup_etag = put_backup(s3, "big.bin", body, ChecksumAlgorithm="CRC32")

    run = reconcile_now(docs)

    assert etag.endswith("-2") and "-" not in backup_etag
    assert run.status == ReconcileRun.Status.SUCCEEDED
    assert (run.in_sync, run.unverified, run.mismatched) == (1, 0, 0)
    assert run.checksum_settled == 1
    assert found(run) == {}


def test_an_open_failure_on_an_object_checksums_prove_in_sync_is_resolved(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "big.bin", body, **FULL_CRC32)
        put_backup(s3, "big.bin", body, ChecksumAlgorithm="CRC32")
        failed_copy(docs, "big.bin", timezone.now())

    run = reconcile_now(docs)

    assert run.checksum_settled == 1
    row = ObjectState.objects.get(pair=docs, key=SRC_PREFIX + "big.bin")
    assert (row.finding, row.finding_run_id) == (Finding.IN_SYNC, run.pk)
    assert not ObjectState.objects.open_failures().exists()


def test_an_object_checksums_prove_in_sync_with_no_open_problem_gets_no_state_row(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "big.bin", body, **FULL_CRC32)
        put_backup(s3, "big.bin", body, ChecksumAlgorithm="CRC32")
        failed_copy(docs, "other.bin", timezone.now())  # a problem elsewhere in the range

    run = reconcile_now(docs)

    assert run.checksum_settled == 1
    assert not ObjectState.objects.filter(key=SRC_PREFIX + "big.bin").exists()


def test_same_size_different_content_with_checksums_is_mismatched_not_unverified(s3, docs):
    with an_hour_ago():
        multipart_source(s3, "big.bin", body_of(5 * MiB + 10, b"a"), **FULL_CRC32)
        put_backup(s3, "big.bin", body_of(5 * MiB + 10, b"b"), ChecksumAlgorithm="CRC32")

    run = reconcile_now(docs)

    assert (run.in_sync, run.unverified, run.mismatched) == (0, 0, 1)
    assert run.checksum_settled == 1
    assert found(run) == {"mismatched": {"big.bin"}}


def test_objects_without_checksums_stay_unverified(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "big.bin", body)  # no checksum asked for: moto stores none
        s3.copy_object(
            Bucket=BACKUP, Key=BAK_PREFIX + "big.bin", CopySource=f"{SOURCE}/{SRC_PREFIX}big.bin"
        )

    run = reconcile_now(docs)

    assert (run.in_sync, run.unverified, run.checksum_settled) == (0, 1, 0)
    assert found(run) == {"unverified": {"big.bin"}}


def test_composite_checksum_against_a_full_object_one_stays_unverified(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "big.bin", body, ChecksumAlgorithm="CRC32", ChecksumType="COMPOSITE")
        put_backup(s3, "big.bin", body, ChecksumAlgorithm="CRC32")

    run = reconcile_now(docs)

    assert (run.in_sync, run.unverified, run.checksum_settled) == (0, 1, 0)


def test_single_part_etags_differing_only_by_kms_with_equal_checksums_are_in_sync(s3, docs):
    with an_hour_ago():
        put_source(s3, "doc.txt", b"same bytes", ChecksumAlgorithm="SHA256")
        put_backup(s3, "doc.txt", b"same bytes", ChecksumAlgorithm="SHA256")
        put_source(s3, "edited.txt", b"new bytes!", ChecksumAlgorithm="SHA256")
        put_backup(s3, "edited.txt", b"old bytes!", ChecksumAlgorithm="SHA256")
    give_kms_etag(BACKUP, BAK_PREFIX + "doc.txt")
    give_kms_etag(BACKUP, BAK_PREFIX + "edited.txt")

    run = reconcile_now(docs)

    assert (run.in_sync, run.mismatched, run.checksum_settled) == (1, 1, 1)
    assert found(run) == {"mismatched": {"edited.txt"}}
    row = run.discrepancies.get()
    assert row.backup_etag == KMS_ETAG


def test_counts_add_up_and_ranges_agree_when_checksums_settle_differences(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "a-equal.bin", body, **FULL_CRC32)
        put_backup(s3, "a-equal.bin", body, ChecksumAlgorithm="CRC32")
        multipart_source(s3, "b-changed.bin", body, **FULL_CRC32)
        put_backup(s3, "b-changed.bin", body_of(len(body), b"z"), ChecksumAlgorithm="CRC32")
        multipart_source(s3, "c-unknown.bin", body)
        put_backup(s3, "c-unknown.bin", body)
        put_source(s3, "d-missing.txt", b"m")
        put_backup(s3, "e-extra.txt", b"e")
        put_source(s3, "f-same.txt", b"s")
        put_backup(s3, "f-same.txt", b"s")
        put_source(s3, "g-size.txt", b"longer")
        put_backup(s3, "g-size.txt", b"short")

    whole = reconcile_now(docs)
    split = reconcile_now(docs, boundaries=["b-changed.bin", "d-missing.txt"])

    assert (whole.in_sync, whole.missing, whole.extra) == (2, 1, 1)
    assert (whole.mismatched, whole.unverified, whole.checksum_settled) == (2, 1, 2)
    assert_counts_add_up(whole)
    assert whole.discrepancies.count() == whole.differences
    for name in ("in_sync", "missing", "extra", "mismatched", "unverified", "checksum_settled"):
        assert getattr(split, name) == getattr(whole, name), name


def test_no_head_is_made_when_the_listing_settles_everything(s3, docs):
    with an_hour_ago():
        for n in range(5):
            put_source(s3, f"k{n}", b"same")
            put_backup(s3, f"k{n}", b"same")
        put_source(s3, "missing", b"m")
        put_backup(s3, "extra", b"e")
        put_source(s3, "resized", b"longer")
        put_backup(s3, "resized", b"short")
    heads = count_heads()

    run = reconcile_now(docs)

    assert (run.in_sync, run.missing, run.extra, run.mismatched) == (5, 1, 1, 1)
    assert heads == []


def test_source_without_checksum_spares_the_backups_head(s3, docs):
    with an_hour_ago():
        multipart_source(s3, "big.bin", body_of(5 * MiB + 10))
        put_backup(s3, "big.bin", body_of(5 * MiB + 10), ChecksumAlgorithm="CRC32")
    heads = count_heads()

    run = reconcile_now(docs)

    assert run.unverified == 1
    assert heads == [(SOURCE, SRC_PREFIX + "big.bin")]


@pytest.mark.parametrize(
    ("status", "code"), [(403, "AccessDenied"), (503, "SlowDown"), (500, "InternalError")]
)
def test_a_failing_head_leaves_the_listings_verdict_and_the_run_succeeds(
    s3, docs, status, code, caplog
):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "big.bin", body, **FULL_CRC32)
        put_backup(s3, "big.bin", body, ChecksumAlgorithm="CRC32")
        put_source(s3, "kms.txt", b"x", ChecksumAlgorithm="SHA256")
        put_backup(s3, "kms.txt", b"x", ChecksumAlgorithm="SHA256")
    give_kms_etag(BACKUP, BAK_PREFIX + "kms.txt")
    answered = answer_with_error(
        s3_clients.listing_client(),
        "HeadObject",
        status=status,
        code=code,
        when=lambda u: BACKUP in u,
    )

    run = reconcile_now(docs)

    assert len(answered) == 2
    assert run.status == ReconcileRun.Status.SUCCEEDED
    assert (run.unverified, run.mismatched, run.checksum_settled) == (1, 1, 0)
    assert found(run) == {"unverified": {"big.bin"}, "mismatched": {"kms.txt"}}
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith("verify")]
    assert len(warnings) == 1
    assert warnings[0].startswith("2 checksum HEADs failed") and code in warnings[0]


def test_an_object_deleted_before_its_head_keeps_the_listings_verdict(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "big.bin", body, **FULL_CRC32)
        put_backup(s3, "big.bin", body, ChecksumAlgorithm="CRC32")

    def vanish(bucket, key):
        if bucket == BACKUP:
            s3.delete_object(Bucket=bucket, Key=key)  # moto answers this HEAD with a real 404

    before_head(vanish)

    run = reconcile_now(docs)

    assert run.status == ReconcileRun.Status.SUCCEEDED
    assert (run.unverified, run.checksum_settled) == (1, 0)


def test_an_object_overwritten_before_its_head_keeps_the_listings_verdict(s3, docs):
    body = body_of(5 * MiB + 10)
    with an_hour_ago():
        multipart_source(s3, "big.bin", body, **FULL_CRC32)
        put_backup(s3, "big.bin", body_of(len(body), b"z"), ChecksumAlgorithm="CRC32")

    def overwrite(bucket, key):
        if bucket == BACKUP:
            # Now equal to the source, but the listing counted the old version.
            put_backup(s3, "big.bin", body, ChecksumAlgorithm="CRC32")

    before_head(overwrite)

    run = reconcile_now(docs)

    # The HEAD saw a newer backup than the listing did: it proves nothing about the listed one.
    assert (run.unverified, run.mismatched, run.in_sync) == (1, 0, 0)


def test_repair_copies_what_checksums_proved_different_then_rerun_is_in_sync(s3, docs):
    with an_hour_ago():
        multipart_source(s3, "big.bin", body_of(5 * MiB + 10, b"a"), **FULL_CRC32)
        put_backup(s3, "big.bin", body_of(5 * MiB + 10, b"b"), ChecksumAlgorithm="CRC32")

    repaired = reconcile_now(docs, repair=True)
    again = reconcile_now(docs)

    assert (repaired.mismatched, repaired.repaired) == (1, 1)
    assert (again.in_sync, again.differences) == (1, 0)


# --- The streaming stage on its own -----------------------------------------------------------


def test_second_opinion_keeps_key_order_and_reads_a_bounded_window_ahead(s3):
    source, backup = Side("source", SOURCE, ""), Side("backup", BACKUP, "")
    consumed = count()
    read = []

    def differences():
        for n in range(40):
            key = f"k{n:02d}"
            # Not in moto: every HEAD fails with a 404 and the verdicts stay as they were.
            listed = Entry(key, 1, "f00-2" if n % 2 else "f00", timezone.now())
            read.append(next(consumed))
            yield Difference(UNVERIFIED, key, listed, listed._replace(etag="f00"))

    tally = Tally(unverified=40)
    stage = second_opinion(differences(), tally, s3=s3, source=source, backup=backup, threads=2)

    first = next(stage)
    read_before_first = len(read)
    rest = list(stage)

    assert first.key == "k00"
    assert read_before_first <= 2 * 4 + 1  # threads x the window per thread, plus one
    assert [d.key for d in [first, *rest]] == [f"k{n:02d}" for n in range(40)]
    assert tally.unverified == 40


def test_objects_in_sync_queue_behind_a_head_without_stalling_the_listing(s3, monkeypatch):
    monkeypatch.setattr(verify, "MAX_WAITING", 50)
    source, backup = Side("source", SOURCE, ""), Side("backup", BACKUP, "")
    read = []

    def differences():
        # One difference worth a HEAD, then objects in sync (passing through for the findings).
        listed = Entry("a", 1, "f00-2", timezone.now())
        read.append("a")
        yield Difference(UNVERIFIED, "a", listed, listed._replace(etag="f00"))
        for n in range(200):
            same = Entry(f"b{n:03d}", 1, "f00", timezone.now())
            read.append(same.key)
            yield Difference(IN_SYNC, same.key, same, same)

    stage = second_opinion(differences(), Tally(unverified=1, in_sync=200), s3=s3, source=source,
                           backup=backup, threads=2)  # fmt: skip
    first = next(stage)
    read_before_first = len(read)
    rest = list(stage)

    # The listing ran ahead of the HEAD as far as the bound on waiting differences allows,
    # not just the HEADs' window of 8, and order held.
    assert read_before_first == 51
    assert [d.key for d in [first, *rest]] == read
