"""Collaborate chat messages per subject user (GDPR exports) for the emulator, with chat retention.

The organisation has `spec.chat_users` chat users; each sends about `spec.chat_messages_per_hour`
messages an hour (0 to twice that, drawn per user and hour) over the data set's span, to another user
or to a group room. Everything is computed from the seed on demand, like the recordings.

Wire format (a test double in the spirit of docs/vendor-api.md, following the chat data export
policy of the vendor: per-user GDPR requests with a subject userId, limited to the organisation's chat
retention period; a whole-organisation chat export is not supported):

    GET {prefix}/chat/users/{userId}/messages?startTimeRange=FROM,TO&limit=N&offset=K

- HTTP Basic authentication (401 otherwise); fault endpoint name `chat`.
- The messages *sent by* `userId` (a request returns only the subject user's own messages; reading a
  conversation between several users takes one request per user) with FROM <= sentAt < TO (epoch
  ms), sorted by (sentAt, id); `limit` defaults to 100 and is capped at 1000; `offset` counts from 0.
- Retention: messages older than `retention_days` (default 90) before the emulator's "now" are gone.
  "Now" is the emulator's clock when one is set, else the end of the data set's span (the emulated
  organisation lives at the end of its data, so a data set from 2021 still has its chat).
- Response:

```json
{"total": 12, "offset": 0, "userId": "<userId>", "items": [<message>, ...],
 "retention": {"days": 90, "oldestAvailable": "2021-04-22T06:00:00.000Z",
               "rangeOutsideRetention": false, "rangeTruncated": false}}
```

  `rangeOutsideRetention` is true when the whole range is older than `oldestAvailable` (then total
  is 0); `rangeTruncated` when the range starts before it (only the part still kept is served).
- A message:

```json
{"id": "<uuid>", "conversationId": "<uuid>", "senderId": "<userId>",
 "recipients": [{"id": "<userId>", "type": "user"}],
 "sentAt": "2021-07-21T16:49:00.123Z", "text": "...",
 "attachments": [{"id": "<uuid>", "name": "quote.pdf", "mimeType": "application/pdf", "size": 48213}]}
```

  Group messages have one recipient `{"id": "<groupId>", "type": "group", "name": "sales-emea"}`.
- An unknown `userId` is a 404. Requests without a subject user (`{prefix}/chat/messages`,
  `{prefix}/chat/users`) are a 400 saying whole-organisation chat exports are not supported.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cxbackup_dev.emulator.contacts import HourlySeries
from cxbackup_dev.emulator.dataset import HOUR_MS, Dataset

__all__ = ["DAY_MS", "DEFAULT_CHAT_RETENTION_DAYS", "ORG_EXPORT_REFUSED", "ChatHistory", "ChatUser", "format_iso"]

DAY_MS = 24 * HOUR_MS
DEFAULT_CHAT_RETENTION_DAYS = 90
ORG_EXPORT_REFUSED = (
    "chat exports are per user: request GET /chat/users/{userId}/messages for each subject user; "
    "whole-organisation chat exports are not supported"
)
_GROUPS = ("sales-emea", "support", "billing", "team-leads")
_WORDS = (
    "hello", "customer", "called", "about", "the", "invoice", "can", "you", "check", "order", "status",
    "thanks", "escalate", "please", "queue", "is", "long", "today", "meeting", "at", "noon", "shift", "swap",
)  # fmt: skip
_EXTRAS = ("déjà vu", "naïve café", "✓ done", '"quoted", with comma', "line one\nline two", "😀")
_FILES = (("quote.pdf", "application/pdf"), ("screenshot.png", "image/png"), ("notes.txt", "text/plain"))


def format_iso(ms: int) -> str:
    """Epoch milliseconds as Genesys Cloud writes times: `2021-07-21T16:49:00.123Z`."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _uuid(*parts: object) -> str:
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


@dataclass(frozen=True)
class ChatUser:
    """A Collaborate user: its id (the GDPR subject userId) and user name."""

    id: str
    user_name: str


