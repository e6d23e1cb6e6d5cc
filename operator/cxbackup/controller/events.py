"""Events a reconciler posts on the resource it reconciles: built as values, posted by the handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Emit", "EventSpec"]


@dataclass(frozen=True)
class EventSpec:
    """An Event to post on the resource being reconciled."""

    warning: bool
    reason: str
    message: str


Emit = Callable[[EventSpec], None]
"""Posts an Event on the resource being reconciled (kopf.event in the operator, a list in tests)."""
