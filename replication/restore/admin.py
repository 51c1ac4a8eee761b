"""Restores and drills in the admin: audit records, viewable, never added or edited there;
restore points, which an operator may flag for whoever restores."""

from django.contrib import admin

from replication.admin import ReadOnlyAdmin
from replication.models import DrillObject, RestoreDrill, RestoreJob, RestorePoint


@admin.register(RestoreJob)
class RestoreJobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "pair",
        "status",
        "at",
        "prefix",
        "target_bucket",
        "target_prefix",
        "into_source",
        "requested_by_name",
        "created_at",
        "planned_objects",
        "restored",
        "failed",
    ]
    list_filter = ["status", "into_source", "via", "pair"]
    list_select_related = ["pair"]
    search_fields = ["pair__name", "prefix", "target_bucket", "requested_by_name", "error"]
    date_hierarchy = "created_at"


class DrillObjectInline(admin.TabularInline):
    model = DrillObject
    fields = ["key", "size", "multipart", "outcome", "compared_by", "duration_s", "error"]
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0


@admin.register(RestoreDrill)
class RestoreDrillAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "pair",
        "status",
        "trigger",
        "requested_by_name",
        "started_at",
        "sampled",
        "verified",
        "sampled_bytes",
        "duration_s",
        "throughput_bytes_s",
    ]
    list_filter = ["status", "trigger", "pair"]
    list_select_related = ["pair"]
    date_hierarchy = "started_at"
    inlines = [DrillObjectInline]


@admin.register(RestorePoint)
class RestorePointAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "at", "prefix", "reason", "created_at"]
    list_filter = ["pair"]
    list_select_related = ["pair"]
    search_fields = ["pair__name", "prefix", "reason"]
