"""Status conditions with observedGeneration; lastTransitionTime changes only when the status flips."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cxbackup.core.times import iso

__all__ = ["condition", "set_condition"]


def condition(conditions: list[dict[str, Any]] | None, ctype: str) -> dict[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") == ctype:
            return cond
    return None


def set_condition(
    conditions: list[dict[str, Any]] | None,
    ctype: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: dt.datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """A new list with `ctype` set; the others unchanged."""
    out = [dict(c) for c in conditions or [] if c.get("type") != ctype]
    old = condition(conditions, ctype)
    transition = old.get("lastTransitionTime") if old and old.get("status") == status else None
    out.append(
        {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": transition or iso(now),
            "observedGeneration": generation,
        }
    )
    order = {"Ready": 0, "Running": 1, "Degraded": 2}
    out.sort(key=lambda c: (order.get(c["type"], 9), c["type"]))
    return out