class _UserMessages(HourlySeries):
    def __init__(self, chat: ChatHistory, user_no: int) -> None:
        super().__init__(chat.dataset)
        self._chat = chat
        self._no = user_no
        self._seed = chat.dataset.spec.seed

    def slot_count(self, s: int) -> int:
        rate = self._chat.messages_per_hour
        return random.Random(f"{self._seed}/chat/{self._no}/{s}/count").randint(0, 2 * rate) if rate else 0

    def build_index(self, s: int) -> list[tuple[int, str, int]]:
        rng = random.Random(f"{self._seed}/chat/{self._no}/{s}/index")
        slot_start = self.start_ms + s * HOUR_MS
        return [
            (slot_start + rng.randrange(HOUR_MS), _uuid(self._seed, "msg", self._no, s, j), j)
            for j in range(self.slot_count(s))
        ]

    def materialize(self, s: int, entry: tuple[int, str, int]) -> dict[str, Any]:
        sent_ms, msg_id, j = entry
        chat = self._chat
        rng = random.Random(f"{self._seed}/chat/{self._no}/{s}/{j}")
        me = chat.users[self._no]
        recipients: list[dict[str, Any]]
        if len(chat.users) > 1 and rng.random() < 0.7:
            peer_no = rng.choice([n for n in range(len(chat.users)) if n != self._no])
            peer = chat.users[peer_no]
            conversation = _uuid(self._seed, "direct", *sorted((self._no, peer_no)))
            recipients = [{"id": peer.id, "type": "user"}]
        else:
            group = rng.choice(_GROUPS)
            conversation = _uuid(self._seed, "group", group)
            recipients = [{"id": conversation, "type": "group", "name": group}]
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(_EXTRAS))
        attachments = []
        if rng.random() < 0.15:
            name, mime = rng.choice(_FILES)
            attachments.append(
                {"id": _uuid(msg_id, "file"), "name": name, "mimeType": mime, "size": rng.randint(200, 90_000)}
            )
        return {
            "id": msg_id,
            "conversationId": conversation,
            "senderId": me.id,
            "recipients": recipients,
            "sentAt": format_iso(sent_ms),
            "text": " ".join(words).capitalize(),
            "attachments": attachments,
        }


class ChatHistory:
    """The organisation's chat messages, per sender, behind its chat retention period."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        retention_days: int = DEFAULT_CHAT_RETENTION_DAYS,
        clock: Callable[[], datetime] | None = None,
        users: int | None = None,
        messages_per_hour: int | None = None,
    ) -> None:
        spec = dataset.spec
        n_users = spec.chat_users if users is None else users
        rate = spec.chat_messages_per_hour if messages_per_hour is None else messages_per_hour
        if n_users < 0 or not 0 <= rate <= 10_000 or retention_days < 1:
            raise ValueError("chat users >= 0, messages per hour in [0, 10000], retention_days >= 1")
        self.dataset = dataset
        self.messages_per_hour = rate
        self.retention_days = retention_days
        self.clock = clock
        self.users = [ChatUser(_uuid(spec.seed, "chat-user", i), f"agent_{103001 + i}") for i in range(n_users)]
        self._by_id = {u.id: n for n, u in enumerate(self.users)}
        self._series = [_UserMessages(self, n) for n in range(n_users)]

    def set_retention(self, days: int | None = None, clock: Callable[[], datetime] | None = None) -> None:
        """Change the retention period and/or the clock (None leaves a setting as it is)."""
        if days is not None:
            if days < 1:
                raise ValueError("retention days must be >= 1")
            self.retention_days = days
        if clock is not None:
            self.clock = clock

    def now_ms(self) -> int:
        """The organisation's "now": the clock when set, else the end of the data set's span."""
        if self.clock is None:
            return self.dataset.end_ms
        return int(self.clock().timestamp() * 1000)

    def oldest_available_ms(self) -> int:
        """Messages sent before this instant are gone (retention)."""
        return self.now_ms() - self.retention_days * DAY_MS

    def user(self, user_id: str) -> ChatUser | None:
        n = self._by_id.get(user_id)
        return None if n is None else self.users[n]

    def _series_of(self, user_id: str) -> _UserMessages:
        n = self._by_id.get(user_id)
        if n is None:
            raise KeyError(user_id)
        return self._series[n]

    def page(self, user_id: str, from_ms: int, to_ms: int, offset: int, limit: int) -> dict[str, Any]:
        """The API response for one page (see the module docstring); KeyError for an unknown user."""
        series = self._series_of(user_id)
        oldest = self.oldest_available_ms()
        outside = to_ms <= oldest
        truncated = not outside and from_ms < oldest
        total, items = (0, []) if outside else series.page(max(from_ms, oldest), to_ms, offset, limit)
        return {
            "total": total,
            "offset": offset,
            "userId": user_id,
            "items": items,
            "retention": {
                "days": self.retention_days,
                "oldestAvailable": format_iso(oldest),
                "rangeOutsideRetention": outside,
                "rangeTruncated": truncated,
            },
        }

    def messages(self, user_id: str, from_ms: int | None = None, to_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """Ground truth: what the API serves for this user and range (retention applied), in order."""
        series = self._series_of(user_id)
        lo = max(self.dataset.start_ms if from_ms is None else from_ms, self.oldest_available_ms())
        return series.iter_items(lo, self.dataset.end_ms if to_ms is None else to_ms)

    def count_all(self, user_id: str) -> int:
        """How many messages the user sent over the whole span, ignoring retention."""
        return self._series_of(user_id).count(self.dataset.start_ms, self.dataset.end_ms)
