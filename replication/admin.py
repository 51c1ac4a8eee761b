import json
from functools import cached_property

from django.conf import settings
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from replication import access, deployment, s3
from replication.alerts.admin import AlertChannelPairInline
from replication.models import (
    BucketPair,
    CopyEvent,
    Discrepancy,
    IngestKey,
    ObjectState,
    ReconcileRun,
)
from replication.protection.admin import ProtectionAdminMixin
from replication.reconcile.queue import start_reconcile
from replication.reconcile.wording import outcome

_LEVEL = {
    access.Level.OK: messages.SUCCESS,
    access.Level.WARNING: messages.WARNING,
    access.Level.ERROR: messages.ERROR,
}


def run_url(run: ReconcileRun) -> str:
    """The run's page on the dashboard."""
    return reverse("dashboard:run", args=[run.pk])


def report_url() -> str:
    return f"{settings.SITE_URL}/api/v1/events"


class AdminStyles:
    css = {"all": ["replication/admin.css"]}


def badge_url(pair: BucketPair) -> str:
    return f"{settings.SITE_URL}/badge/{pair.badge_token}.svg"


@admin.register(BucketPair)
class BucketPairAdmin(ProtectionAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "source_location",
        "backup_location",
        "region",
        "enabled",
        "mirror_deletes",
        "reconcile_every_minutes",
    ]
    list_filter = ["enabled", "mirror_deletes", "region"]
    search_fields = ["name", "source_bucket", "source_prefix", "backup_bucket", "backup_prefix"]
    readonly_fields = [
        "created_at",
        "updated_at",
        "lambda_environment",
        "iam_policy",
        "workers_iam_policy",
        "badge",
        "guard_usual",
        "guard_paused_until",
    ]
    actions = [
        "check_access",
        "reconcile_now",
        "reconcile_and_repair",
        "regenerate_badge_token",
        "check_protection",
        "acknowledge_backup_policy",
        "release_guard_apply",
        "release_guard_keep",
    ]
    inlines = [AlertChannelPairInline]
    Media = AdminStyles
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        (
            "Buckets",
            {
                "fields": [
                    ("source_bucket", "source_prefix"),
                    ("backup_bucket", "backup_prefix"),
                    "region",
                ]
            },
        ),
        (
            "Policy",
            {
                "fields": [
                    "grace_seconds",
                    "reconcile_every_minutes",
                    "lag_objective_seconds",
                    "freshness_target",
                    "mirror_deletes",
                    "protection_window_days",
                ]
            },
        ),
        (
            "Destructive-change guard",
            {
                "fields": [
                    ("guard_min_changes", "guard_factor"),
                    ("guard_usual", "guard_paused_until"),
                ]
            },
        ),
        (
            "Restore drills",
            {"fields": ["restore_drill_every_days", "drill_max_bytes", "drill_scratch"]},
        ),
        ("Deploying the Lambda", {"fields": ["lambda_environment", "iam_policy"]}),
        ("The site's workers", {"fields": ["workers_iam_policy"]}),
        ("Status badge", {"fields": ["badge"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in ("source_prefix", "backup_prefix"):
            # A form field trims whitespace by default: the pair's validation refuses it
            # instead, since S3 would read it as part of the keys.
            kwargs["strip"] = False
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    # Checking access writes and deletes a probe object with the server's credentials: it
    # needs the right to change pairs, not merely to see them.
    @admin.action(description="Check access to the selected pairs' buckets", permissions=["change"])
    def check_access(self, request, queryset):
        for pair in queryset:
            for finding in access.check_pair(pair, s3.client(pair.region)):
                self.message_user(
                    request, f"Pair {pair.name}: {finding.message}", _LEVEL[finding.level]
                )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._report_access(request, obj)

    def _report_access(self, request, pair: BucketPair) -> None:
        """Check the saved pair's buckets at once, so that a pair whose buckets do not exist
        (or are closed to the product) does not save silently. Problems are warnings: the
        pair is saved whatever S3 says, since buckets are often created after the pair."""
        try:
            findings = access.check_pair(pair, s3.client(pair.region))
        except Exception as exc:  # the save has happened; say why the check could not run
            self.message_user(
                request,
                f"Pair {pair.name}: the access check could not run: {exc}",
                messages.WARNING,
            )
            return
        problems = [f for f in findings if f.level != access.Level.OK]
        for finding in problems:
            self.message_user(
                request, f"Pair {pair.name}: access check: {finding.message}", messages.WARNING
            )
        if not problems:
            self.message_user(
                request,
                f"Pair {pair.name}: access check passed (both buckets exist, the backup is "
                "writable).",
                messages.SUCCESS,
            )

    def has_reconcile_permission(self, request) -> bool:
        return request.user.has_perm("replication.reconcile_bucketpair")

    @admin.action(description="Reconcile the selected pairs now", permissions=["reconcile"])
    def reconcile_now(self, request, queryset):
        self._start_runs(request, queryset, repair=False)

    @admin.action(description="Reconcile and repair the selected pairs", permissions=["reconcile"])
    def reconcile_and_repair(self, request, queryset):
        self._start_runs(request, queryset, repair=True)

    def _start_runs(self, request, queryset, *, repair: bool) -> None:
        for pair in queryset:
            run, created = start_reconcile(
                pair, trigger=ReconcileRun.Trigger.MANUAL, requested_by=request.user, repair=repair
            )
            text = outcome(run)
            if not created:
                text = f"Run #{run.pk} of {pair.name} is already {run.status}"
            if run.status == ReconcileRun.Status.FAILED:
                level = messages.ERROR
            elif created:
                level = messages.SUCCESS
            else:
                level = messages.INFO
            self.message_user(
                request, format_html('{} (<a href="{}">see the run</a>)', text, run_url(run)), level
            )

    @admin.action(
        description="Regenerate the selected pairs' badge URLs (the old ones stop working)",
        permissions=["change"],
    )
    def regenerate_badge_token(self, request, queryset):
        for pair in queryset:
            pair.regenerate_badge_token()
            self.message_user(
                request, f"Pair {pair.name}: new badge URL {badge_url(pair)}", messages.SUCCESS
            )

    @admin.display(description="Badge")
    def badge(self, pair):
        if pair.pk is None:
            return "Shown once the pair is saved."
        url = badge_url(pair)
        return format_html(
            '<img src="{}" alt="status badge"><pre>{}</pre><p>Markdown: <code>![{}]({})</code>. '
            "Anyone with this URL sees the pair's name, state and reason; "
            '"Regenerate the selected pairs\' badge URLs" on the list page replaces it.</p>',
            url,
            url,
            pair.name,
            url,
        )

    @admin.display(description="Lambda environment")
    def lambda_environment(self, pair):
        if pair.pk is None:
            return "Shown once the pair is saved."
        key = IngestKey.objects.active().order_by("-created_at").first()
        key_id = key.key_id if key else "<create an ingest key first>"
        env = deployment.lambda_environment(pair, report_url(), key_id)
        return format_html("<pre>{}</pre>", deployment.as_json(env))

    @admin.display(description="IAM policy for the function's role")
    def iam_policy(self, pair):
        if pair.pk is None:
            return "Shown once the pair is saved."
        return format_html(
            "<pre>{}</pre><p>If either bucket uses SSE-KMS, the role also needs kms:Decrypt on "
            "the source key and kms:GenerateDataKey and kms:Encrypt on the backup key.</p>",
            deployment.as_json(deployment.iam_policy(pair)),
        )


@admin.register(IngestKey)
class IngestKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "key_id", "created_at", "last_used_at", "is_active"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_id"]
    fields = ["name", "pairs", "key_id", "created_at", "last_used_at", "revoked_at"]
    filter_horizontal = ["pairs"]
    readonly_fields = ["key_id", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]
    Media = AdminStyles

    @admin.display(boolean=True, description="active")
    def is_active(self, key):
        return key.is_active

    def get_fields(self, request, obj=None):
        # The add form shows only the name: a key id displayed there would be a default
        # computed for the page, not the one the save generates.
        return self.fields if obj is not None else ["name"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.readonly_fields, "name"]
        return self.readonly_fields

    def response_add(self, request, obj, post_url_continue=None):
        # The secret goes into this one response and nowhere else: not into a message
        # (messages may be kept in a cookie), not into a log.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "key": obj,
            "report_url": report_url(),
            "title": f"Ingest key {obj.name} created",
        }
        response = TemplateResponse(request, "admin/replication/ingestkey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    # Revoking stops a Lambda's reporting: the right to change keys, not merely to see them.
    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke()
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records, written by the product: viewable, never added or edited in the admin,
    and deleted only by a superuser (whatever delete permission a staff user was given)."""

    Media = AdminStyles

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


class EstimatedCountPaginator(Paginator):
    """A paginator that does not count every row of a large table.

    On PostgreSQL, when the planner estimates at least ``EXACT_BELOW`` rows, the page count
    comes from that estimate (one EXPLAIN, no scan); COUNT(*) over 100 million events would
    read all of them for a number nobody needs exactly. Smaller lists, and other databases,
    are counted exactly. The count shown is then approximate, and so is the last page.
    """

    EXACT_BELOW = 10_000

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if connection.vendor == "postgresql" and isinstance(rows, QuerySet):
            plan = json.loads(rows.order_by().explain(format="json"))
            estimate = int(plan[0]["Plan"]["Plan Rows"])
            if estimate >= self.EXACT_BELOW:
                return estimate
        return super().count


class LargeListAdmin(ReadOnlyAdmin):
    """The lists of tables that grow with every copy: no full count, estimated paging."""

    paginator = EstimatedCountPaginator
    # The "N total" link next to a filtered count would count every row once more.
    show_full_result_count = False


class DiscrepancyInline(admin.TabularInline):
    model = Discrepancy
    fields = [
        "kind",
        "key",
        "source_size",
        "backup_size",
        "source_etag",
        "backup_etag",
        "repair_outcome",
        "repair_error",
    ]
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    show_change_link = False

    def get_queryset(self, request):
        # A run may hold thousands of rows; the inline shows the first hundred.
        qs = super().get_queryset(request)
        first = qs.values_list("pk", flat=True)[:100]
        return qs.filter(pk__in=list(first))


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "pair",
        "status",
        "verdict",
        "trigger",
        "repair",
        "created_at",
        "duration_s",
        "missing",
        "extra",
        "mismatched",
        "unverified",
        "in_flight",
        "kept",
        "repaired",
    ]
    list_filter = ["status", "verdict", "trigger", "repair", "pair"]
    list_select_related = ["pair"]
    search_fields = ["pair__name", "error"]
    date_hierarchy = "created_at"
    inlines = [DiscrepancyInline]


@admin.register(ObjectState)
class ObjectStateAdmin(LargeListAdmin):
    list_display = [
        "key",
        "pair",
        "status",
        "event_name",
        "event_time",
        "finished_at",
        "error_code",
        "finding",
        "finding_run",
        "finding_at",
        "lacking_since",
    ]
    list_filter = ["status", "finding", "pair"]
    # finding_run is shown on every row: joined, not fetched row by row.
    list_select_related = ["pair", "finding_run"]
    # By the pair's id, not its name (the model's "pair" ordering would join and sort every
    # row by name): object_state_unique_key (pair_id, key) then serves the page directly.
    ordering = ["pair_id", "key"]
    search_fields = ["key", "error_code"]


@admin.register(CopyEvent)
class CopyEventAdmin(LargeListAdmin):
    # Newest first across all pairs (the model's ordering), served by event_finished_idx.
    list_display = ["key", "pair", "status", "event_name", "attempt", "finished_at", "error_code"]
    list_filter = ["status", "pair"]
    list_select_related = ["pair"]
    search_fields = ["key", "error_code"]


@admin.register(Discrepancy)
class DiscrepancyAdmin(LargeListAdmin):
    list_display = ["key", "run", "kind", "repair_outcome", "repair_error"]
    list_filter = ["kind", "repair_outcome"]
    list_select_related = ["run__pair"]
    # Newest runs first by id (the model's "run" ordering would join and sort every row by
    # the run's creation time), read backwards along the run_id index.
    ordering = ["-run_id", "-id"]
    search_fields = ["key"]


# Restores and drills register their own read-only pages (replication/restore/admin.py).
from replication.restore import admin as _restore_admin  # noqa: E402, F401
