"""Admin for alerts: channels (with a test action), and the read-only history and deliveries.

Imported by replication/admin.py, which Django's autodiscovery loads.
"""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from replication.alerts import targets
from replication.alerts.delivery import send_test
from replication.models import AlertChannel, HealthChange, Notification


class AlertChannelPairInline(admin.TabularInline):
    """On a pair's page: the channels that alert on it (besides those for all pairs)."""

    model = AlertChannel.pairs.through
    extra = 0
    verbose_name = "alert channel"
    verbose_name_plural = "alert channels (besides those set to alert on all pairs)"


class AlertChannelForm(forms.ModelForm):
    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "target", "enabled", "all_pairs", "pairs"]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind
        target = cleaned.get("target")
        # Checked again at every connection; here so that a person learns it at once.
        if target and kind in (AlertChannel.Kind.WEBHOOK, AlertChannel.Kind.SLACK):
            problem = targets.url_problem(target.strip())
            if problem:
                self.add_error("target", problem)
        return cleaned


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "kind", "enabled", "all_pairs", "pair_names", "created_at"]
    list_filter = ["kind", "enabled", "all_pairs"]
    search_fields = ["name"]
    fields = ["name", "kind", "target", "enabled", "all_pairs", "pairs", "created_at"]
    readonly_fields = ["created_at"]
    filter_horizontal = ["pairs"]
    actions = ["send_test_notification", "regenerate_secret"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("pairs")

    def get_readonly_fields(self, request, obj=None):
        # A webhook's secret is shown only when it is created: a channel that became a
        # webhook later would sign with a secret nobody has seen.
        if obj is not None:
            return [*self.readonly_fields, "kind"]
        return self.readonly_fields

    @admin.display(description="pairs")
    def pair_names(self, channel):
        if channel.all_pairs:
            return "all"
        return ", ".join(p.name for p in channel.pairs.all()) or "none"

    def response_add(self, request, obj, post_url_continue=None):
        if obj.kind != AlertChannel.Kind.WEBHOOK:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, f"Alert channel {obj.name} created")

    def _secret_page(self, request, channel, title, regenerated=False):
        # The signing secret goes into this one response and nowhere else: not into a
        # message (messages may be kept in a cookie), not into a log.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "channel": channel,
            "regenerated": regenerated,
            "title": title,
        }
        response = TemplateResponse(request, "admin/replication/alertchannel/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    # A new secret stops the receiver verifying until it has it: the right to change channels.
    @admin.action(description="Regenerate the webhook signing secret", permissions=["change"])
    def regenerate_secret(self, request, queryset):
        channels = list(queryset[:2])
        if len(channels) != 1 or channels[0].kind != AlertChannel.Kind.WEBHOOK:
            self.message_user(
                request,
                "Select one JSON webhook channel: its new secret is shown once, on the next "
                "page. Nothing was changed.",
                messages.ERROR,
            )
            return None
        (channel,) = channels
        channel.regenerate_secret()
        self.log_change(request, channel, "Regenerated the signing secret.")
        return self._secret_page(
            request, channel, f"New signing secret for {channel.name}", regenerated=True
        )

    def has_test_permission(self, request) -> bool:
        return request.user.has_perm("replication.test_alertchannel")

    @admin.action(description="Send test notification", permissions=["test"])
    def send_test_notification(self, request, queryset):
        for channel in queryset:
            notification = send_test(channel)
            if notification.status == Notification.Status.SENT:
                self.message_user(
                    request, f"{channel.name}: test notification sent.", messages.SUCCESS
                )
            else:
                self.message_user(
                    request,
                    f"{channel.name}: test notification failed: {notification.last_error}",
                    messages.ERROR,
                )


class _RecordAdmin(admin.ModelAdmin):
    """Written by the product: viewable, never added, edited or deleted by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HealthChange)
class HealthChangeAdmin(_RecordAdmin):
    list_display = ["at", "pair", "from_state", "to_state", "reason"]
    list_filter = ["to_state", "pair"]
    list_select_related = ["pair"]
    search_fields = ["pair__name", "reason"]
    date_hierarchy = "at"


@admin.register(Notification)
class NotificationAdmin(_RecordAdmin):
    list_display = [
        "created_at",
        "kind",
        "pair",
        "state",
        "channel",
        "status",
        "attempts",
        "sent_at",
        "last_error",
    ]
    list_filter = ["status", "kind", "channel"]
    list_select_related = ["channel", "change__pair"]
    search_fields = ["change__pair__name", "channel__name", "last_error"]
    date_hierarchy = "created_at"

    @admin.display(description="pair")
    def pair(self, notification):
        return notification.change.pair.name if notification.change else "(test)"
