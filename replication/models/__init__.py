"""The data model, split by feature. Each module imports nothing above replication.models."""

from replication.models.events import CopyEvent, CopyStatus, ObjectState
from replication.models.keys import IngestKey
from replication.models.pairs import BucketPair

__all__ = ["BucketPair", "CopyEvent", "CopyStatus", "IngestKey", "ObjectState"]
