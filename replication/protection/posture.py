"""Read a pair's bucket settings (the checks' read-only S3 calls) and judge them by rules.py.

Eight calls a pair, each on its own: one that fails makes its checks ``unknown`` with the
reason, and the others are still judged. "Not configured" answers (no lifecycle rules, no
policy, ...) are settings like any other, not errors.
"""

import json
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from replication.access import describe_error
from replication.protection import rules
from replication.protection.rules import Check, CheckId

# S3's answers meaning "this bucket has no such configuration", by operation.
_NOT_CONFIGURED = {
    "NoSuchLifecycleConfiguration",
    "ObjectLockConfigurationNotFoundError",
    "NoSuchPublicAccessBlockConfiguration",
    "NoSuchBucketPolicy",
    "ServerSideEncryptionConfigurationNotFoundError",
}


@dataclass(frozen=True)
class Unreadable:
    reason: str


def _read(call, bucket: str, what: str):
    """The call's answer; None for "not configured"; Unreadable when S3 refused or failed."""
    try:
        return call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NOT_CONFIGURED:
            return None
        return Unreadable(f"{what}: {describe_error(exc, bucket)}")
    except BotoCoreError as exc:
        return Unreadable(f"{what}: {describe_error(exc, bucket)}")


def read_settings(pair, client) -> dict:
    """Every setting the checks judge, by name (an answer, None, or Unreadable)."""
    source, backup = pair.source_bucket, pair.backup_bucket
    return {
        "versioning": _read(
            lambda: client.get_bucket_versioning(Bucket=backup).get("Status", ""),
            backup,
            "GetBucketVersioning",
        ),
        "lifecycle": _read(
            lambda: client.get_bucket_lifecycle_configuration(Bucket=backup).get("Rules", []),
            backup,
            "GetBucketLifecycleConfiguration",
        ),
        "object_lock": _read(
            lambda: client.get_object_lock_configuration(Bucket=backup).get(
                "ObjectLockConfiguration"
            ),
            backup,
            "GetObjectLockConfiguration",
        ),
        "public_access": _read(
            lambda: client.get_public_access_block(Bucket=backup).get(
                "PublicAccessBlockConfiguration"
            ),
            backup,
            "GetPublicAccessBlock",
        ),
        "policy": _read(
            lambda: client.get_bucket_policy(Bucket=backup).get("Policy", ""),
            backup,
            "GetBucketPolicy",
        ),
        "notifications": _read(
            lambda: client.get_bucket_notification_configuration(Bucket=source),
            source,
            "GetBucketNotificationConfiguration",
        ),
        "source_encryption": _read(
            lambda: client.get_bucket_encryption(Bucket=source).get(
                "ServerSideEncryptionConfiguration"
            ),
            source,
            "GetBucketEncryption",
        ),
        "backup_encryption": _read(
            lambda: client.get_bucket_encryption(Bucket=backup).get(
                "ServerSideEncryptionConfiguration"
            ),
            backup,
            "GetBucketEncryption",
        ),
    }


def judge(pair: rules.Pair, settings: dict, acknowledged_policy: str | None) -> list[Check]:
    """The seven checks from what read_settings found (pure)."""

    def judged(check: CheckId, *names: str, rule) -> Check:
        for name in names:
            if isinstance(settings[name], Unreadable):
                return rules.unknown(check, settings[name].reason)
        return rule(*(settings[name] for name in names))

    versioning = settings["versioning"]
    return [
        judged(CheckId.BACKUP_VERSIONING, "versioning", rule=lambda s: rules.versioning(pair, s)),
        judged(
            CheckId.BACKUP_RETENTION,
            "lifecycle",
            rule=lambda r: rules.retention(
                pair, r, None if isinstance(versioning, Unreadable) else versioning
            ),
        ),
        judged(
            CheckId.BACKUP_OBJECT_LOCK, "object_lock", rule=lambda c: rules.object_lock(pair, c)
        ),
        judged(
            CheckId.BACKUP_PUBLIC_ACCESS,
            "public_access",
            rule=lambda c: rules.public_access(pair, c),
        ),
        judged(
            CheckId.BACKUP_POLICY,
            "policy",
            rule=lambda p: rules.policy(pair, rules.normalise_policy(p), acknowledged_policy),
        ),
        judged(
            CheckId.SOURCE_TRIGGER,
            "notifications",
            rule=lambda n: rules.source_trigger(pair, n or {}),
        ),
        judged(
            CheckId.ENCRYPTION,
            "source_encryption",
            "backup_encryption",
            rule=rules.encryption,
        ),
    ]


def pair_view(pair) -> rules.Pair:
    return rules.Pair(
        source_bucket=pair.source_bucket,
        source_prefix=pair.source_prefix,
        backup_bucket=pair.backup_bucket,
        backup_prefix=pair.backup_prefix,
        mirror_deletes=pair.mirror_deletes,
        protection_window_days=pair.protection_window_days,
    )


def check_pair(pair, client, acknowledged_policy: str | None) -> list[Check]:
    """Read ``pair``'s buckets with ``client`` and judge them."""
    return judge(pair_view(pair), read_settings(pair, client), acknowledged_policy)


def as_json(pair_name: str, checks: list[Check]) -> str:
    return json.dumps({"pair": pair_name, "checks": [c.as_dict() for c in checks]}, indent=2)
