"""The emulator's contact-history and chat APIs over real HTTP: paging, retention, refusals, faults."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from cxbackup_dev.emulator import DatasetSpec, Emulator, EndpointFaults, FaultConfig

pytestmark = pytest.mark.integration

SPEC = DatasetSpec(seed=3, hours=4, recordings_per_hour=1, contacts_per_hour=15, chat_users=3, chat_messages_per_hour=6)


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(SPEC, tmp_path_factory.mktemp("emu"), media="none") as e:
        yield e


def get(emu: Emulator, path: str, *, auth: bool = True) -> tuple[int, Any]:
    url = urlsplit(emu.gws_uri_prefix + path)
    headers = {}
    if auth:
        token = base64.b64encode(f"{emu.gws_username}:{emu.gws_password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    conn = http.client.HTTPConnection(url.netloc, timeout=30)
    try:
        conn.request("GET", url.path + ("?" + url.query if url.query else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_contact_history_pages_in_order(emu: Emulator) -> None:
    lo, hi = emu.start_ms, emu.end_ms
    truth = list(emu.contacts.iter_items(lo, hi))
    assert len(truth) == 60
    got: list[dict[str, Any]] = []
    for offset in range(0, 60, 25):
        status, body = get(emu, f"/contact-history?startTimeRange={lo},{hi}&limit=25&offset={offset}")
        assert status == 200 and body["total"] == 60 and body["offset"] == offset
        got += body["items"]
    assert got == truth
    status, body = get(emu, f"/contact-history?startTimeRange={lo},{hi}&limit=5000")
    assert status == 200 and len(body["items"]) == 60
    assert get(emu, "/contact-history?startTimeRange=yesterday")[0] == 400
    assert get(emu, f"/contact-history?startTimeRange={lo},{hi}", auth=False)[0] == 401


def test_chat_messages_per_user_with_retention(emu: Emulator) -> None:
    lo, hi = emu.start_ms, emu.end_ms
    user = emu.chat.users[2].id
    status, body = get(emu, f"/chat/users/{quote(user)}/messages?startTimeRange={lo},{hi}&limit=1000")
    assert status == 200
    assert body["items"] == list(emu.chat.messages(user, lo, hi)) and body["total"] == len(body["items"]) > 0
    assert body["retention"]["days"] == 90 and body["retention"]["rangeOutsideRetention"] is False
    end = datetime.fromtimestamp(hi / 1000, UTC)
    emu.chat.set_retention(clock=lambda: end + timedelta(days=91))
    try:
        status, body = get(emu, f"/chat/users/{quote(user)}/messages?startTimeRange={lo},{hi}")
    finally:
        emu.chat.clock = None
    assert status == 200 and body["total"] == 0 and body["items"] == []
    assert body["retention"]["rangeOutsideRetention"] is True
    assert body["retention"]["oldestAvailable"].startswith((end + timedelta(days=1)).strftime("%Y-%m-%d"))


def test_whole_organisation_and_unknown_users_are_refused(emu: Emulator) -> None:
    lo, hi = emu.start_ms, emu.end_ms
    for path in ("/chat/messages", "/chat/users", "/chat/users/"):
        status, body = get(emu, f"{path}?startTimeRange={lo},{hi}")
        assert status == 400, path
        assert "whole-organisation chat exports are not supported" in body["message"]
    status, body = get(emu, f"/chat/users/nobody/messages?startTimeRange={lo},{hi}")
    assert status == 404 and body["message"] == "chat user 'nobody' not found"


def test_faults_apply_to_the_new_endpoints(emu: Emulator, tmp_path: Path) -> None:
    lo, hi = emu.start_ms, emu.end_ms
    user = emu.chat.users[0].id
    before = emu.counters
    emu.set_faults(
        FaultConfig(
            {
                "contacts": EndpointFaults(fail_first=2, error_status=503),
                "chat": EndpointFaults(fail_first=1, error_status=429),
            }
        )
    )
    try:
        statuses = [get(emu, f"/contact-history?startTimeRange={lo},{hi}")[0] for _ in range(3)]
        chat = [get(emu, f"/chat/users/{user}/messages?startTimeRange={lo},{hi}")[0] for _ in range(2)]
    finally:
        emu.set_faults(None)
    assert statuses == [503, 503, 200] and chat == [429, 200]
    after = emu.counters
    assert after["contacts.errors"] - before.get("contacts.errors", 0) == 2
    assert after["chat.errors"] - before.get("chat.errors", 0) == 1


def test_an_export_fails_when_the_contact_total_lies(emu: Emulator) -> None:
    """`lying_total` on the contact-history endpoint: the export client stops with SourceError naming the
    problem after a few requests instead of paging on."""
    from cxbackup.export.errors import SourceError
    from cxbackup.export.request import TimeRange
    from cxbackup.export.source import ApiSource

    time_range = TimeRange(
        datetime.fromtimestamp(emu.start_ms / 1000, UTC), datetime.fromtimestamp(emu.end_ms / 1000, UTC)
    )
    before = len(emu.request_log("contacts"))
    problem = r"kept returning pages with nothing new up to offset \d+ \(3 in a row, total=625\)"
    emu.set_faults(FaultConfig({"contacts": EndpointFaults(lying_total=True)}))
    try:
        with (
            ApiSource(emu.gws_uri_prefix, emu.gws_username, emu.gws_password, page_size=25) as source,
            pytest.raises(SourceError, match=problem),
        ):
            list(source.contact_history(time_range))
    finally:
        emu.set_faults(None)
    assert len(emu.request_log("contacts")) - before < 10
    with ApiSource(emu.gws_uri_prefix, emu.gws_username, emu.gws_password, page_size=25) as source:
        assert sum(len(p.items) for p in source.contact_history(time_range)) == 60
