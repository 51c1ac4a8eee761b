"""The data model, split by feature. Each module imports nothing above replication.models."""

from replication.models import lookups  # noqa: F401  (registers __any)
from replication.models.alerts import AlertChannel, HealthChange, HealthState, Notification
from replication.models.events import CopyEvent, CopyStatus, Finding, ObjectState
from replication.models.evidence import FreshnessTally, ObjectiveChange
from replication.models.guard import (
    GuardAction,
    GuardAudit,
    GuardHold,
    GuardRelease,
    GuardTally,
)
from replication.models.keys import IngestKey
from replication.models.pairs import BucketPair
from replication.models.protection import (
    PolicyAcknowledgement,
    ProtectionCheck,
    ProtectionResult,
    ProtectionState,
)
from replication.models.restore import (
    DrillObject,
    RestoredObject,
    RestoreDrill,
    RestoreJob,
    RestorePoint,
)
from replication.models.runs import Discrepancy, ReconcileRange, ReconcileRun
from replication.models.tallies import CopyTally, HourlyTally, HourlyTotal, IngestTally

__all__ = [
    "AlertChannel",
    "BucketPair",
    "CopyEvent",
    "CopyStatus",
    "CopyTally",
    "Discrepancy",
    "DrillObject",
    "Finding",
    "FreshnessTally",
    "GuardAction",
    "GuardAudit",
    "GuardHold",
    "GuardRelease",
    "GuardTally",
    "HealthChange",
    "HealthState",
    "HourlyTally",
    "HourlyTotal",
    "IngestKey",
    "IngestTally",
    "Notification",
    "ObjectState",
    "ObjectiveChange",
    "PolicyAcknowledgement",
    "ProtectionCheck",
    "ProtectionResult",
    "ProtectionState",
    "ReconcileRange",
    "ReconcileRun",
    "RestoreDrill",
    "RestoreJob",
    "RestorePoint",
    "RestoredObject",
]
