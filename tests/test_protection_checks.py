"""Protection checks against S3 (moto and LocalStack: tests/s3_backends.py; refusals stubbed
at the client), kept with history."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber
from django.core.management import CommandError, call_command

from replication import s3
from replication.models import PolicyAcknowledgement, ProtectionResult
from replication.protection import health, posture, store, tasks
from replication.protection.rules import PUBLIC_ACCESS_BLOCKS
from tests.factories import make_pair
from tests.s3_backends import differs_from_s3

pytestmark = pytest.mark.s3_backends

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DenyInsecure",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "arn:aws:s3:::photos-bak/*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ],
}


def protect(client, source: str, backup: str) -> None:
    """Set up two buckets the way a protected pair's are."""
    for bucket in (source, backup):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=backup, VersioningConfiguration={"Status": "Enabled"})
    client.put_public_access_block(
        Bucket=backup,
        PublicAccessBlockConfiguration=dict.fromkeys(PUBLIC_ACCESS_BLOCKS, True),
    )
    client.put_bucket_notification_configuration(
        Bucket=source,
        # S3 checks that the queue exists and lets S3 send to it; this one is only named.
        SkipDestinationValidation=True,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": "arn:aws:sqs:us-east-1:123456789012:replicator",
                    "Events": ["s3:ObjectCreated:*"],
                }
            ]
        },
    )


def bare(client, *buckets: str) -> None:
    """Buckets with none of the settings: S3 turns the public-access blocks on for every new
    bucket (since April 2023), so they are taken off, as on a bucket made before that."""
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
        client.delete_public_access_block(Bucket=bucket)


@pytest.fixture
def aws(s3_server):
    """The site's client, reaching the test's S3 (each backend in turn), with no buckets."""
    return s3.client()


def states(checks) -> dict[str, str]:
    return {c.id.value: c.state.value for c in checks}


def test_a_protected_pair_passes_every_check(aws, pair):
    protect(aws, "photos-src", "photos-bak")
    checks = store.run_checks(pair)
    assert set(states(checks).values()) == {"ok"}
    assert [c.id.value for c in checks] == [
        "backup_versioning",
        "backup_retention",
        "backup_object_lock",
        "backup_public_access",
        "backup_policy",
        "source_trigger",
        "encryption",
    ]


def test_bare_buckets_fail_with_the_fixes(aws, pair):
    bare(aws, "photos-src", "photos-bak")
    found = states(store.run_checks(pair))
    assert found["backup_versioning"] == "warning"
    assert found["backup_public_access"] == "critical"
    assert found["source_trigger"] == "critical"
    assert found["backup_retention"] == "ok"
    assert found["encryption"] == "ok"


def test_a_new_bucket_has_the_public_access_blocks_s3_turns_on_by_default(request, aws, pair):
    differs_from_s3(request, "moto", "creates buckets without S3's default public-access blocks")
    aws.create_bucket(Bucket="photos-src")
    aws.create_bucket(Bucket="photos-bak")
    assert states(store.run_checks(pair))["backup_public_access"] == "ok"


def test_lifecycle_rules_read_from_s3_are_judged_against_the_backup_prefix(aws, db):
    pair = make_pair(source_bucket="photos-src", backup_bucket="photos-bak", backup_prefix="bak/")
    protect(aws, "photos-src", "photos-bak")
    aws.put_bucket_lifecycle_configuration(
        Bucket="photos-bak",
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "logs",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "logs/"},
                    "Expiration": {"Days": 1},
                },
                {
                    "ID": "short",
                    "Status": "Enabled",
                    "Filter": {"And": {"Prefix": "bak/", "Tags": [{"Key": "a", "Value": "b"}]}},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                },
            ]
        },
    )
    check = next(c for c in store.run_checks(pair) if c.id.value == "backup_retention")
    assert check.state.value == "warning"
    assert "rule 'short' deletes noncurrent versions after 7 days" in check.reason
    assert "logs" not in check.reason


def test_object_lock_read_from_s3(aws, pair):
    protect(aws, "photos-src", "other-bak")
    aws.create_bucket(Bucket="photos-bak", ObjectLockEnabledForBucket=True)
    aws.put_object_lock_configuration(
        Bucket="photos-bak",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 10}},
        },
    )
    check = next(c for c in store.run_checks(pair) if c.id.value == "backup_object_lock")
    assert check.state.value == "warning"
    assert "10 days (GOVERNANCE)" in check.reason


def test_access_denied_makes_a_check_unknown_with_the_reason_never_ok(pair):
    client = s3.client()
    stub = Stubber(client)
    stub.add_client_error("get_bucket_versioning", "AccessDenied", "Access Denied", 403)
    stub.add_client_error(
        "get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration", http_status_code=404
    )
    stub.add_client_error(
        "get_object_lock_configuration",
        "ObjectLockConfigurationNotFoundError",
        http_status_code=404,
    )
    stub.add_response(
        "get_public_access_block",
        {"PublicAccessBlockConfiguration": dict.fromkeys(PUBLIC_ACCESS_BLOCKS, True)},
    )
    stub.add_client_error("get_bucket_policy", "AccessDenied", "Access Denied", 403)
    stub.add_response("get_bucket_notification_configuration", {"EventBridgeConfiguration": {}})
    stub.add_response(
        "get_bucket_encryption",
        {
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            }
        },
    )
    stub.add_client_error("get_bucket_encryption", "AccessDenied", "Access Denied", 403)
    with stub:
        checks = store.run_checks(pair, client=client)
    stub.assert_no_pending_responses()
    by_id = {c.id.value: c for c in checks}
    assert by_id["backup_versioning"].state.value == "unknown"
    assert by_id["backup_versioning"].reason == (
        "could not be read: GetBucketVersioning: access to bucket 'photos-bak' is denied "
        "(AccessDenied)"
    )
    assert by_id["backup_policy"].state.value == "unknown"
    assert by_id["encryption"].state.value == "unknown"
    assert by_id["backup_public_access"].state.value == "ok"
    assert by_id["source_trigger"].state.value == "ok"
    assert health.health_findings([pair], datetime.now(UTC))[pair.pk][0][0] == "warning"


