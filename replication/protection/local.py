"""Buckets of a local setup (moto), set up the way a protected pair's are.

For ``create_buckets`` and the demo, so that a fresh ``make run`` or ``make demo`` shows
only the protection warnings it means to show. moto stores these settings without
enforcing them; the checks read them back.
"""

from replication.protection.rules import PUBLIC_ACCESS_BLOCKS

# A queue that receives the bucket's object events: locally nothing listens to it (the demo
# calls the handler itself); the configuration is what a deployment has.
EVENTS_QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:backupsite-replicator-events"


def protect_bucket(client, bucket: str, *, versioning: bool = True, events: bool = True) -> None:
    """Versioning (unless told not), all four public-access blocks, and object events."""
    if versioning:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration=dict.fromkeys(PUBLIC_ACCESS_BLOCKS, True),
    )
    if events:
        client.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "Id": "backupsite-replicator",
                        "QueueArn": EVENTS_QUEUE_ARN,
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                    }
                ]
            },
        )
