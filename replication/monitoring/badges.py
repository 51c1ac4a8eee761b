"""A pair's status badge: what it says and how wide it is (pure: no Django, no I/O).

Drawn by templates/badges/pair.svg in the shields.io style: the pair's name on grey, then
its state and reason on the state's colour. Text is escaped by the template.
"""

from dataclasses import dataclass

from replication.status.health import State

COLOURS = {
    State.OK: "#2e7d32",
    State.WARNING: "#b26a00",
    State.CRITICAL: "#c62828",
    State.UNKNOWN: "#757575",
    State.PAUSED: "#546e7a",
}
# A badge sits in a README line: the reason is cut to this many characters, at a word.
MAX_REASON = 48
# Verdana 11 px averages about 6.5 px a character; 10 px of padding each side.
CHAR_WIDTH = 6.5
PADDING = 10


@dataclass(frozen=True)
class Badge:
    label: str
    message: str
    colour: str
    label_width: int
    message_width: int

    @property
    def width(self) -> int:
        return self.label_width + self.message_width


def truncate(text: str, limit: int = MAX_REASON) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:(") + "…"


def text_width(text: str) -> int:
    return round(len(text) * CHAR_WIDTH) + 2 * PADDING


def badge(name: str, state: State, reason: str) -> Badge:
    message = f"{state.value}: {truncate(reason)}" if reason else state.value
    return Badge(
        label=name,
        message=message,
        colour=COLOURS[state],
        label_width=text_width(name),
        message_width=text_width(message),
    )
