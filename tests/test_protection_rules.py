"""The protection checks' rules, judged from S3's answers without S3 (pure, fast)."""

from datetime import UTC, datetime, timedelta

import pytest

from replication.models import ProtectionCheck, ProtectionState
from replication.protection import rules
from replication.protection.health import findings
from replication.protection.rules import CheckId, CheckState


def make(**fields) -> rules.Pair:
    values = {
        "source_bucket": "photos-src",
        "source_prefix": "",
        "backup_bucket": "photos-bak",
        "backup_prefix": "",
        "mirror_deletes": False,
        "protection_window_days": 30,
    }
    return rules.Pair(**{**values, **fields})


def rule(**fields) -> dict:
    return {"ID": "r", "Status": "Enabled", **fields}


def test_stored_choices_are_the_rules_vocabulary():
    assert ProtectionCheck.values == [c.value for c in CheckId]
    assert ProtectionState.values == [s.value for s in CheckState]


# --- versioning


def test_versioning_enabled_is_ok():
    assert rules.versioning(make(), "Enabled").state == CheckState.OK


@pytest.mark.parametrize("status", ["", "Suspended"])
def test_versioning_off_or_suspended_is_a_warning_with_the_command(status):
    check = rules.versioning(make(), status)
    assert check.state == CheckState.WARNING
    assert check.fix == (
        "aws s3api put-bucket-versioning --bucket photos-bak "
        "--versioning-configuration Status=Enabled"
    )


def test_versioning_off_is_critical_when_the_pair_mirrors_deletes():
    check = rules.versioning(make(mirror_deletes=True), "")
    assert check.state == CheckState.CRITICAL
    assert "mirrors deletes" in check.reason


# --- lifecycle rule matching, rule by rule


@pytest.mark.parametrize(
    ("lifecycle_rule", "prefix", "scope"),
    [
        (rule(Filter={}), "backup/", "every object"),
        (rule(Filter={"Prefix": ""}), "backup/", "every object"),
        (rule(Prefix=""), "backup/", "every object"),  # V1 rule: top-level Prefix
        (rule(Prefix="backup/"), "backup/", "every object"),
        (rule(Filter={"Prefix": "back"}), "backup/", "every object"),  # a shorter prefix covers it
        (rule(Filter={"Prefix": "backup/tmp/"}), "backup/", "keys under 'backup/tmp/'"),
        (rule(Filter={"Prefix": "logs/"}), "backup/", None),
        (rule(Prefix="logs/"), "backup/", None),
        (rule(Filter={"Prefix": "backup"}), "", "keys under 'backup'"),
        (rule(Filter={"Prefix": "backup/"}, Status="Disabled"), "backup/", None),
        (rule(Filter={"Tag": {"Key": "k", "Value": "v"}}), "backup/", "objects tagged k=v"),
        (
            rule(
                Filter={
                    "And": {
                        "Prefix": "backup/a/",
                        "Tags": [{"Key": "k", "Value": "v"}, {"Key": "x", "Value": "y"}],
                    }
                }
            ),
            "backup/",
            "keys under 'backup/a/', objects tagged k=v, objects tagged x=y",
        ),
        (rule(Filter={"And": {"Prefix": "other/", "Tags": []}}), "backup/", None),
        (
            rule(Filter={"And": {"Tags": [{"Key": "k", "Value": "v"}]}}),
            "backup/",
            "objects tagged k=v",
        ),
        (rule(Filter={"ObjectSizeGreaterThan": 1024}), "", "objects over 1024 bytes"),
        (
            rule(Filter={"And": {"ObjectSizeGreaterThan": 1, "ObjectSizeLessThan": 9}}),
            "",
            "objects over 1 bytes, objects under 9 bytes",
        ),
    ],
)
def test_lifecycle_rules_reach_the_backup_prefix_as_s3_matches_them(lifecycle_rule, prefix, scope):
    assert rules.rule_scope(lifecycle_rule, prefix) == scope


def test_no_lifecycle_rule_keeps_every_version():
    check = rules.retention(make(), None, "Enabled")
    assert check.state == CheckState.OK
    assert check.reason == "no lifecycle rule: every version is kept"


def test_expiring_current_versions_in_a_versioned_backup_is_a_warning():
    check = rules.retention(make(), [rule(Filter={}, Expiration={"Days": 7})], "Enabled")
    assert check.state == CheckState.WARNING
    assert "rule 'r' expires current versions after 7 days (every object)" in check.reason


def test_expiring_current_versions_in_an_unversioned_backup_is_critical():
    check = rules.retention(make(), [rule(Filter={}, Expiration={"Days": 3})], "")
    assert check.state == CheckState.CRITICAL
    assert "deleted for good" in check.reason
    assert "put-bucket-lifecycle-configuration --bucket photos-bak" in check.fix


