"""Generated contact history (CDDS) for the emulator, reproducible from the data set's seed and lazy.

Contacts (interactions: voice calls, chats, emails) cover the same time span as the recordings: the
one-hour slots of the `Dataset` (so `extend()` adds contacts too), `spec.contacts_per_hour` per slot.
Slot `s` is rebuilt from `Random((seed, "contacts", s))` and contact `j` of it from
`(seed, "contact", s, j)`, as the recording data set does; nothing is held in memory but a small
cache of slot indexes.

Wire format (a test double in the spirit of docs/vendor-api.md, not the vendor's documented API):

    GET {prefix}/contact-history?startTimeRange=FROM,TO&limit=N&offset=K

- HTTP Basic authentication (401 otherwise); fault endpoint name `contacts`.
- FROM and TO are epoch milliseconds; a contact is in the range when FROM <= its startTime < TO.
  Contacts come sorted by (startTime, id); `limit` defaults to 100 and is capped at 1000; `offset`
  counts from 0; the page is empty when offset >= total. A missing or malformed range is a 400.
- Response: `{"total": 1234, "offset": 0, "items": [<contact>, ...]}` where a contact is

```json
{"id": "CH0R3L5S8V2K9Q7T00004007", "type": "voice", "direction": "inbound",
 "startTime": "2021-07-21T16:49:00.000+0000", "endTime": "2021-07-21T16:53:12.000+0000",
 "duration": 252,
 "customer": {"id": "CUST-004711", "phone": "+1512******67", "email": "j***@example.com"},
 "agent": {"userName": "agent_103004", "employeeId": "103004", "hierarchy": "/Company/Sales/EMEA"},
 "queue": "Sales_EMEA", "disposition": "sale",
 "attachedData": {"Language": "en-US", "CustomerSegment": "gold", "CaseId": "C-120931",
                  "Subject": "..."}}
```

  `type` is voice, chat or email; `direction` inbound or outbound; `duration` whole seconds; phone
  numbers and e-mail addresses are masked as the vendor masks them in exports; `attachedData.Subject`
  exists on e-mails only (free text with commas, quotes and non-ASCII characters, to exercise CSV).
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
from collections import OrderedDict
from typing import Any

from cxbackup_dev.emulator.dataset import HOUR_MS, Dataset, format_time
from cxbackup_dev.emulator.slots import SlotQueries

__all__ = ["CONTACT_TYPES", "ContactHistory", "HourlySeries", "mask_email", "mask_phone"]

CONTACT_TYPES = ("voice", "chat", "email")
_QUEUES = ("Sales_EMEA", "Sales_Americas", "Support_Tier1", "Support_Tier2", "Billing")
_DISPOSITIONS = ("resolved", "sale", "no-sale", "callback", "escalated", "abandoned")
_SEGMENTS = ("gold", "silver", "bronze", "new")
_LANGUAGES = ("en-US", "en-GB", "fr-FR", "de-DE", "es-ES")
_SUBJECTS = (
    'Invoice 2021-07, "urgent"',
    "Réclamation: facture n°{n}, merci de répondre",
    "Change of address; new line,\nsecond line",
    "Order {n} \u2013 delivery status \u2713",
)
_NAMES = ("jane", "li", "omar", "sofia", "marc", "ines", "kai", "noor")
_DOMAINS = ("example.com", "example.org", "mail.example.net")
_SLOT_CACHE = 64
_Entry = tuple[int, str, int]  # (start ms, id, index within the slot)


def mask_phone(number: str) -> str:
    """`+15126401290` -> `+1512******90`: country code and area kept, the last two digits kept."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:5] + "*" * (len(number) - 7) + number[-2:]


