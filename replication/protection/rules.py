"""Protection checks as pure rules: S3's answers in, a state, a reason and a fix out.

No Django, no boto3. replication/protection/posture.py reads the buckets and calls these;
a setting that could not be read never reaches them (it is ``unknown`` there).

States: ``ok``, ``warning``, ``critical``, ``unknown`` (could not be read; health counts it
as a warning). Each check's rule is in its function's docstring and in docs/protection.md.
"""

import difflib
import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass


class CheckId(enum.StrEnum):
    BACKUP_VERSIONING = "backup_versioning"
    BACKUP_RETENTION = "backup_retention"
    BACKUP_OBJECT_LOCK = "backup_object_lock"
    BACKUP_PUBLIC_ACCESS = "backup_public_access"
    BACKUP_POLICY = "backup_policy"
    SOURCE_TRIGGER = "source_trigger"
    ENCRYPTION = "encryption"


class CheckState(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Sort key, worst first."""
        return _RANK[self]


_RANK = {CheckState.CRITICAL: 0, CheckState.WARNING: 1, CheckState.UNKNOWN: 2, CheckState.OK: 3}


@dataclass(frozen=True)
class Check:
    id: CheckId
    state: CheckState
    reason: str
    fix: str = ""  # the exact setting or AWS CLI command that makes it ok; "" when ok
    detail: str = ""  # a longer text shown on demand (the policy's difference)
    observed: str = ""  # what was read, when it is needed later (the normalised policy)

    def as_dict(self) -> dict:
        return {"id": self.id.value, "state": self.state.value, "reason": self.reason}


@dataclass(frozen=True)
class Pair:
    """What the rules need of a pair (BucketPair has these fields)."""

    source_bucket: str
    source_prefix: str
    backup_bucket: str
    backup_prefix: str
    mirror_deletes: bool
    protection_window_days: int


def unknown(check: CheckId, reason: str) -> Check:
    """A setting that could not be read: never ok."""
    return Check(check, CheckState.UNKNOWN, f"could not be read: {reason}")


def worst(checks: Iterable[Check]) -> CheckState:
    states = [c.state for c in checks]
    return min(states, key=lambda s: s.rank) if states else CheckState.OK


# --- backup_versioning ------------------------------------------------------------------------


def versioning(pair: Pair, status: str) -> Check:
    """``Enabled`` is ok; anything else (never set, or ``Suspended``) is a warning, and
    critical when the pair mirrors deletes: a delete then removes the backup's only copy."""
    check = CheckId.BACKUP_VERSIONING
    if status == "Enabled":
        return Check(check, CheckState.OK, "versioning is enabled")
    what = "suspended" if status == "Suspended" else "off"
    fix = (
        f"aws s3api put-bucket-versioning --bucket {pair.backup_bucket} "
        "--versioning-configuration Status=Enabled"
    )
    if pair.mirror_deletes:
        return Check(
            check,
            CheckState.CRITICAL,
            f"versioning is {what} and the pair mirrors deletes: a delete in the source "
            "removes the backup's only copy",
            fix,
        )
    return Check(
        check,
        CheckState.WARNING,
        f"versioning is {what}: an overwrite in the source replaces the backup's only copy",
        fix,
    )


# --- backup_retention: lifecycle rules as S3 matches them --------------------------------------


def rule_scope(rule: dict, prefix: str) -> str | None:
    """Which objects under ``prefix`` an enabled lifecycle rule reaches, in words; None if none.

    S3 applies a rule to a key when the key starts with the rule's prefix (the V1 top-level
    ``Prefix``, ``Filter.Prefix`` or ``Filter.And.Prefix``; none or ``""``: every key) and the
    object carries every tag the rule names and lies within its size bounds. A rule reaches
    the backup when its prefix and the backup's overlap: either one starts with the other.
    Tags are not known here, and the Lambda copies the source's tags, so whoever may tag a
    source object may bring it under a tag-filtered rule: such a rule counts, named as such.
    """
    if rule.get("Status") != "Enabled":
        return None
    conditions = []
    if "Filter" in rule:
        filter_ = rule["Filter"] or {}
        and_ = filter_.get("And")
        if and_ is not None:
            rule_prefix = and_.get("Prefix", "")
            tags = and_.get("Tags", [])
            sizes = (and_.get("ObjectSizeGreaterThan"), and_.get("ObjectSizeLessThan"))
        else:
            rule_prefix = filter_.get("Prefix", "")
            tags = [filter_["Tag"]] if "Tag" in filter_ else []
            sizes = (filter_.get("ObjectSizeGreaterThan"), filter_.get("ObjectSizeLessThan"))
    else:
        rule_prefix, tags, sizes = rule.get("Prefix", ""), [], (None, None)
    if not (rule_prefix.startswith(prefix) or prefix.startswith(rule_prefix)):
        return None
    if rule_prefix and len(rule_prefix) > len(prefix):
        conditions.append(f"keys under {rule_prefix!r}")
    for tag in tags:
        conditions.append(f"objects tagged {tag.get('Key')}={tag.get('Value')}")
    larger, smaller = sizes
    if larger is not None:
        conditions.append(f"objects over {larger} bytes")
    if smaller is not None:
        conditions.append(f"objects under {smaller} bytes")
    return ", ".join(conditions) or "every object"


def _rule_name(rule: dict) -> str:
    return f"rule {rule['ID']!r}" if rule.get("ID") else "a rule without an ID"


def retention(pair: Pair, rules: list[dict] | None, versioning_status: str | None) -> Check:
    """No enabled rule reaching the backup prefix expires current versions, and noncurrent
    versions are kept at least the protection window.

    Expiring current versions is critical where the bucket is not versioned (the objects are
    deleted for good: what the 2025 SSE-C campaign set up) and a warning where it is (they
    become noncurrent, kept as the noncurrent rule says). Noncurrent versions kept fewer
    days than the window: a warning. ``NewerNoncurrentVersions`` only keeps more, so
    ``NoncurrentDays`` is the bound. ``ExpiredObjectDeleteMarker`` removes nothing
    restorable. ``versioning_status`` is None when it could not be read.
    """
    check = CheckId.BACKUP_RETENTION
    window = pair.protection_window_days
    versioned = versioning_status == "Enabled"
    critical, warnings = [], []
    for rule in rules or []:
        scope = rule_scope(rule, pair.backup_prefix)
        if scope is None:
            continue
        expiration = rule.get("Expiration") or {}
        when = (
            f"after {expiration['Days']} days"
            if "Days" in expiration
            else f"from {expiration['Date']}"
            if "Date" in expiration
            else None
        )
        if when is not None:
            text = f"{_rule_name(rule)} expires current versions {when} ({scope})"
            (warnings if versioned else critical).append(text)
        noncurrent = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
        if noncurrent is not None and noncurrent < window:
            warnings.append(
                f"{_rule_name(rule)} deletes noncurrent versions after {noncurrent} days, "
                f"less than the {window}-day protection window ({scope})"
            )
    fix = (
        f"aws s3api get-bucket-lifecycle-configuration --bucket {pair.backup_bucket}, then "
        "remove Expiration from the rules listed and set NoncurrentVersionExpiration "
        f"NoncurrentDays to at least {window}, and put it back with "
        f"aws s3api put-bucket-lifecycle-configuration --bucket {pair.backup_bucket} "
        "--lifecycle-configuration file://lifecycle.json"
    )
    if critical:
        if not versioned:
            critical[-1] += ", and versioning is off: they are deleted for good"
        return Check(check, CheckState.CRITICAL, "; ".join(critical + warnings), fix)
    if warnings:
        return Check(check, CheckState.WARNING, "; ".join(warnings), fix)
    if not rules:
        return Check(check, CheckState.OK, "no lifecycle rule: every version is kept")
    return Check(
        check,
        CheckState.OK,
        f"no lifecycle rule expires current versions under the backup prefix or noncurrent "
        f"versions within {window} days",
    )


# --- backup_object_lock -----------------------------------------------------------------------


def retention_days(default_retention: dict) -> int:
    """Object Lock's default retention in days (S3 counts a year as 365 days)."""
    return int(default_retention.get("Days") or 0) or 365 * int(default_retention.get("Years") or 0)


def object_lock(pair: Pair, configuration: dict | None) -> Check:
    """Reported, not required: ok when Object Lock is off or has no default retention, or
    its default retention covers the window; a shorter default retention is a warning."""
    check = CheckId.BACKUP_OBJECT_LOCK
    window = pair.protection_window_days
    if not configuration or configuration.get("ObjectLockEnabled") != "Enabled":
        return Check(
            check,
            CheckState.OK,
            "Object Lock is not enabled (optional: versioning and lifecycle rules protect "
            "earlier states; Object Lock also stops their deletion)",
        )
    default = (configuration.get("Rule") or {}).get("DefaultRetention")
    if not default:
        return Check(
            check,
            CheckState.OK,
            "Object Lock is enabled without a default retention: only objects written with "
            "a retention period are locked",
        )
    days, mode = retention_days(default), default.get("Mode", "")
    if days < window:
        return Check(
            check,
            CheckState.WARNING,
            f"default retention is {days} days ({mode}), shorter than the {window}-day "
            "protection window",
            f"aws s3api put-object-lock-configuration --bucket {pair.backup_bucket} "
            "--object-lock-configuration "
            f'\'{{"ObjectLockEnabled":"Enabled","Rule":{{"DefaultRetention":'
            f'{{"Mode":"{mode or "GOVERNANCE"}","Days":{window}}}}}}}\'',
        )
    return Check(
        check,
        CheckState.OK,
        f"default retention is {days} days ({mode}), covering the {window}-day window",
    )


# --- backup_public_access ---------------------------------------------------------------------

PUBLIC_ACCESS_BLOCKS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def public_access(pair: Pair, configuration: dict | None) -> Check:
    """All four public-access blocks on the backup bucket; any off (or none set) is critical."""
    check = CheckId.BACKUP_PUBLIC_ACCESS
    configuration = configuration or {}
    off = [name for name in PUBLIC_ACCESS_BLOCKS if not configuration.get(name)]
    if not off:
        return Check(check, CheckState.OK, "all four public-access blocks are on")
    fix = (
        f"aws s3api put-public-access-block --bucket {pair.backup_bucket} "
        "--public-access-block-configuration "
        + ",".join(f"{name}=true" for name in PUBLIC_ACCESS_BLOCKS)
    )
    if len(off) == len(PUBLIC_ACCESS_BLOCKS):
        reason = "no public-access block is set on the backup bucket"
    else:
        reason = f"public-access blocks off: {', '.join(off)}"
    return Check(check, CheckState.CRITICAL, reason + ": a policy or ACL can make it public", fix)


# --- backup_policy ----------------------------------------------------------------------------


def normalise_policy(text: str | None) -> str:
    """A policy document as stable text (keys sorted, indented); "" for no policy.

    Text that is not JSON is kept as it is, so a difference still shows.
    """
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


def policy(pair: Pair, current: str, acknowledged: str | None) -> Check:
    """The backup's bucket policy is the one last acknowledged (``acknowledged`` is None when
    none ever was; "" is an acknowledged absence). Different: a warning with the difference.
    No policy and none acknowledged is ok. ``current`` is normalised (normalise_policy)."""
    check = CheckId.BACKUP_POLICY
    baseline = acknowledged if acknowledged is not None else ""
    if current == baseline:
        if not current:
            return Check(check, CheckState.OK, "no bucket policy", observed=current)
        return Check(
            check, CheckState.OK, "the bucket policy is the one acknowledged", observed=current
        )
    diff = "\n".join(
        difflib.unified_diff(
            baseline.splitlines(),
            current.splitlines(),
            "acknowledged" if acknowledged is not None else "never acknowledged",
            "current",
            lineterm="",
        )
    )
    if acknowledged is None:
        reason = "a bucket policy is in place that nobody has acknowledged yet"
    elif not current:
        reason = "the acknowledged bucket policy was removed"
    else:
        added = sum(1 for line in diff.splitlines() if line.startswith("+") and line[1:2] != "+")
        removed = sum(1 for line in diff.splitlines() if line.startswith("-") and line[1:2] != "-")
        reason = f"the bucket policy changed since it was acknowledged (+{added} -{removed} lines)"
    return Check(
        check,
        CheckState.WARNING,
        reason,
        "review it (aws s3api get-bucket-policy --bucket "
        f"{pair.backup_bucket}), then acknowledge it in the admin: Pairs, select the pair, "
        '"Acknowledge the backup bucket policy"',
        detail=diff,
        observed=current,
    )


# --- source_trigger ---------------------------------------------------------------------------

_TARGETS = (
    ("LambdaFunctionConfigurations", "LambdaFunctionArn", "Lambda function"),
    ("QueueConfigurations", "QueueArn", "SQS queue"),
    ("TopicConfigurations", "TopicArn", "SNS topic"),
)


def _filter_rules(configuration: dict) -> dict[str, str]:
    rules = ((configuration.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    return {rule.get("Name", "").lower(): rule.get("Value", "") for rule in rules}


def source_trigger(pair: Pair, notifications: dict) -> Check:
    """The source still sends "object created" events for the pair's keys: to a Lambda
    function, SQS queue or SNS topic (prefix and suffix filters as S3 applies them), or to
    EventBridge. None: critical. Only some keys (a longer prefix, a suffix): a warning."""
    check = CheckId.SOURCE_TRIGGER
    fix = (
        f"aws s3api put-bucket-notification-configuration --bucket {pair.source_bucket} "
        "--notification-configuration "
        """'{"LambdaFunctionConfigurations":[{"LambdaFunctionArn":"<replicator-function-arn>","""
        """"Events":["s3:ObjectCreated:*","s3:ObjectRemoved:*"]}]}' """
        "(or deploy deploy/replicator.yaml, which sets up EventBridge delivery)"
    )
    if notifications.get("EventBridgeConfiguration") is not None:
        return Check(
            check,
            CheckState.OK,
            "events go to EventBridge (the rule that calls the replicator is not checked here)",
        )
    full, partial = [], []
    for field_name, arn_field, kind in _TARGETS:
        for configuration in notifications.get(field_name) or []:
            events = configuration.get("Events") or []
            if not any(e.startswith("s3:ObjectCreated:") for e in events):
                continue
            rules = _filter_rules(configuration)
            prefix, suffix = rules.get("prefix", ""), rules.get("suffix", "")
            source = pair.source_prefix
            if not (prefix.startswith(source) or source.startswith(prefix)):
                continue
            target = f"{kind} {configuration.get(arn_field, '')}".strip()
            if len(prefix) > len(source) or suffix:
                only = " and ".join(
                    part
                    for part in (
                        f"keys under {prefix!r}" if len(prefix) > len(source) else "",
                        f"keys ending {suffix!r}" if suffix else "",
                    )
                    if part
                )
                partial.append(f"{target} (only {only})")
            else:
                full.append(target)
    if full:
        return Check(check, CheckState.OK, f"object-created events go to {', '.join(full)}")
    if partial:
        return Check(
            check,
            CheckState.WARNING,
            f"object-created events reach only part of the pair's keys: {'; '.join(partial)}",
            fix,
        )
    return Check(
        check,
        CheckState.CRITICAL,
        "the source sends no object-created events for the pair's keys: nothing is copied "
        "until a reconcile repairs it",
        fix,
    )


# --- encryption (reported) --------------------------------------------------------------------


def describe_encryption(configuration: dict | None) -> str:
    """A bucket's default encryption in words."""
    rules = (configuration or {}).get("Rules") or []
    if not rules:
        return "no default encryption configured (S3 encrypts with SSE-S3)"
    default = rules[0].get("ApplyServerSideEncryptionByDefault") or {}
    algorithm = default.get("SSEAlgorithm", "")
    if algorithm == "AES256":
        return "SSE-S3"
    if algorithm.startswith("aws:kms"):
        key = default.get("KMSMasterKeyID") or "the AWS managed key"
        kind = "DSSE-KMS" if algorithm == "aws:kms:dsse" else "SSE-KMS"
        return f"{kind} with {key}"
    return algorithm or "unknown"


def encryption(source: dict | None, backup: dict | None) -> Check:
    """Reported, always ok once read: both buckets' default encryption, in words."""
    return Check(
        CheckId.ENCRYPTION,
        CheckState.OK,
        f"source: {describe_encryption(source)}; backup: {describe_encryption(backup)}",
    )


ORDER = list(CheckId)
