"""The admin's side of protection: actions on pairs, the workers' policy, the results."""

from django.contrib import admin, messages
from django.utils.html import format_html

from replication import deployment
from replication.models import (
    GuardAudit,
    GuardHold,
    GuardRelease,
    PolicyAcknowledgement,
    ProtectionResult,
)
from replication.protection import guard, store, tasks

_LEVEL = {"ok": messages.SUCCESS, "warning": messages.WARNING, "unknown": messages.WARNING}


class ProtectionAdminMixin:
    """Mixed into the pair admin: "Check protection now", "Acknowledge the backup bucket
    policy", and the workers' least-privilege policy (a read-only field)."""

    def has_run_protection_checks_permission(self, request) -> bool:
        return request.user.has_perm("replication.run_protection_checks")

    def has_acknowledge_bucket_policy_permission(self, request) -> bool:
        return request.user.has_perm("replication.acknowledge_bucket_policy")

    @admin.action(
        description="Check the selected pairs' protection now",
        permissions=["run_protection_checks"],
    )
    def check_protection(self, request, queryset):
        for pair in queryset:
            # In this request: a person waits for the answer, eight read-only calls a pair.
            checks = store.run_checks(pair)
            bad = [c for c in checks if c.state.value != "ok"]
            if not bad:
                self.message_user(
                    request, f"Pair {pair.name}: every check is ok.", messages.SUCCESS
                )
            for check in bad:
                self.message_user(
                    request,
                    f"Pair {pair.name}: {check.id.value} {check.state.value}: {check.reason}",
                    _LEVEL.get(check.state.value, messages.ERROR),
                )
            tasks.evaluate_after_checks(pair.pk)

    @admin.action(
        description="Acknowledge the selected pairs' backup bucket policy as it was last read",
        permissions=["acknowledge_bucket_policy"],
    )
    def acknowledge_backup_policy(self, request, queryset):
        for pair in queryset:
            if store.acknowledge_policy(pair, request.user):
                self.message_user(
                    request,
                    f"Pair {pair.name}: the backup bucket policy last read is acknowledged.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"Pair {pair.name}: its policy has not been read yet (or could not be): "
                    "check its protection first.",
                    messages.WARNING,
                )

    def has_release_guard_permission(self, request) -> bool:
        return request.user.has_perm("replication.release_guard")

    @admin.action(
        description="Release the selected pairs' guard: apply the held changes (reconcile with "
        "repair)",
        permissions=["release_guard"],
    )
    def release_guard_apply(self, request, queryset):
        self._release(request, queryset, GuardRelease.APPLY)

    @admin.action(
        description="Release the selected pairs' guard: keep the backup as it is",
        permissions=["release_guard"],
    )
    def release_guard_keep(self, request, queryset):
        self._release(request, queryset, GuardRelease.KEEP)

    def _release(self, request, queryset, kind: str) -> None:
        for pair in queryset:
            if guard.release(pair, request.user, kind) is None:
                self.message_user(
                    request, f"Pair {pair.name}: its guard holds nothing.", messages.INFO
                )
            else:
                self.message_user(
                    request,
                    f"Pair {pair.name}: guard released ({GuardRelease(kind).label}).",
                    messages.SUCCESS,
                )

    @admin.display(description="IAM policy for the site's workers")
    def workers_iam_policy(self, pair):
        if pair.pk is None:
            return "Shown once the pair is saved."
        return format_html(
            "<pre>{}</pre><p>For the role of the Celery workers (and of the web processes, "
            "which run the admin's checks): reconcile, repair, restore from the backup's "
            "versions, restore drills, and the read-only calls of the protection checks. It "
            "cannot delete a version or change a bucket's settings.</p>",
            deployment.as_json(deployment.workers_iam_policy(pair)),
        )


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


@admin.register(ProtectionResult)
class ProtectionResultAdmin(_ReadOnly):
    list_display = ["pair", "check_id", "state", "reason", "checked_at", "is_latest"]
    list_filter = ["state", "check_id", "is_latest", "pair"]
    list_select_related = ["pair"]
    search_fields = ["pair__name", "reason"]
    date_hierarchy = "checked_at"


@admin.register(GuardHold)
class GuardHoldAdmin(_ReadOnly):
    list_display = [
        "pair",
        "since",
        "changes",
        "encrypted_refusals",
        "usual",
        "threshold",
        "released_at",
        "release",
        "released_by",
    ]
    list_filter = ["release", "pair"]
    list_select_related = ["pair", "released_by"]
    date_hierarchy = "since"


@admin.register(GuardAudit)
class GuardAuditAdmin(_ReadOnly):
    list_display = ["pair", "at", "action", "by", "note"]
    list_filter = ["action", "pair"]
    list_select_related = ["pair", "by"]
    date_hierarchy = "at"


@admin.register(PolicyAcknowledgement)
class PolicyAcknowledgementAdmin(_ReadOnly):
    list_display = ["pair", "acknowledged_by", "acknowledged_at"]
    list_filter = ["pair"]
    list_select_related = ["pair", "acknowledged_by"]
