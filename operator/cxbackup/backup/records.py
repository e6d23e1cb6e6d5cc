"""Recording metadata as the recording API returns it: pages, records, media files.

A page is `{"total": N, "offset": K, "recordings": [<record>, ...]}` (see VENDOR_API.md). Each record
is kept twice: parsed (for the fields the worker needs) and as the exact JSON text the server sent,
which is what gets written to `<callUUID>.json`: field order, unknown fields, number formatting and
escapes are preserved byte for byte (when the server sends UTF-8).

The record fields used: `id` (the CallUUID), `startTime` (`2021-07-21T16:49:00.000+0000`, or epoch
ms), `region`, and per `mediaFiles[]` entry `mediaId`, `type`, `size` (bytes before encryption),
`partitions`, `accessgroups` and `parameters` (for the agent hierarchy, see selection.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cxbackup.backup.errors import VendorApiError
from cxbackup.core.redact import snippet
from cxbackup.core.times import to_ms

__all__ = [
    "HIERARCHY_KEYS",
    "MediaFile",
    "Recording",
    "RecordingsPage",
    "parse_metadata_time",
    "parse_recordings_page",
]

# Where an agent hierarchy path (e.g. /Anthony/John) may appear in a media file's `parameters` or in
# the record itself. The vendor's documentation names the agent setting "agent_hierarchy"; the camelCase
# spellings are accepted too.
HIERARCHY_KEYS = ("agentHierarchy", "agent_hierarchy", "hierarchy")

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


def parse_metadata_time(value: object) -> int:
    """Epoch ms of a metadata time (`2021-07-21T16:49:00.000+0000`, `...Z`, or epoch ms)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return to_ms(when)


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str | int))
    return ()


def _hierarchy(container: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for key in HIERARCHY_KEYS:
        found.extend(_strings(container.get(key)))
    return tuple(found)


@dataclass(frozen=True)
class MediaFile:
    """One `mediaFiles[]` entry (only the fields the worker uses)."""

    media_id: str | None
    type: str | None
    size: int | None
    partitions: tuple[str, ...] = ()
    access_groups: tuple[str, ...] = ()
    hierarchy: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: object) -> MediaFile:
        if not isinstance(data, dict):
            return cls(media_id=None, type=None, size=None)
        media_id = data.get("mediaId", data.get("mediaID"))
        size: int | None = None
        raw_size = data.get("size")
        if isinstance(raw_size, int | str) and not isinstance(raw_size, bool) and str(raw_size).isdigit():
            size = int(raw_size)
        params = data.get("parameters")
        return cls(
            media_id=media_id if isinstance(media_id, str) and media_id else None,
            type=data.get("type") if isinstance(data.get("type"), str) else None,
            size=size,
            partitions=_strings(data.get("partitions")),
            access_groups=_strings(data.get("accessgroups")),
            hierarchy=_hierarchy(params) if isinstance(params, dict) else (),
        )


@dataclass(frozen=True)
class Recording:
    """A metadata record: parsed fields plus `raw_json`, the exact text the API sent."""

    id: str
    start_ms: int | None
    region: str | None
    media: tuple[MediaFile, ...]
    raw_json: str = field(repr=False)
    hierarchy: tuple[str, ...] = ()
    problem: str | None = None  # why this record cannot be backed up (no id, bad startTime), if any

    @classmethod
    def from_json(cls, data: object, raw_json: str) -> Recording:
        if not isinstance(data, dict):
            return cls(id="", start_ms=None, region=None, media=(), raw_json=raw_json, problem="not an object")
        rec_id = data.get("id")
        problem: str | None = None
        if not isinstance(rec_id, str) or not rec_id:
            rec_id, problem = "", "metadata record has no id"
        start_ms: int | None = None
        try:
            start_ms = parse_metadata_time(data.get("startTime"))
        except ValueError as exc:
            problem = problem or f"bad startTime: {snippet(str(exc))}"  # a reason quotes vendor data: cut
        region = data.get("region")
        media_json = data.get("mediaFiles")
        media = tuple(MediaFile.from_json(m) for m in media_json) if isinstance(media_json, list) else ()
        if media_json is not None and not isinstance(media_json, list):
            problem = problem or f"mediaFiles is a {type(media_json).__name__}, not a list"
        elif any(m.media_id is None for m in media):
            problem = problem or "a mediaFiles entry has no mediaId (required by the metadata format)"
        return cls(
            id=rec_id,
            start_ms=start_ms,
            region=region if isinstance(region, str) else None,
            media=media,
            raw_json=raw_json,
            hierarchy=_hierarchy(data),
            problem=problem,
        )


@dataclass(frozen=True)
class RecordingsPage:
    total: int
    offset: int | None  # as the page names it; None when it does not
    recordings: Sequence[Recording]


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _expect(text: str, i: int, char: str) -> int:
    i = _skip_ws(text, i)
    if i >= len(text) or text[i] != char:
        raise ValueError(f"expected {char!r} at offset {i}")
    return i + 1


def parse_recordings_page(text: str) -> RecordingsPage:
    """Parse a recordings page, keeping each record's exact JSON text.

    Raises VendorApiError when the body is not the documented page format.
    """
    try:
        return _parse_page(text)
    except (ValueError, IndexError) as exc:  # json.JSONDecodeError is a ValueError
        # the parser's reason names a position, never the body: bodies stay out of messages
        raise VendorApiError(f"recording API answered something that is not a page ({exc})") from exc


def _parse_page(text: str) -> RecordingsPage:
    total: int | None = None
    offset: int | None = None
    recordings: list[Recording] = []
    saw_recordings = False
    i = _expect(text, 0, "{")
    i = _skip_ws(text, i)
    if i < len(text) and text[i] == "}":
        raise ValueError("empty object")
    while True:
        i = _skip_ws(text, i)
        key, i = _DECODER.raw_decode(text, i)
        i = _expect(text, i, ":")
        i = _skip_ws(text, i)
        if key == "recordings":
            saw_recordings = True
            i = _expect(text, i, "[")
            i = _skip_ws(text, i)
            if text[i] == "]":
                i += 1
            else:
                while True:
                    i = _skip_ws(text, i)
                    value, end = _DECODER.raw_decode(text, i)
                    recordings.append(Recording.from_json(value, text[i:end]))
                    i = _skip_ws(text, end)
                    if text[i] == ",":
                        i += 1
                        continue
                    if text[i] == "]":
                        i += 1
                        break
                    raise ValueError(f"expected ',' or ']' at offset {i}")
        else:
            value, i = _DECODER.raw_decode(text, i)
            if key == "total" and isinstance(value, int):
                total = value
            elif key == "offset" and isinstance(value, int):
                offset = value
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1
            continue
        if text[i] == "}":
            break
        raise ValueError(f"expected ',' or '}}' at offset {i}")
    if not saw_recordings:
        raise ValueError("no 'recordings' array")
    if total is None:
        total = (offset or 0) + len(recordings)
    return RecordingsPage(total=total, offset=offset, recordings=recordings)
