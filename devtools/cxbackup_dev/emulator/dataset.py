"""Generated recording metadata and media for the emulator, reproducible from a seed and lazy.

A `DatasetSpec` describes a tenant's recordings over a time span; a `Dataset` answers the recording
API's questions about it without holding the records in memory:

- Time is cut into one-hour slots from `spec.start`. Slot `s` holds `count(s)` recordings whose start
  times (whole seconds, as in the vendor's metadata) are drawn from `Random((seed, s))`, so a slot's
  sorted index is rebuilt in microseconds and `total` for a window of a million recordings is
  arithmetic over whole slots plus two partial ones.
- Record `j` of slot `s` is computed from `(seed, s, j)` only. Its id (a 32-character callUUID like
  the documented `021L6BI58K8FH7R5USI402LAES00000A`) is 18 hash characters, `LAES`, then `s` and `j` in
  base32hex, so a media id (which starts with or contains the callUUID) leads back to its record.
- Media bytes are pseudo-random from `(seed, mediaId)` with an mp3/mp4-looking header, made on demand.
- `extend(hours)` appends slots (new recordings "arrive"); `add_recording` inserts a hand-made record
  (a special region, a custom field, a given size) that pages like the others.

Metadata records follow the vendor's documented metadata format (docs/vendor-api.md): id,
callerPhoneNumber, dialedPhoneNumber, startTime, stopTime, eventHistory (Joined/Left/Data), mediaFiles
(startTime, stopTime, callUUID, mediaId, type, duration, tenant, ivrprofile, size as a string of the
plaintext size, parameters, certAlias, partitions, accessgroups, channels), callType, region, and
callRecordingId on records with a screen recording. Our own additions are
`parameters.agentHierarchy` (the agent's place in the organisation, e.g. `/Company/Sales/EMEA`) and
nothing else.

Contact history and chat messages over the same slots live in `contacts` and `chat`; their rates are
the `contacts_per_hour`, `chat_users` and `chat_messages_per_hour` fields here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import random
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cxbackup_dev.emulator.slots import HOUR_MS, SlotQueries

__all__ = [
    "HOUR_MS",
    "Dataset",
    "DatasetSpec",
    "Record",
    "StorageEntry",
    "format_time",
    "parse_time",
]

Record = dict[str, Any]

_AWS_REGIONS = {
    "usw1": "us-west-1",
    "usw2": "us-west-2",
    "use1": "us-east-1",
    "use2": "us-east-2",
    "euw1": "eu-west-1",
    "euw2": "eu-west-2",
    "euc1": "eu-central-1",
    "apse2": "ap-southeast-2",
    "apne1": "ap-northeast-1",
    "cac1": "ca-central-1",
}
_B32 = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_B64ISH = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+"
_SLOT_CACHE = 64
_FIRST_NAMES = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Robin", "Drew")


@dataclass(frozen=True)
class StorageEntry:
    """One entry of the settings API's `storage` list: where a region's media objects live."""

    region: str
    aws_region: str
    bucket: str
    prefix: str

    def to_json(self) -> dict[str, str]:
        return {"region": self.region, "awsRegion": self.aws_region, "bucket": self.bucket, "prefix": self.prefix}

    def key(self, media_id: str) -> str:
        """The object key of a media file: `{prefix}{mediaId}` (docs/vendor-api.md)."""
        return f"{self.prefix}{media_id}"


@dataclass(frozen=True)
class DatasetSpec:
    """What recordings a tenant has. Everything generated is a function of these fields.

    `days`, when given, sets `hours` to `days * 24`. `storage` defaults to one entry per region, named
    like the vendor's (`stage-recordings-us-west-1`, prefix `<tenant>/`). Sizes are plaintext bytes,
    drawn uniformly from the (min, max) ranges; a voice file's duration follows from 32 kbps.
    """

    seed: int = 1
    start: datetime = datetime(2021, 7, 21, tzinfo=UTC)
    hours: int = 24
    days: int | None = None
    recordings_per_hour: int = 10
    hourly_jitter: float = 0.0
    screen_fraction: float = 0.2
    voice_size: tuple[int, int] = (4_000, 48_000)
    screen_size: tuple[int, int] = (16_000, 160_000)
    regions: tuple[str, ...] = ("usw1", "use1")
    storage: tuple[StorageEntry, ...] | None = None
    tenant: str = "PoD_tenant_2034"
    partitions: tuple[str, ...] = ("sales", "support", "billing")
    access_groups: tuple[str, ...] = ("/", "/Sales", "/Support")
    agent_hierarchy: tuple[str, ...] = (
        "/Company/Sales/EMEA",
        "/Company/Sales/Americas",
        "/Company/Support/Tier1",
        "/Company/Support/Tier2",
    )
    agents: int = 20
    bucket_prefix: str = "stage-recordings"
    # contact history and chat (emulator/contacts.py, emulator/chat.py) over the same span
    contacts_per_hour: int = 10
    chat_users: int = 5
    chat_messages_per_hour: int = 3

    def __post_init__(self) -> None:
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=UTC)
        object.__setattr__(self, "start", start.astimezone(UTC).replace(microsecond=0))
        if self.days is not None:
            object.__setattr__(self, "hours", self.days * 24)
        if self.hours < 0 or self.recordings_per_hour < 0 or self.agents < 1:
            raise ValueError("hours and recordings_per_hour must be >= 0, agents >= 1")
        if self.recordings_per_hour * (1 + self.hourly_jitter) >= 32**5:
            raise ValueError("recordings_per_hour is too large")
        if not 0.0 <= self.screen_fraction <= 1.0 or not 0.0 <= self.hourly_jitter < 1.0:
            raise ValueError("screen_fraction must be in [0, 1], hourly_jitter in [0, 1)")
        for lo, hi in (self.voice_size, self.screen_size):
            if not 0 < lo <= hi:
                raise ValueError("size ranges must be (min, max) with 0 < min <= max")
        if not self.regions:
            raise ValueError("at least one region is needed")

    @classmethod
    def recent(cls, hours: int = 48, *, now: datetime | None = None, **fields: Any) -> DatasetSpec:
        """A spec whose `hours` end at the start of the current hour (for maxAge-style windows)."""
        now = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return cls(start=now - timedelta(hours=hours), hours=hours, **fields)

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    def storage_entries(self) -> tuple[StorageEntry, ...]:
        if self.storage is not None:
            return self.storage
        entries = []
        for region in self.regions:
            aws = _AWS_REGIONS.get(region, "us-east-1")
            entries.append(StorageEntry(region, aws, f"{self.bucket_prefix}-{aws}", f"{self.tenant}/"))
        # one bucket per AWS region: regions mapping to the same AWS region share it
        unique: dict[str, StorageEntry] = {}
        for e in entries:
            unique.setdefault(e.region, e)
        return tuple(unique.values())


def format_time(ms: int) -> str:
    """Epoch milliseconds as the vendor writes times: `2021-07-21T16:49:00.000+0000`."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def parse_time(text: str) -> int:
    """The inverse of `format_time` (epoch milliseconds)."""
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def _b32(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_B32[n % 32])
        n //= 32
    if n:
        raise ValueError("number too large for the id field")
    return "".join(reversed(out))


