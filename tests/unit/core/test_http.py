"""The shared GET-with-retries loop and paging helpers (cxbackup.core.http); the clients' own tests cover them
through VendorClient and the export's ApiSource."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from cxbackup.core.http import (
    HttpResponse,
    RecentKeys,
    RetriesExhausted,
    RetryableAnswer,
    TransportError,
    get_with_retries,
    next_offset,
    retry_after,
)
from cxbackup.core.retry import RetryPolicy


class Script:
    def __init__(self, *answers: HttpResponse | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def handle(resp: HttpResponse) -> bytes:
    if resp.body == b"garbled":
        raise RetryableAnswer("garbled body")
    if resp.status != 200:
        raise ValueError(f"HTTP {resp.status}")
    return resp.body


def test_retries_transport_errors_retry_statuses_and_retryable_answers_honouring_retry_after() -> None:
    slept: list[float] = []
    script = Script(
        TransportError("reset"),
        HttpResponse(429, {"Retry-After": "7"}, b""),
        HttpResponse(200, {}, b"garbled"),
        HttpResponse(200, {}, b"ok"),
    )
    got = get_with_retries(
        script, "https://u:p@x/y", {}, handle, retry=RetryPolicy(retries=3), rng=random.Random(1), sleep=slept.append
    )
    assert got == b"ok" and script.calls == 4 and len(slept) == 3
    assert slept[1] == pytest.approx(7.0, abs=1.0)  # the server's Retry-After, not the backoff


def test_a_permanent_answer_is_raised_at_once_and_exhaustion_names_the_last_reason() -> None:
    script = Script(HttpResponse(404, {}, b""))
    with pytest.raises(ValueError, match="HTTP 404"):
        get_with_retries(script, "https://x/y", {}, handle, retry=RetryPolicy(retries=3), rng=random.Random(), sleep=id)
    assert script.calls == 1
    script = Script(*[HttpResponse(503, {}, b"")] * 3)
    with pytest.raises(RetriesExhausted, match=r"GET https://x/y failed after 3 attempts: HTTP 503") as info:
        get_with_retries(
            script, "https://x/y", {}, handle, retry=RetryPolicy(retries=2), rng=random.Random(), sleep=lambda _s: None
        )
    assert info.value.last == "HTTP 503"


def test_pages_overlap_a_little_and_the_last_page_ends_it() -> None:
    assert next_offset(0, 100, 1000) == 95
    assert next_offset(0, 4, 1000) == 3  # small pages overlap by a quarter, so they still advance
    assert next_offset(0, 1, 1000) == 1
    assert next_offset(900, 100, 1000) is None
    assert next_offset(0, 0, 1000) is None


def test_recent_keys_drop_repeats_within_two_pages() -> None:
    keys = RecentKeys(page_size=2)  # remembers 2 * 2 + 5 keys
    assert [keys.fresh(k) for k in "abab"] == [True, True, False, False]
    for k in "cdefghijk":
        assert keys.fresh(k)
    assert keys.fresh("a")  # long forgotten


def test_retry_after_any_case_and_only_numbers() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"RETRY-AFTER": "soon"}) is None
    assert retry_after({}) is None
