import secrets

from django.db import models
from django.utils import timezone


def new_key_id() -> str:
    return "bk_" + secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class IngestKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class IngestKey(models.Model):
    """A credential the Lambda signs its reports with.

    The server must know the secret to check an HMAC, so it is stored; it is shown once,
    when the key is created, and never displayed or logged again.
    """

    name = models.CharField(max_length=100, unique=True)
    key_id = models.CharField(max_length=32, unique=True, default=new_key_id, editable=False)
    secret = models.CharField(max_length=128, default=new_secret, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Written at most once a minute per key (see ingest), so it never costs a write per request.
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Empty means every pair; otherwise the key may report only for these pairs.
    pairs = models.ManyToManyField(
        "replication.BucketPair",
        blank=True,
        related_name="ingest_keys",
        help_text="Pairs this key may report for. Leave empty for all pairs.",
    )

    objects = IngestKeyQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="ingest_key_id_format", condition=models.Q(key_id__startswith="bk_")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allowed_pair_ids(self) -> set[int] | None:
        """The pairs this key may report for; None when it may report for every pair."""
        ids = set(self.pairs.values_list("id", flat=True))
        return ids or None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
