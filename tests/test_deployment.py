from types import SimpleNamespace

from replication.deployment import (
    BACKUP_SETTINGS_ACTIONS,
    iam_policy,
    lambda_environment,
    replication_map,
    workers_iam_policy,
)


def pair(**fields):
    values = {
        "source_bucket": "photos-src",
        "source_prefix": "",
        "backup_bucket": "photos-bak",
        "backup_prefix": "",
        "mirror_deletes": False,
    }
    values.update(fields)
    return SimpleNamespace(**values)


def actions_on(policy, resource):
    actions = []
    for statement in policy["Statement"]:
        if statement["Resource"] == resource:
            action = statement["Action"]
            actions += [action] if isinstance(action, str) else action
    return actions


def test_lambda_environment_names_the_backup_the_report_url_and_key():
    env = lambda_environment(pair(), "https://backups.example/api/v1/events", "bk_123")
    assert env["DESTINATION_BUCKET"] == "photos-bak"
    assert env["REPORT_URL"] == "https://backups.example/api/v1/events"
    assert env["REPORT_KEY_ID"] == "bk_123"
    assert env["MIRROR_DELETES"] == "false"
    assert "DESTINATION_PREFIX" not in env


def test_lambda_environment_carries_both_prefixes():
    env = lambda_environment(pair(source_prefix="raw/", backup_prefix="copies/"), "u", "k")
    assert env["SOURCE_PREFIX"] == "raw/"
    assert env["DESTINATION_PREFIX"] == "copies/"


def test_replication_map_serves_several_pairs_from_one_function():
    mapping = replication_map([pair(), pair(source_bucket="logs", backup_prefix="logs/")])
    assert mapping == {
        "photos-src": {"bucket": "photos-bak"},
        "logs": {"bucket": "photos-bak", "prefix": "logs/"},
    }


def test_policy_reads_the_source_and_writes_only_the_backup():
    policy = iam_policy(pair(source_prefix="raw/"))
    source = actions_on(policy, "arn:aws:s3:::photos-src/raw/*")
    backup = actions_on(policy, "arn:aws:s3:::photos-bak/*")
    assert "s3:GetObject" in source and "s3:PutObject" not in source
    assert "s3:PutObject" in backup
    assert "s3:DeleteObject" not in backup


def test_policy_lets_the_function_see_the_backup_while_the_guard_holds():
    policy = iam_policy(pair(backup_prefix="copies/"))
    assert "s3:GetObject" in actions_on(policy, "arn:aws:s3:::photos-bak/copies/*")
    assert "s3:ListBucket" in actions_on(policy, "arn:aws:s3:::photos-bak")


def test_workers_policy_covers_reconcile_repair_and_the_checks_but_never_removes_a_version():
    policy = workers_iam_policy(pair(source_prefix="raw/"))
    actions = [a for s in policy["Statement"] for a in s["Action"]]
    assert "s3:ListBucketVersions" in actions
    assert "s3:GetObjectVersion" in actions
    assert "s3:PutObject" in actions_on(policy, "arn:aws:s3:::photos-bak/*")
    assert set(BACKUP_SETTINGS_ACTIONS) <= set(actions_on(policy, "arn:aws:s3:::photos-bak"))
    assert "s3:GetBucketNotification" in actions_on(policy, "arn:aws:s3:::photos-src")
    assert not {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutBucketPolicy"} & set(actions)
    assert not any(a.endswith("*") for a in actions)


def test_workers_policy_deletes_in_the_backup_only_for_a_pair_that_mirrors_deletes():
    policy = workers_iam_policy(pair(mirror_deletes=True))
    assert "s3:DeleteObject" in actions_on(policy, "arn:aws:s3:::photos-bak/*")


def test_policy_allows_deletes_only_when_the_pair_mirrors_them():
    policy = iam_policy(pair(mirror_deletes=True))
    assert "s3:DeleteObject" in actions_on(policy, "arn:aws:s3:::photos-bak/*")
