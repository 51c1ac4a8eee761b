"""What an operator pastes into AWS for a pair: the Lambda's environment and its IAM policy.

Pure functions of a pair's fields, so the admin page, the docs and the tests agree.
"""

import json
from typing import Protocol


class PairLocation(Protocol):
    source_bucket: str
    source_prefix: str
    backup_bucket: str
    backup_prefix: str
    mirror_deletes: bool


def lambda_environment(pair: PairLocation, report_url: str, key_id: str) -> dict[str, str]:
    """The function's environment for a function that serves this one pair."""
    env = {"DESTINATION_BUCKET": pair.backup_bucket}
    if pair.source_prefix:
        env["SOURCE_PREFIX"] = pair.source_prefix
    if pair.backup_prefix:
        env["DESTINATION_PREFIX"] = pair.backup_prefix
    env["MIRROR_DELETES"] = "true" if pair.mirror_deletes else "false"
    env["REPORT_URL"] = report_url
    env["REPORT_KEY_ID"] = key_id
    # The secret is never shown again after the key's creation; the operator pastes it.
    env["REPORT_SECRET"] = "<the secret shown when the key was created>"  # noqa: S105
    return env


def replication_map(pairs: list[PairLocation]) -> dict[str, dict[str, str]]:
    """REPLICATION_MAP for one function serving several pairs (one entry per source bucket)."""
    mapping = {}
    for pair in pairs:
        entry = {"bucket": pair.backup_bucket}
        if pair.backup_prefix:
            entry["prefix"] = pair.backup_prefix
        if pair.source_prefix:
            entry["source_prefix"] = pair.source_prefix
        mapping[pair.source_bucket] = entry
    return mapping


def iam_policy(pair: PairLocation) -> dict:
    """Least privilege for the replicating function: read the source, write the backup."""
    source_objects = f"arn:aws:s3:::{pair.source_bucket}/{pair.source_prefix}*"
    backup_objects = f"arn:aws:s3:::{pair.backup_bucket}/{pair.backup_prefix}*"
    backup_actions = [
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ]
    if pair.mirror_deletes:
        backup_actions.append("s3:DeleteObject")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadSource",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:GetObjectTagging",
                    "s3:GetObjectVersionTagging",
                ],
                "Resource": source_objects,
            },
            {
                # Lets a HEAD of a deleted key answer 404 rather than 403, which is how the
                # function tells "really gone" from "not allowed to see".
                "Sid": "ListSource",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{pair.source_bucket}",
            },
            {
                "Sid": "WriteBackup",
                "Effect": "Allow",
                "Action": backup_actions,
                "Resource": backup_objects,
            },
            {
                # While the destructive-change guard holds the pair, the function looks
                # whether the backup already has a key before it applies a delete or an
                # overwrite; ListBucket lets a HEAD of an absent key answer 404, not 403.
                "Sid": "SeeBackupWhileHeld",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": backup_objects,
            },
            {
                "Sid": "ListBackupWhileHeld",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{pair.backup_bucket}",
            },
        ],
    }


# The protection checks' calls (replication/protection/posture.py), as IAM names them.
BACKUP_SETTINGS_ACTIONS = [
    "s3:GetBucketVersioning",
    "s3:GetLifecycleConfiguration",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketPolicy",
    "s3:GetEncryptionConfiguration",
]
SOURCE_SETTINGS_ACTIONS = ["s3:GetBucketNotification", "s3:GetEncryptionConfiguration"]


def workers_iam_policy(pair: PairLocation) -> dict:
    """Least privilege for the site's workers on a pair: list and read both sides
    (reconcile, restore, drills), write the backup (repair; deletes only for a pair that
    mirrors them), and the read-only calls of the protection checks. No s3:DeleteObject
    otherwise, no s3:PutBucket*, no s3:DeleteObjectVersion: the workers can never remove an
    earlier state."""
    source_objects = f"arn:aws:s3:::{pair.source_bucket}/{pair.source_prefix}*"
    backup_objects = f"arn:aws:s3:::{pair.backup_bucket}/{pair.backup_prefix}*"
    read_objects = [
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
    ]
    repair_actions = [
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ]
    if pair.mirror_deletes:
        repair_actions.append("s3:DeleteObject")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListBothSides",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
                "Resource": [
                    f"arn:aws:s3:::{pair.source_bucket}",
                    f"arn:aws:s3:::{pair.backup_bucket}",
                ],
            },
            {
                "Sid": "ReadBothSides",
                "Effect": "Allow",
                "Action": read_objects,
                "Resource": [source_objects, backup_objects],
            },
            {
                "Sid": "RepairBackup",
                "Effect": "Allow",
                "Action": repair_actions,
                "Resource": backup_objects,
            },
            {
                "Sid": "CheckBackupProtection",
                "Effect": "Allow",
                "Action": BACKUP_SETTINGS_ACTIONS,
                "Resource": f"arn:aws:s3:::{pair.backup_bucket}",
            },
            {
                "Sid": "CheckSourceTrigger",
                "Effect": "Allow",
                "Action": SOURCE_SETTINGS_ACTIONS,
                "Resource": f"arn:aws:s3:::{pair.source_bucket}",
            },
        ],
    }


def as_json(document: dict) -> str:
    return json.dumps(document, indent=2)
