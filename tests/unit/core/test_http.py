"""The shared GET-with-retries loop and paging helpers (cxbackup.core.http); the clients' own tests cover them
through VendorClient and the export's ApiSource."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import pytest

from cxbackup.core.http import (
    HttpResponse,
    ListingError,
    Pager,
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


# -- listings that stop making sense ---------------------------------------------------------------


def listing(
    pager: Pager, server: Callable[[int], tuple[int, list[str], int | None]], max_requests: int = 10_000
) -> list[str]:
    """Drive `pager` against server(offset) -> (total, keys, echoed offset); the keys it yields."""
    got: list[str] = []
    requests = 0
    while pager.offset is not None:
        requests += 1
        assert requests <= max_requests, "the listing did not stop"
        offset = pager.offset
        total, keys, echoed = server(offset)
        got += [k for k, new in zip(keys, pager.take(offset, total, keys, echoed), strict=True) if new]
    return got


ITEMS = [f"r{i:04d}" for i in range(250)]


def honest(offset: int, limit: int = 100, items: list[str] = ITEMS) -> tuple[int, list[str], int | None]:
    return len(items), items[offset : offset + limit], offset


def test_an_honest_listing_ends_with_every_item_once() -> None:
    assert listing(Pager("the API", 100), honest) == ITEMS
    capped = listing(Pager("the API", 100), lambda o: honest(o, limit=30))  # the server serves 30, not 100
    assert capped == ITEMS
    grown: list[str] = list(ITEMS)

    def growing(offset: int) -> tuple[int, list[str], int | None]:  # late arrivals: a few items per page
        grown.extend(f"s{len(grown):04d}" for _ in range(5))
        return honest(offset, items=grown)

    assert listing(Pager("the API", 100), growing)[:250] == ITEMS


def test_a_total_that_lies_while_old_pages_come_again_stops_with_an_error() -> None:
    def clamping(offset: int) -> tuple[int, list[str], int | None]:
        real = min(offset, len(ITEMS) - 100)  # clamps offsets past the end: the last page again
        return 10 * len(ITEMS), ITEMS[real : real + 100], offset

    with pytest.raises(ListingError, match=r"same page for offset 285 as for offset 190 \(total=2500\)"):
        listing(Pager("the API", 100), clamping, max_requests=20)

    def shuffling(offset: int) -> tuple[int, list[str], int | None]:
        first = ITEMS[:100]
        return 10 * len(ITEMS), first if offset % 2 else first[::-1], offset  # old items, never the same page

    with pytest.raises(ListingError, match=r"nothing new up to offset \d+ \(3 in a row, total=2500\)"):
        listing(Pager("the API", 100), shuffling, max_requests=20)


def test_a_total_that_lies_while_new_pages_keep_coming_stops_after_the_page_budget() -> None:
    requests = {"n": 0}

    def endless(offset: int) -> tuple[int, list[str], int | None]:
        requests["n"] += 1
        return offset + 1000, [f"x{i}" for i in range(offset, offset + 100)], offset  # always 1000 more

    with pytest.raises(ListingError, match=r"kept returning pages past total=1000 at offset \d+ \(15 pages"):
        listing(Pager("the API", 100), endless)
    # 1000 items at 95 per page take 11 pages; the budget adds 3 pages and 10 %
    assert requests["n"] == 15


def test_an_empty_page_before_the_total_is_an_error_not_the_end() -> None:
    def short(offset: int) -> tuple[int, list[str], int | None]:
        return 250, ITEMS[offset : min(offset + 100, 150)], offset  # says 250, has 150

    with pytest.raises(ListingError, match=r"empty page at offset 150 although total=250: the listing ends early"):
        listing(Pager("the API", 100), short)