def test_expiring_by_date_counts_as_expiring():
    check = rules.retention(
        make(), [rule(Filter={}, Expiration={"Date": "2027-01-01T00:00:00Z"})], "Enabled"
    )
    assert check.state == CheckState.WARNING
    assert "from 2027-01-01" in check.reason


def test_removing_expired_delete_markers_expires_nothing():
    rules_ = [rule(Filter={}, Expiration={"ExpiredObjectDeleteMarker": True})]
    assert rules.retention(make(), rules_, "Enabled").state == CheckState.OK


def test_expiry_under_another_prefix_or_in_a_disabled_rule_is_ignored():
    rules_ = [
        rule(Filter={"Prefix": "logs/"}, Expiration={"Days": 1}),
        rule(Filter={}, Status="Disabled", Expiration={"Days": 1}),
    ]
    assert rules.retention(make(backup_prefix="backup/"), rules_, "").state == CheckState.OK


def test_a_tag_filtered_expiry_counts_and_names_the_tag():
    rules_ = [rule(Filter={"Tag": {"Key": "tmp", "Value": "1"}}, Expiration={"Days": 2})]
    check = rules.retention(make(), rules_, "Enabled")
    assert check.state == CheckState.WARNING
    assert "objects tagged tmp=1" in check.reason


def test_noncurrent_versions_kept_shorter_than_the_window_is_a_warning():
    rules_ = [rule(Filter={}, NoncurrentVersionExpiration={"NoncurrentDays": 7})]
    check = rules.retention(make(protection_window_days=30), rules_, "Enabled")
    assert check.state == CheckState.WARNING
    assert "after 7 days, less than the 30-day protection window" in check.reason


def test_noncurrent_versions_kept_the_window_or_longer_is_ok():
    rules_ = [
        rule(
            Filter={},
            NoncurrentVersionExpiration={"NoncurrentDays": 30, "NewerNoncurrentVersions": 3},
        )
    ]
    assert rules.retention(make(protection_window_days=30), rules_, "Enabled").state == "ok"


def test_a_critical_expiry_also_lists_the_warnings():
    rules_ = [
        rule(ID="a", Filter={}, Expiration={"Days": 1}),
        rule(ID="b", Filter={}, NoncurrentVersionExpiration={"NoncurrentDays": 1}),
    ]
    check = rules.retention(make(), rules_, "Suspended")
    assert check.state == CheckState.CRITICAL
    assert "rule 'a'" in check.reason and "rule 'b'" in check.reason


# --- Object Lock


def test_object_lock_absent_is_reported_not_required():
    check = rules.object_lock(make(), None)
    assert check.state == CheckState.OK
    assert "not enabled" in check.reason


def test_object_lock_without_default_retention_is_ok():
    check = rules.object_lock(make(), {"ObjectLockEnabled": "Enabled"})
    assert check.state == CheckState.OK


def test_object_lock_retention_shorter_than_the_window_is_a_warning():
    lock = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 10, "Years": 0}},
    }
    check = rules.object_lock(make(protection_window_days=30), lock)
    assert check.state == CheckState.WARNING
    assert "10 days (COMPLIANCE)" in check.reason
    assert '"Mode":"COMPLIANCE","Days":30' in check.fix


def test_object_lock_retention_in_years_covers_the_window():
    lock = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 1}},
    }
    check = rules.object_lock(make(protection_window_days=90), lock)
    assert check.state == CheckState.OK
    assert "365 days" in check.reason


# --- public access


def test_all_four_public_access_blocks_are_ok():
    config = dict.fromkeys(rules.PUBLIC_ACCESS_BLOCKS, True)
    assert rules.public_access(make(), config).state == CheckState.OK


def test_one_public_access_block_off_is_critical_and_named():
    config = dict.fromkeys(rules.PUBLIC_ACCESS_BLOCKS, True) | {"RestrictPublicBuckets": False}
    check = rules.public_access(make(), config)
    assert check.state == CheckState.CRITICAL
    assert "RestrictPublicBuckets" in check.reason
    assert "BlockPublicAcls" not in check.reason
    assert check.fix.startswith("aws s3api put-public-access-block --bucket photos-bak")


def test_no_public_access_block_is_critical():
    assert rules.public_access(make(), None).state == CheckState.CRITICAL


# --- policy

POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*"}]}'


def test_no_policy_and_none_acknowledged_is_ok():
    assert rules.policy(make(), "", None).state == CheckState.OK


def test_a_policy_nobody_acknowledged_is_a_warning_showing_it():
    current = rules.normalise_policy(POLICY)
    check = rules.policy(make(), current, None)
    assert check.state == CheckState.WARNING
    assert "nobody has acknowledged" in check.reason
    assert '+  "Version": "2012-10-17"' in check.detail
    assert check.observed == current


def test_the_acknowledged_policy_is_ok_whatever_its_key_order():
    acknowledged = rules.normalise_policy(POLICY)
    reordered = '{"Statement": [{"Principal": "*", "Effect": "Allow"}], "Version": "2012-10-17"}'
    check = rules.policy(make(), rules.normalise_policy(reordered), acknowledged)
    assert check.state == CheckState.OK


