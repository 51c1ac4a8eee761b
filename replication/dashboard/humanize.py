"""Short human wording for durations and counts, as the pages show them."""

from datetime import timedelta


def duration(value: timedelta | float | int | None) -> str:
    """``0.4 s``, ``14 s``, ``3 min 20 s``, ``2 h 5 min``, ``3 d 4 h``; empty for None.

    Two units at most: a glance needs the size of a delay, not its last second.
    """
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{sign}{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    if whole < 60:
        return f"{sign}{whole} s"
    units = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))
    parts = []
    for name, size in units:
        amount, whole = divmod(whole, size)
        if amount or parts:
            parts.append((amount, name))
        if len(parts) == 2:
            break
    text = " ".join(f"{amount} {name}" for amount, name in parts if amount)
    return sign + text


def count(value: int | None) -> str:
    """Thousands separated by a thin space: ``12 345``; empty for None."""
    if value is None:
        return ""
    return f"{value:,}".replace(",", "\u2009")