def mask_email(address: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`."""
    local, sep, domain = address.partition("@")
    return f"{local[:1]}***{sep}{domain}" if sep else "***"


def _id(*parts: object, width: int = 14) -> str:
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=15).digest()
    return base64.b32hexencode(digest).decode()[:width]


class HourlySeries(SlotQueries[_Entry, dict[str, Any]]):
    """Items in the data set's one-hour slots, each slot's sorted index rebuilt on demand.

    Subclasses say how many items a slot holds (`slot_count`, cheap), build a slot's index sorted by
    (time, id) (`build_index`) and turn one index entry into an item (`materialize`); the queries are
    slots.SlotQueries', shared with the recording data set. Thread-safe.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, list[_Entry]] = OrderedDict()

    @property
    def start_ms(self) -> int:
        return self.dataset.start_ms

    @property
    def end_ms(self) -> int:
        return self.dataset.end_ms

    def slot_count(self, s: int) -> int:
        raise NotImplementedError

    def build_index(self, s: int) -> list[_Entry]:
        raise NotImplementedError

    def materialize(self, s: int, entry: _Entry) -> dict[str, Any]:
        raise NotImplementedError

    def _index(self, s: int) -> list[_Entry]:
        with self._lock:
            cached = self._cache.get(s)
            if cached is not None:
                self._cache.move_to_end(s)
                return cached
        entries = sorted(self.build_index(s))
        with self._lock:
            self._cache[s] = entries
            while len(self._cache) > _SLOT_CACHE:
                self._cache.popitem(last=False)
        return entries


class ContactHistory(HourlySeries):
    """The tenant's contacts over the data set's span, `spec.contacts_per_hour` per hour."""

    def __init__(self, dataset: Dataset, *, contacts_per_hour: int | None = None) -> None:
        super().__init__(dataset)
        rate = dataset.spec.contacts_per_hour if contacts_per_hour is None else contacts_per_hour
        if not 0 <= rate < 32**3:
            raise ValueError("contacts_per_hour must be in [0, 32768)")
        self.contacts_per_hour = rate
        self._seed = dataset.spec.seed

    def slot_count(self, s: int) -> int:
        return self.contacts_per_hour

    def build_index(self, s: int) -> list[_Entry]:
        rng = random.Random(f"{self._seed}/contacts/slot/{s}")
        slot_start = self.start_ms + s * HOUR_MS
        return [
            (slot_start + rng.randrange(3600) * 1000, f"CH{_id(self._seed, 'contact', s, j)}{s:05d}{j:03d}", j)
            for j in range(self.contacts_per_hour)
        ]

    def materialize(self, s: int, entry: _Entry) -> dict[str, Any]:
        start_ms, contact_id, j = entry
        spec = self.dataset.spec
        rng = random.Random(f"{self._seed}/contact/{s}/{j}")
        kind = rng.choices(CONTACT_TYPES, weights=(6, 3, 2))[0]
        if kind == "voice":
            direction = "inbound" if rng.random() < 0.75 else "outbound"
            duration = rng.randint(30, 1200)
        elif kind == "chat":
            direction = "inbound"
            duration = rng.randint(60, 1800)
        else:
            direction = "inbound" if rng.random() < 0.85 else "outbound"
            duration = rng.randint(0, 300)
        agent_no = rng.randrange(spec.agents)
        employee = str(103001 + agent_no)
        hierarchy = spec.agent_hierarchy[agent_no % len(spec.agent_hierarchy)] if spec.agent_hierarchy else ""
        customer_no = rng.randrange(1, 10**6)
        phone = f"+1{rng.randrange(200, 999)}{rng.randrange(10**6, 10**7)}"
        email = f"{rng.choice(_NAMES)}.{customer_no}@{rng.choice(_DOMAINS)}"
        attached: dict[str, Any] = {
            "Language": rng.choice(_LANGUAGES),
            "CustomerSegment": rng.choice(_SEGMENTS),
            "CaseId": f"C-{rng.randrange(10**5, 10**6)}",
        }
        if kind == "email":
            attached["Subject"] = rng.choice(_SUBJECTS).format(n=rng.randrange(1000, 9999))
        return {
            "id": contact_id,
            "type": kind,
            "direction": direction,
            "startTime": format_time(start_ms),
            "endTime": format_time(start_ms + duration * 1000),
            "duration": duration,
            "customer": {"id": f"CUST-{customer_no:06d}", "phone": mask_phone(phone), "email": mask_email(email)},
            "agent": {"userName": f"agent_{employee}", "employeeId": employee, "hierarchy": hierarchy},
            "queue": rng.choice(_QUEUES),
            "disposition": rng.choice(_DISPOSITIONS),
            "attachedData": attached,
        }