def test_a_gone_backup_bucket_is_unknown_everywhere_not_ok(aws, pair):
    aws.create_bucket(Bucket="photos-src")
    found = states(store.run_checks(pair))
    assert all(found[c] == "unknown" for c in found if c not in ("source_trigger",))


def test_every_run_keeps_its_results_and_one_latest_per_check(aws, pair):
    protect(aws, "photos-src", "photos-bak")
    store.run_checks(pair, now=NOW - timedelta(hours=1))
    aws.put_bucket_versioning(Bucket="photos-bak", VersioningConfiguration={"Status": "Suspended"})
    store.run_checks(pair, now=NOW)
    history = ProtectionResult.objects.filter(pair=pair, check_id="backup_versioning")
    assert [r.state for r in history] == ["warning", "ok"]
    assert [r.is_latest for r in history] == [True, False]
    latest = store.latest([pair.pk])[pair.pk]
    assert len(latest) == 7
    assert latest[0].check_id == "backup_versioning" and latest[0].state == "warning"


def test_a_policy_changed_after_acknowledgement_warns_until_acknowledged_again(
    aws, pair, admin_user
):
    protect(aws, "photos-src", "photos-bak")
    aws.put_bucket_policy(Bucket="photos-bak", Policy=json.dumps(POLICY))
    first = {c.id.value: c for c in store.run_checks(pair)}["backup_policy"]
    assert first.state.value == "warning"
    assert store.acknowledge_policy(pair, admin_user)
    assert PolicyAcknowledgement.objects.get(pair=pair).acknowledged_by == admin_user
    assert {c.id.value: c for c in store.run_checks(pair)}["backup_policy"].state.value == "ok"

    changed = json.loads(json.dumps(POLICY))
    changed["Statement"][0]["Effect"] = "Allow"
    aws.put_bucket_policy(Bucket="photos-bak", Policy=json.dumps(changed))
    check = {c.id.value: c for c in store.run_checks(pair)}["backup_policy"]
    assert check.state.value == "warning"
    assert '-      "Effect": "Deny",' in check.detail
    assert store.acknowledge_policy(pair, admin_user)
    latest = ProtectionResult.objects.get(pair=pair, check_id="backup_policy", is_latest=True)
    assert latest.state == "ok"


def test_posture_command_prints_json_and_exits_0_whatever_the_states(aws, pair, capsys):
    aws.create_bucket(Bucket="photos-src")
    aws.create_bucket(Bucket="photos-bak")
    call_command("posture", "photos", "--json")
    document = json.loads(capsys.readouterr().out)
    assert document["pair"] == "photos"
    assert {c["id"]: c["state"] for c in document["checks"]}["source_trigger"] == "critical"
    assert set(document["checks"][0]) == {"id", "state", "reason"}
    assert ProtectionResult.objects.filter(pair=pair).count() == 7


def test_posture_command_prints_each_check_with_its_fix(aws, pair, capsys):
    aws.create_bucket(Bucket="photos-src")
    aws.create_bucket(Bucket="photos-bak")
    call_command("posture", "photos")
    out = capsys.readouterr().out
    assert "backup_versioning     warning   versioning is off" in out
    assert "fix: aws s3api put-bucket-versioning --bucket photos-bak" in out


def test_posture_command_names_an_unknown_pair_in_one_line(db):
    with pytest.raises(CommandError, match=r"^no pair named 'nope'$"):
        call_command("posture", "nope")


def test_the_hourly_task_checks_every_enabled_pair(aws, db):
    protect(aws, "photos-src", "photos-bak")
    on = make_pair(source_bucket="photos-src", backup_bucket="photos-bak")
    make_pair(
        source_bucket="photos-src", backup_bucket="photos-bak", source_prefix="x/", enabled=False
    )
    assert tasks.check_all_protection() == 1
    assert set(ProtectionResult.objects.values_list("pair_id", flat=True)) == {on.pk}


def test_the_hourly_beat_entry_expires_before_the_next(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["check-protection"]
    assert entry["task"] == "replication.protection.tasks.check_all_protection"
    assert entry["options"]["expires"] < entry["schedule"] == 3600


def test_health_findings_for_many_pairs_in_two_queries(aws, db, django_assert_num_queries):
    protect(aws, "photos-src", "photos-bak")
    bare(aws, "bare-bak")
    good = make_pair(source_bucket="photos-src", backup_bucket="photos-bak")
    bad = make_pair(source_bucket="photos-src", backup_bucket="bare-bak", source_prefix="b/")
    never = make_pair(source_bucket="photos-src", backup_bucket="photos-bak", source_prefix="n/")
    for pair in (good, bad):
        store.run_checks(pair, now=NOW)
    with django_assert_num_queries(2):
        found = health.health_findings([good, bad, never], NOW + timedelta(minutes=5))
    assert list(found) == [bad.pk]
    assert found[bad.pk][0] == (
        "critical",
        "protection: backup public access: no public-access block is set on the backup "
        "bucket: a policy or ACL can make it public",
    )
    assert ("warning", found[bad.pk][-1][1]) == found[bad.pk][-1]


def test_read_settings_makes_eight_calls_a_pair(aws, pair):
    protect(aws, "photos-src", "photos-bak")
    calls = []
    client = s3.client()
    client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    posture.read_settings(pair, client)
    assert len(calls) == 8
