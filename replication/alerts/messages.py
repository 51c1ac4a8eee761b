"""What an alert says, in each channel's format (pure: no Django, no I/O).

Every message names the pair, its state and the reason, and links to the pair's page.
The webhook payload is a contract with receivers: docs/alerts.md documents it, and a field
is only ever added, never renamed or removed.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from replication.alerts.rules import Kind
from replication.status.health import duration

PAYLOAD_VERSION = 1
PREFIX = "[backupsite]"


@dataclass(frozen=True)
class Message:
    kind: Kind
    pair: str  # "" for a test notification
    state: str  # the pair's state now: "critical", "ok"...
    previous_state: str  # "" when unknown (first evaluation, test)
    reason: str
    since: datetime  # when the pair entered ``state``
    at: datetime  # when the message was made
    url: str  # the pair's page (the site for a test)
    notification_id: int | None = None
    reminder: int = 0  # n for the n-th reminder
    channel: str = ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def subject(m: Message) -> str:
    state, reason = m.state.upper(), _one_line(m.reason)
    if m.kind == Kind.TEST:
        return f"{PREFIX} Test notification to {m.channel}"
    if m.kind == Kind.RESOLVED:
        return f"{PREFIX} RESOLVED: {m.pair} is {state} again (was {m.previous_state.upper()})"
    if m.kind == Kind.REMINDER:
        return f"{PREFIX} Still {state}: {m.pair} for {duration(m.at - m.since)}: {reason}"
    if m.kind == Kind.SUMMARY:
        return f"{PREFIX} FLAPPING: {m.pair} is {state} now: {reason}"
    return f"{PREFIX} {state}: {m.pair}: {reason}"


def text(m: Message) -> str:
    """The plain-text body of an e-mail."""
    if m.kind == Kind.TEST:
        return (
            f"This is a test notification from backupsite to the channel {m.channel!r}.\n"
            f"If you can read it, alerts will reach you here.\n\n{m.url}\n"
        )
    lines = [subject(m).removeprefix(PREFIX).strip(), ""]
    lines.append(f"Pair:    {m.pair}")
    if m.previous_state:
        lines.append(f"State:   {m.state} (was {m.previous_state})")
    else:
        lines.append(f"State:   {m.state}")
    lines.append(f"Since:   {_utc(m.since)}")
    lines.append(f"Reason:  {m.reason}")
    lines += ["", f"Details: {m.url}", ""]
    if m.kind == Kind.REMINDER:
        lines.append("You are reminded while the pair stays critical (ALERT_REMINDER_MINUTES).")
    if m.kind == Kind.SUMMARY:
        lines.append(
            "The pair kept changing state, so its messages were held and summed up here "
            "(ALERT_FLAP_CHANGES, ALERT_FLAP_WINDOW_MINUTES)."
        )
    return "\n".join(lines) + "\n"


def webhook_payload(m: Message) -> dict:
    """The JSON body POSTed to a webhook (documented in docs/alerts.md)."""
    return {
        "version": PAYLOAD_VERSION,
        "id": m.notification_id,
        "event": str(m.kind),
        "pair": m.pair or None,
        "state": m.state or None,
        "previous_state": m.previous_state or None,
        "reason": m.reason,
        "since": _iso(m.since),
        "sent_at": _iso(m.at),
        "reminder": m.reminder,
        "url": m.url,
        "summary": subject(m).removeprefix(PREFIX).strip(),
    }


_SLACK_ICON = {
    "critical": ":red_circle:",
    "warning": ":large_yellow_circle:",
    "ok": ":white_check_mark:",
}


def slack_payload(m: Message) -> dict:
    """A Slack incoming-webhook body: ``{"text": ...}`` in Slack's mrkdwn."""
    if m.kind == Kind.TEST:
        return {
            "text": f"Test notification from backupsite to {_slack_escape(m.channel)}: it works."
        }
    icon = _SLACK_ICON.get(m.state, ":grey_question:")
    headline = _slack_escape(subject(m).removeprefix(PREFIX).strip())
    return {
        "text": f"{icon} *{headline}*\n<{m.url}|{_slack_escape(m.pair)}> is {m.state} since "
        f"{_utc(m.since)}: {_slack_escape(m.reason)}"
    }


def _slack_escape(value: str) -> str:
    # Slack reads these three as markup; everything else is shown as written.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _utc(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