def test_a_changed_policy_is_a_warning_with_the_difference():
    acknowledged = rules.normalise_policy(POLICY)
    changed = rules.normalise_policy(POLICY.replace("Allow", "Deny"))
    check = rules.policy(make(), changed, acknowledged)
    assert check.state == CheckState.WARNING
    assert "changed since it was acknowledged (+1 -1 lines)" in check.reason
    assert '-      "Effect": "Allow",' in check.detail
    assert '+      "Effect": "Deny",' in check.detail


def test_a_removed_policy_is_a_warning():
    check = rules.policy(make(), "", rules.normalise_policy(POLICY))
    assert check.reason == "the acknowledged bucket policy was removed"


# --- source trigger


def lambda_config(events=("s3:ObjectCreated:*",), **filters) -> dict:
    config = {"LambdaFunctionArn": "arn:aws:lambda:us-east-1:1:function:f", "Events": list(events)}
    if filters:
        config["Filter"] = {
            "Key": {"FilterRules": [{"Name": k.title(), "Value": v} for k, v in filters.items()]}
        }
    return config


def test_no_notification_configuration_is_critical():
    check = rules.source_trigger(make(), {})
    assert check.state == CheckState.CRITICAL
    assert "put-bucket-notification-configuration --bucket photos-src" in check.fix


@pytest.mark.parametrize(
    "notifications",
    [
        {"LambdaFunctionConfigurations": [lambda_config()]},
        {"QueueConfigurations": [{"QueueArn": "arn:q", "Events": ["s3:ObjectCreated:Put"]}]},
        {"TopicConfigurations": [{"TopicArn": "arn:t", "Events": ["s3:ObjectCreated:*"]}]},
        {"EventBridgeConfiguration": {}},
    ],
)
def test_a_lambda_queue_topic_or_eventbridge_is_a_trigger(notifications):
    assert rules.source_trigger(make(), notifications).state == CheckState.OK


def test_only_delete_events_are_no_trigger():
    notifications = {"LambdaFunctionConfigurations": [lambda_config(events=["s3:ObjectRemoved:*"])]}
    assert rules.source_trigger(make(), notifications).state == CheckState.CRITICAL


def test_a_trigger_for_another_prefix_is_no_trigger():
    notifications = {"LambdaFunctionConfigurations": [lambda_config(prefix="logs/")]}
    assert rules.source_trigger(make(source_prefix="photos/"), notifications).state == "critical"


def test_a_trigger_for_a_shorter_prefix_covers_the_pair():
    notifications = {"LambdaFunctionConfigurations": [lambda_config(prefix="ph")]}
    assert rules.source_trigger(make(source_prefix="photos/"), notifications).state == "ok"


def test_a_trigger_for_part_of_the_keys_is_a_warning():
    notifications = {
        "LambdaFunctionConfigurations": [lambda_config(prefix="photos/raw/", suffix=".jpg")]
    }
    check = rules.source_trigger(make(source_prefix="photos/"), notifications)
    assert check.state == CheckState.WARNING
    assert "only keys under 'photos/raw/' and keys ending '.jpg'" in check.reason


# --- encryption


def test_encryption_is_reported_in_words():
    kms = {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": "arn:aws:kms:us-east-1:1:key/k",
                }
            }
        ]
    }
    s3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    check = rules.encryption(kms, s3)
    assert check.state == CheckState.OK
    assert check.reason == "source: SSE-KMS with arn:aws:kms:us-east-1:1:key/k; backup: SSE-S3"


def test_unknown_is_never_ok():
    check = rules.unknown(CheckId.BACKUP_VERSIONING, "GetBucketVersioning: access denied")
    assert check.state == CheckState.UNKNOWN
    assert rules.worst([check, rules.versioning(make(), "Enabled")]) == CheckState.UNKNOWN


# --- what health reads

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_findings_rank_critical_first_and_count_unknown_as_a_warning():
    found = findings(
        [
            ("backup_versioning", "unknown", "could not be read: denied"),
            ("backup_public_access", "critical", "no public-access block"),
            ("encryption", "ok", "source: SSE-S3; backup: SSE-S3"),
        ],
        NOW,
        NOW,
    )
    assert found == [
        ("critical", "protection: backup public access: no public-access block"),
        ("warning", "protection: backup versioning: could not be read: denied"),
    ]


def test_all_ok_and_fresh_is_no_finding():
    assert findings([("encryption", "ok", "x")], NOW - timedelta(minutes=59), NOW) == []


def test_checks_that_stopped_running_are_a_warning():
    found = findings([("encryption", "ok", "x")], NOW - timedelta(hours=5), NOW)
    assert found == [("warning", "protection checks last ran 5 h ago (2026-12-06 07:00 UTC)")]
