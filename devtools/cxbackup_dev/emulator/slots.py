"""Queries over items kept in one-hour slots: the recording data set (dataset.py) and the contact and
chat series (contacts.py, chat.py) share them.

A subclass says where its span starts and ends (`start_ms`, `end_ms`), how many items a slot holds
(`slot_count`, cheap), gives a slot's index sorted by (time, id, ...) (`_index`, cached by the subclass)
and turns one index entry into an item (`materialize`). `count` and `page` count whole slots without
building their index, so paging deep into a long span stays cheap.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

__all__ = ["HOUR_MS", "SlotQueries"]

HOUR_MS = 3_600_000

E = TypeVar("E", bound=tuple[Any, ...])  # an index entry; its first field is the item's time (ms)
T = TypeVar("T")  # an item


class SlotQueries(Generic[E, T]):
    @property
    def start_ms(self) -> int:
        raise NotImplementedError

    @property
    def end_ms(self) -> int:
        raise NotImplementedError

    def slot_count(self, s: int) -> int:
        raise NotImplementedError

    def _index(self, s: int) -> list[E]:
        raise NotImplementedError

    def materialize(self, s: int, entry: E) -> T:
        raise NotImplementedError

    def _slots(self, from_ms: int, to_ms: int) -> Iterator[tuple[int, int, int, bool]]:
        """(slot, lo, hi, whole slot inside [lo, hi)) for the slots meeting [from_ms, to_ms)."""
        lo, hi = max(from_ms, self.start_ms), min(to_ms, self.end_ms)
        if lo >= hi:
            return
        first, last = (lo - self.start_ms) // HOUR_MS, (hi - 1 - self.start_ms) // HOUR_MS
        for s in range(first, last + 1):
            slot_lo = self.start_ms + s * HOUR_MS
            yield s, lo, hi, lo <= slot_lo and slot_lo + HOUR_MS <= hi

    def count(self, from_ms: int, to_ms: int) -> int:
        """How many items fall in [from_ms, to_ms)."""
        total = 0
        for s, lo, hi, full in self._slots(from_ms, to_ms):
            if full:
                total += self.slot_count(s)
            else:
                idx = self._index(s)
                total += bisect.bisect_left(idx, (hi,)) - bisect.bisect_left(idx, (lo,))
        return total

    def page(self, from_ms: int, to_ms: int, offset: int, limit: int) -> tuple[int, list[T]]:
        """(total, items[offset:offset+limit]) of the items in [from_ms, to_ms)."""
        total, skip = 0, offset
        out: list[T] = []
        for s, lo, hi, full in self._slots(from_ms, to_ms):
            if full:
                n = self.slot_count(s)
                if len(out) >= limit or skip >= n:  # counted without building the slot
                    total += n
                    skip = skip - n if len(out) < limit else skip
                    continue
            idx = self._index(s)
            a, b = (0, len(idx)) if full else (bisect.bisect_left(idx, (lo,)), bisect.bisect_left(idx, (hi,)))
            total += b - a
            if len(out) >= limit:
                continue
            if skip >= b - a:
                skip -= b - a
                continue
            for entry in idx[a + skip : b]:
                if len(out) >= limit:
                    break
                out.append(self.materialize(s, entry))
            skip = 0
        return total, out

    def iter_items(self, from_ms: int | None = None, to_ms: int | None = None) -> Iterator[T]:
        """Every item in [from_ms, to_ms) (default: the whole span) in (time, id) order, lazily."""
        lo = self.start_ms if from_ms is None else from_ms
        hi = self.end_ms if to_ms is None else to_ms
        for s, a_ms, b_ms, _full in self._slots(lo, hi):
            idx = self._index(s)
            for entry in idx[bisect.bisect_left(idx, (a_ms,)) : bisect.bisect_left(idx, (b_ms,))]:
                yield self.materialize(s, entry)