def _unb32(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 32 + _B32.index(ch)
    return n


@dataclass
class _Extra:
    record: Record
    start_ms: int


@dataclass
class _State:
    hours: int
    extras: dict[int, list[_Extra]] = field(default_factory=dict)  # slot -> extras
    extras_by_id: dict[str, _Extra] = field(default_factory=dict)
    cert_aliases: list[tuple[int, str]] = field(default_factory=list)  # (from slot, alias), ascending


class Dataset(SlotQueries[tuple[int, str, int], Record]):
    """The recordings of a `DatasetSpec`, computed on demand. Thread-safe."""

    def __init__(self, spec: DatasetSpec, *, cert_alias: str = "") -> None:
        self.spec = spec
        self.storage = spec.storage_entries()
        self._lock = threading.Lock()
        self._state = _State(hours=spec.hours, cert_aliases=[(0, cert_alias)])
        self._index_cache: OrderedDict[int, list[tuple[int, str, int]]] = OrderedDict()
        self._extra_serial = 0

    # ------------------------------------------------------------------------------- time span

    @property
    def start_ms(self) -> int:
        return self.spec.start_ms

    @property
    def end_ms(self) -> int:
        return self.spec.start_ms + self.hours * HOUR_MS

    @property
    def hours(self) -> int:
        with self._lock:
            return self._state.hours

    def extend(self, hours: int) -> tuple[int, int]:
        """Append `hours` slots; returns the new span [from_ms, to_ms)."""
        if hours < 0:
            raise ValueError("hours must be >= 0")
        with self._lock:
            old = self._state.hours
            self._state.hours = old + hours
        return self.start_ms + old * HOUR_MS, self.start_ms + (old + hours) * HOUR_MS

    def set_cert_alias(self, alias: str, from_ms: int | None = None) -> None:
        """Recordings starting at `from_ms` (default: the current end) or later name `alias`."""
        slot = self.hours if from_ms is None else max(0, (from_ms - self.start_ms) // HOUR_MS)
        with self._lock:
            aliases = [a for a in self._state.cert_aliases if a[0] < slot]
            aliases.append((slot, alias))
            self._state.cert_aliases = aliases

    def cert_alias_for(self, start_ms: int) -> str:
        slot = (start_ms - self.start_ms) // HOUR_MS
        with self._lock:
            alias = self._state.cert_aliases[0][1]
            for from_slot, a in self._state.cert_aliases:
                if slot >= from_slot:
                    alias = a
        return alias

    # ------------------------------------------------------------------------------- slots

    def slot_count(self, s: int) -> int:
        n = self.spec.recordings_per_hour
        if self.spec.hourly_jitter:
            u = random.Random(f"{self.spec.seed}/count/{s}").random()
            n = round(n * (1 + self.spec.hourly_jitter * (2 * u - 1)))
        with self._lock:
            return n + len(self._state.extras.get(s, ()))

    def _generated_count(self, s: int) -> int:
        with self._lock:
            extras = len(self._state.extras.get(s, ()))
        return self.slot_count(s) - extras

    def _uuid(self, s: int, j: int) -> str:
        digest = hashlib.blake2b(f"{self.spec.seed}/{s}/{j}".encode(), digest_size=15).digest()
        head = base64.b32hexencode(digest).decode()[:18]
        return f"{head}LAES{_b32(s, 5)}{_b32(j, 5)}"

    def _index(self, s: int) -> list[tuple[int, str, int]]:
        """Slot `s` sorted by (startTime, id): (start ms, id, j) with j < 0 for hand-added records."""
        with self._lock:
            cached = self._index_cache.get(s)
            if cached is not None:
                self._index_cache.move_to_end(s)
                return cached
            extras = list(self._state.extras.get(s, ()))
        slot_start = self.start_ms + s * HOUR_MS
        n = self._generated_count(s)
        rng = random.Random(f"{self.spec.seed}/slot/{s}")
        entries = [(slot_start + rng.randrange(3600) * 1000, self._uuid(s, j), j) for j in range(n)]
        entries.extend((e.start_ms, e.record["id"], -1 - k) for k, e in enumerate(extras))
        entries.sort()
        with self._lock:
            self._index_cache[s] = entries
            while len(self._index_cache) > _SLOT_CACHE:
                self._index_cache.popitem(last=False)
        return entries

    def materialize(self, s: int, entry: tuple[int, str, int]) -> Record:
        t, uuid, j = entry
        if j < 0:
            # hand-added records are found by their position in the slot, not by id: `fields` may
            # have replaced the id (e.g. hostile ids in the reliability suite)
            with self._lock:
                return copy.deepcopy(self._state.extras[s][-1 - j].record)
        return self._generate(uuid, t, random.Random(f"{self.spec.seed}/rec/{s}/{j}"))

    # ------------------------------------------------------------------------------- queries

    def iter_records(self, from_ms: int | None = None, to_ms: int | None = None) -> Iterator[Record]:
        """Every recording starting in [from_ms, to_ms) in (startTime, id) order, lazily."""
        return self.iter_items(from_ms, to_ms)

    def record(self, call_uuid: str) -> Record | None:
        """The record with this id, or None."""
        with self._lock:
            extra = self._state.extras_by_id.get(call_uuid)
            if extra is not None:
                return copy.deepcopy(extra.record)
        if len(call_uuid) != 32 or call_uuid[18:22] != "LAES" or any(c not in _B32 for c in call_uuid):
            return None
        s, j = _unb32(call_uuid[22:27]), _unb32(call_uuid[27:32])
        if s >= self.hours or j >= self._generated_count(s) or self._uuid(s, j) != call_uuid:
            return None
        for entry in self._index(s):
            if entry[1] == call_uuid:
                return self.materialize(s, entry)
        return None  # pragma: no cover - the index always holds its generated ids

    def find_media(self, media_id: str) -> tuple[Record, dict[str, Any]] | None:
        """(record, mediaFiles entry) for a media id, or None when no recording has it."""
        candidates = []
        if len(media_id) > 32 and media_id[32] == "_":
            candidates.append(media_id[:32])
        if len(media_id) > 55 and media_id[22] == "_":
            candidates.append(media_id[23:55])
        with self._lock:
            for extra in self._state.extras_by_id.values():
                if any(m.get("mediaId") == media_id for m in extra.record.get("mediaFiles", [])):
                    candidates.insert(0, extra.record["id"])
                    break
        for uuid in candidates:
            rec = self.record(uuid)
            if rec is None:
                continue
            for media in rec.get("mediaFiles", []):
                if media.get("mediaId") == media_id:
                    return rec, media
        return None

    def storage_for(self, record: Mapping[str, Any]) -> StorageEntry:
        """The storage entry whose region is the record's, else the first (docs/vendor-api.md)."""
        region = record.get("region")
        return next((e for e in self.storage if e.region == region), self.storage[0])

    def media_plaintext(self, media_id: str, size: int | None = None) -> bytes:
        """The media file's bytes before encryption (deterministic from the seed and media id)."""
        if size is None:
            found = self.find_media(media_id)
            if found is None:
                raise KeyError(f"no recording has media {media_id!r}")
            size = int(found[1]["size"])
            kind = str(found[1].get("type", ""))
        else:
            kind = "video/mp4" if ".mp3" not in media_id else "audio/mp3"
        header = b"ID3\x04\x00\x00\x00\x00\x00\x00" if kind == "audio/mp3" else b"\x00\x00\x00\x18ftypisom"
        body = random.Random(f"{self.spec.seed}/media/{media_id}").randbytes(max(0, size - len(header)))
        return (header + body)[:size]

    # ------------------------------------------------------------------------------- additions

    def add_recording(
        self,
        start_ms: int,
        *,
        screen: bool = False,
        voice_size: int | None = None,
        screen_size: int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> Record:
        """Insert one hand-made recording starting at `start_ms` (inside the current span).

        `fields` overrides top-level fields of the generated record (e.g. `region`, extra keys).
        """
        if not self.start_ms <= start_ms < self.end_ms:
            raise ValueError("start_ms must be inside the dataset's span; extend() it first")
        with self._lock:
            self._extra_serial += 1
            serial = self._extra_serial
        s = (start_ms - self.start_ms) // HOUR_MS
        j = 32**5 - serial  # outside any generated j, so ids never collide
        uuid = self._uuid(s, j)
        rng = random.Random(f"{self.spec.seed}/extra/{serial}")
        rec = self._generate(uuid, start_ms, rng, screen=screen, voice_size=voice_size, screen_size=screen_size)
        if fields:
            rec.update(copy.deepcopy(dict(fields)))
        with self._lock:
            extra = _Extra(rec, start_ms)
            self._state.extras.setdefault(s, []).append(extra)
            self._state.extras_by_id[uuid] = extra
            self._index_cache.pop(s, None)
        return copy.deepcopy(rec)

    # ------------------------------------------------------------------------------- generation

    def _generate(
        self,
        uuid: str,
        start_ms: int,
        rng: random.Random,
        *,
        screen: bool | None = None,
        voice_size: int | None = None,
        screen_size: int | None = None,
    ) -> Record:
        spec = self.spec
        region = rng.choice(spec.regions)
        agent_no = rng.randrange(spec.agents)
        agent_id = str(103001 + agent_no)
        username = f"agent_{agent_id}"
        first_name = _FIRST_NAMES[agent_no % len(_FIRST_NAMES)]
        last_name = f"Last{agent_id}"
        hierarchy = spec.agent_hierarchy[agent_no % len(spec.agent_hierarchy)] if spec.agent_hierarchy else ""
        partitions = [spec.partitions[agent_no % len(spec.partitions)]] if spec.partitions else []
        groups = [spec.access_groups[agent_no % len(spec.access_groups)]] if spec.access_groups else []
        ani = f"+1{rng.randrange(200, 999)}{rng.randrange(10**6, 10**7)}"
        dnis = f"+1512640{1290 + rng.randrange(10):04d}"
        agent_dn = f"+1647838{9000 + agent_no:04d}"
        call_type = rng.choice(("Inbound", "Inbound", "Inbound", "Outbound", "Internal"))
        has_screen = rng.random() < spec.screen_fraction if screen is None else screen
        vsize = voice_size if voice_size is not None else rng.randint(*spec.voice_size)
        ssize = screen_size if screen_size is not None else rng.randint(*spec.screen_size)
        duration_ms = max(1000, vsize * 8 // 32)  # 32 kbps
        stop_ms = start_ms + -(-duration_ms // 1000) * 1000
        dt = datetime.fromtimestamp(start_ms / 1000, UTC)
        stamp = dt.strftime("%Y-%m-%d_%H-%M-%S")
        alias = self.cert_alias_for(start_ms)
        conn_id = f"{rng.getrandbits(64):016x}"
        voice_id = f"{uuid}_{stamp}-{rng.getrandbits(32):08X}-{rng.getrandbits(32):08X}-00000001.mp3.bin"
        agent_contact = {
            "type": "User",
            "phoneNumber": agent_dn,
            "userName": username,
            "firstName": first_name,
            "lastName": last_name,
        }
        customer_contact = {
            "type": "User",
            "phoneNumber": ani,
            "userName": "UNKNOWN",
            "firstName": "UNKNOWN",
            "lastName": "UNKNOWN",
        }
        voice: dict[str, Any] = {
            "startTime": format_time(start_ms),
            "stopTime": format_time(stop_ms),
            "callUUID": uuid,
            "mediaId": voice_id,
            "type": "audio/mp3",
            "duration": str(duration_ms),
            "tenant": spec.tenant,
            "ivrprofile": "record",
            "size": str(vsize),
            "parameters": {
                "dateTime": dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "agentId": agent_id,
                "sipsAppName": f"SIPS_{region}_1_B",
                "recordDN": agent_dn,
                "connId": conn_id,
                "dnis": dnis,
                "id": f"{uuid}_{stamp}",
                "ani": ani,
                "callUuid": uuid,
                "username": username,
                "agentHierarchy": hierarchy,
            },
            "certAlias": [alias],
            "partitions": partitions,
            "accessgroups": groups,
            "channels": 2,
        }
        media = [voice]
        if has_screen:
            screen_stop = stop_ms + rng.randrange(0, 10) * 1000
            secs = (screen_stop - start_ms) // 1000
            tag = "".join(rng.choice(_B64ISH) for _ in range(22))
            sdt = dt + timedelta(seconds=1)
            screen_base = f"{uuid}_{rng.getrandbits(128):032x}_{sdt.strftime('%Y_%m_%d_%H_%M_%S')}"
            media.append(
                {
                    "startTime": format_time(start_ms),
                    "stopTime": format_time(screen_stop),
                    "mediaId": f"{tag}_{screen_base}",
                    "type": "video/mp4",
                    "duration": f"{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}",
                    "tenant": spec.tenant,
                    "size": str(ssize),
                    "parameters": {
                        "muxed_mediaIds": [screen_base, voice_id],
                        "agentID": agent_dn,
                        "virtualHeight": "617",
                        "contact": {"userName": username, "lastName": last_name, "firstName": first_name},
                        "virtualWidth": "1920",
                        "region": region,
                        "originalVirtualHeight": "1440",
                        "originalVirtualWidth": "4480",
                        "callUuid": uuid,
                        "monitors": [
                            {
                                "name": "monitor_0",
                                "primary": True,
                                "originalPositions": "[0, 0, 2560, 1440]",
                                "actualPositions": "[0, 0, 1096, 617]",
                            }
                        ],
                    },
                    "certAlias": [alias],
                    "partitions": partitions,
                    "accessgroups": groups,
                    "channels": 2,
                }
            )
        joined_customer = start_ms - rng.randrange(2000, 15000)
        events: list[dict[str, Any]] = [
            self._data_event(uuid, joined_customer + 26, {"added": {"RTargetAgentSelected": agent_id}}),
            self._data_event(uuid, start_ms + 537, {"added": {"GSIP_RECORD": "ON"}}),
            self._data_event(uuid, stop_ms + 480, {"deleted": {"GSIP_RECORD": "ON"}}),
            self._data_event(
                uuid,
                stop_ms + 4000 + rng.randrange(2000),
                {"updated": {"DispositionCode": rng.choice(("good", "callback", "sale", "no-sale"))}},
            ),
            {"occurredAt": format_time(start_ms + 537), "event": "Joined", "calluuid": uuid, "contact": agent_contact},
            {
                "occurredAt": format_time(joined_customer),
                "event": "Joined",
                "calluuid": uuid,
                "contact": customer_contact,
            },
            {"occurredAt": format_time(stop_ms + 479), "event": "Left", "calluuid": uuid, "contact": agent_contact},
            {"occurredAt": format_time(stop_ms + 480), "event": "Left", "calluuid": uuid, "contact": customer_contact},
        ]
        if has_screen:
            events.insert(
                2, self._data_event(uuid, start_ms + 963, {"added": {"GSRState": "SRSScreenRecordingStateStarted"}})
            )
        rec: Record = {"id": uuid}
        if has_screen:
            rec["callRecordingId"] = uuid
        rec.update(
            {
                "callerPhoneNumber": ani,
                "dialedPhoneNumber": dnis,
                "startTime": format_time(start_ms),
                "stopTime": format_time(stop_ms),
                "eventHistory": events,
                "mediaFiles": media,
                "callType": call_type,
                "region": region,
            }
        )
        return rec

    @staticmethod
    def _data_event(uuid: str, ms: int, data: dict[str, Any]) -> dict[str, Any]:
        at = format_time(ms)
        iso = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        return {"occurredAt": at, "eventId": f"{uuid}_{iso}", "event": "Data", "calluuid": uuid, "data": data}
