"""Durations as people read them, in one place for the pages, the emails and the alerts'
messages. Plain Python, no Django: ``notifications/conditions.py`` (pure) uses it too."""

from __future__ import annotations

from datetime import timedelta


def short(took: timedelta | None) -> str:
    """A duration as a person reads it: "45s", "3m 07s", "2h 05m", "3d 4h"; "—" for none."""
    if took is None:
        return "—"
    seconds = max(0, int(took / timedelta(seconds=1)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
