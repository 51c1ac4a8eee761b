"""Template filters of the restore pages."""

from django import template

register = template.Library()


@register.filter
def size(value: int | float | None) -> str:
    """Bytes in decimal units, as S3's console shows them: ``1.2 GB``."""
    if value is None:
        return ""
    value = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""
