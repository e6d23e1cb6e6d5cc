"""The emulator's contact history and chat data: deterministic, lazy paging, retention."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxbackup_dev.emulator.chat import DAY_MS, ChatHistory
from cxbackup_dev.emulator.contacts import ContactHistory, mask_email, mask_phone
from cxbackup_dev.emulator.dataset import HOUR_MS, Dataset, DatasetSpec, parse_time

SPEC = DatasetSpec(seed=5, hours=5, recordings_per_hour=1, contacts_per_hour=13, chat_users=4, chat_messages_per_hour=4)


def all_pages(page: Any, lo: int, hi: int, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        total, items = page(lo, hi, offset, limit)
        out += items
        offset += len(items)
        if not items or offset >= total:
            return out


def test_contacts_are_deterministic_sorted_and_page_like_the_ground_truth() -> None:
    ds = Dataset(SPEC)
    contacts = ContactHistory(ds)
    truth = list(contacts.iter_items())
    assert len(truth) == 65 == contacts.count(ds.start_ms, ds.end_ms)
    assert truth == list(ContactHistory(Dataset(SPEC)).iter_items())
    keys = [(parse_time(c["startTime"]), c["id"]) for c in truth]
    assert keys == sorted(keys) and len({c["id"] for c in truth}) == 65
    lo, hi = ds.start_ms + HOUR_MS // 2, ds.end_ms - HOUR_MS
    window = [c for c in truth if lo <= parse_time(c["startTime"]) < hi]
    assert all_pages(contacts.page, lo, hi, 7) == window
    assert contacts.page(lo, hi, 10_000, 5) == (len(window), [])
    c = truth[0]
    assert c["type"] in ("voice", "chat", "email") and c["direction"] in ("inbound", "outbound")
    assert parse_time(c["endTime"]) - parse_time(c["startTime"]) == c["duration"] * 1000
    assert re.fullmatch(r"\+1\d{3}\*+\d\d", c["customer"]["phone"])
    assert re.fullmatch(r"[a-z]\*\*\*@[a-z.]+", c["customer"]["email"])
    assert {"Language", "CustomerSegment", "CaseId"} <= set(c["attachedData"])


def test_contacts_follow_extend() -> None:
    ds = Dataset(SPEC)
    contacts = ContactHistory(ds)
    lo, hi = ds.extend(2)
    assert contacts.count(lo, hi) == 26


def test_masks() -> None:
    assert mask_phone("+15126401290") == "+1512*****90"
    assert mask_email("jane.doe@example.com") == "j***@example.com"


def chat_at(days_after_end: float, retention: int = 90) -> tuple[Dataset, ChatHistory]:
    ds = Dataset(SPEC)
    end = datetime.fromtimestamp(ds.end_ms / 1000, UTC)
    return ds, ChatHistory(ds, retention_days=retention, clock=lambda: end + timedelta(days=days_after_end))


def test_chat_messages_are_the_subject_users_own() -> None:
    ds, chat = chat_at(0)
    user = chat.users[1]
    msgs = list(chat.messages(user.id))
    assert msgs and all(m["senderId"] == user.id for m in msgs)
    assert len(msgs) == chat.count_all(user.id)
    assert all(r["id"] != user.id for m in msgs for r in m["recipients"])
    page = chat.page(user.id, ds.start_ms, ds.end_ms, 0, 1000)
    assert page["items"] == msgs and page["total"] == len(msgs) and page["userId"] == user.id
    assert page["retention"]["rangeOutsideRetention"] is False and page["retention"]["rangeTruncated"] is False
    others = {m["id"] for u in chat.users[2:] for m in chat.messages(u.id)}
    assert not others & {m["id"] for m in msgs}
    with pytest.raises(KeyError):
        chat.page("nobody", ds.start_ms, ds.end_ms, 0, 10)


def test_chat_retention_hides_old_messages_and_says_so() -> None:
    ds, chat = chat_at(0)
    user = chat.users[0].id
    everything = list(chat.messages(user))
    # "now" moves so that the cut falls after the second hour of the data set
    cut = ds.start_ms + 2 * HOUR_MS
    chat.set_retention(clock=lambda: datetime.fromtimestamp((cut + 90 * DAY_MS) / 1000, UTC))
    assert chat.oldest_available_ms() == cut
    kept = [m for m in everything if parse_time(m["sentAt"].replace("Z", "+0000")) >= cut]
    assert 0 < len(kept) < len(everything)
    page = chat.page(user, ds.start_ms, ds.end_ms, 0, 1000)
    assert page["items"] == kept and page["retention"]["rangeTruncated"] is True
    assert page["retention"]["oldestAvailable"].startswith(
        datetime.fromtimestamp(cut / 1000, UTC).strftime("%Y-%m-%dT%H")
    )
    outside = chat.page(user, ds.start_ms, cut, 0, 1000)
    assert outside["total"] == 0 and outside["items"] == []
    assert outside["retention"]["rangeOutsideRetention"] is True
    assert list(chat.messages(user, ds.start_ms, cut)) == []


def test_default_now_is_the_end_of_the_data() -> None:
    ds = Dataset(SPEC)
    chat = ChatHistory(ds)
    assert chat.oldest_available_ms() == ds.end_ms - 90 * DAY_MS
    with pytest.raises(ValueError):
        chat.set_retention(days=0)
