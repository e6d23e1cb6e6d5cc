"""Which recordings and media files a run keeps: mediaTypePattern and the access-control filters.

mediaTypePattern
    One or more regular expressions separated by blanks; a media file is selected when its `type`
    (MIME type, e.g. `audio/mp3`) fully matches any of them (Java's `String.matches` semantics, as RCBS
    is a Java tool). RCBS's documentation prints the default as `audio\\mp3 video\\mp4`, which is garbled (in a
    properties file `\\m` reads as `m`); the default here is `audio/mp3 video/mp4`, and a pattern
    written RCBS's way (`audio\\mp3`) is read as `audio/mp3` (config.py does that before Java
    unescaping). `audio/mp3|video/mp4` (one alternation) is equivalent.

Access-control filters (our properties; from RCBS's documented "Access control for Recording users"):
    partitions=/sales,/support
        keeps a recording when any of its media files lists one of these in `partitions` (the
        GRECORD_PARTITIONS attached data becomes the media's partitions).
    accessGroups=/Anthony,/sales
        keeps the recordings a user in these Recording access groups could play back: a media file
        matches group G when G is `/` (grants everything), when G is one of its `accessgroups` or a
        parent of one (/Anthony covers /Anthony/John), or when G names one of its partitions.
    agentHierarchy=/Anthony/John
        keeps recordings of agents at or under this hierarchy path: the recording's agent hierarchy
        paths are the `agentHierarchy`/`agent_hierarchy`/`hierarchy` values in its media files'
        `parameters` or in the record itself; when it has none, its media files' `accessgroups`
        (RCBS's documentation: access groups are named after the agent's hierarchy) stand in for them. A
        recording matches when one of its paths is the given path or below it. `/` matches every
        recording that has a path.

    Paths match on whole segments: /Anthony covers /Anthony/John but not /Anthony2. Several values of
    one filter are alternatives (any); different filters must all match (the RecordingBackup API:
    "kept when it matches all given"). A recording without media files matches no filter.

A recording is backed up when it passes the filters and has at least one selected media file or no
media files at all (then only its metadata is written). Recordings whose media are all of other types
are left out and counted as filtered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cxbackup.backup.errors import ConfigError
from cxbackup.backup.records import MediaFile, Recording

__all__ = [
    "DEFAULT_MEDIA_TYPE_PATTERN",
    "AccessFilter",
    "MediaTypeSelector",
    "agent_hierarchy_paths",
    "path_covers",
]

DEFAULT_MEDIA_TYPE_PATTERN = "audio/mp3 video/mp4"


@dataclass(frozen=True)
class MediaTypeSelector:
    """Compiled mediaTypePattern."""

    text: str
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def parse(cls, text: str) -> MediaTypeSelector:
        tokens = text.split()
        if not tokens:
            raise ConfigError("mediaTypePattern is empty; leave it out for the default (audio/mp3 video/mp4)")
        compiled: list[re.Pattern[str]] = []
        for token in tokens:
            try:
                compiled.append(re.compile(token))
            except re.error as exc:
                raise ConfigError(f"mediaTypePattern: {token!r} is not a regular expression ({exc})") from exc
        return cls(text=text, patterns=tuple(compiled))

    def matches(self, media_type: str | None) -> bool:
        return media_type is not None and any(p.fullmatch(media_type) for p in self.patterns)

    def select(self, media: Iterable[MediaFile]) -> list[MediaFile]:
        """The media files to download: matching type, with a mediaId, each mediaId once."""
        seen: set[str] = set()
        out: list[MediaFile] = []
        for m in media:
            if m.media_id and m.media_id not in seen and self.matches(m.type):
                seen.add(m.media_id)
                out.append(m)
        return out


def path_covers(parent: str, path: str) -> bool:
    """Whether hierarchy/group `parent` is `path` or one of its ancestors (whole segments)."""
    p = "/" + parent.strip().strip("/")
    q = "/" + path.strip().strip("/")
    return p == "/" or q == p or q.startswith(p + "/")


def _clean(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(v.strip() for v in values if v.strip())


@dataclass(frozen=True)
class AccessFilter:
    """partitions / accessGroups / agentHierarchy; empty tuples mean no filter of that kind."""

    partitions: tuple[str, ...] = ()
    access_groups: tuple[str, ...] = ()
    agent_hierarchy: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.partitions or self.access_groups or self.agent_hierarchy)

    def matches(self, recording: Recording) -> bool:
        if not self.active:
            return True
        media = recording.media
        if self.partitions:
            wanted = set(_clean(self.partitions))
            if not any(wanted.intersection(m.partitions) for m in media):
                return False
        if self.access_groups:
            groups = _clean(self.access_groups)
            if not any(self._group_matches(g, m) for g in groups for m in media):
                return False
        if self.agent_hierarchy:
            paths = _clean(self.agent_hierarchy)
            known = agent_hierarchy_paths(recording)
            if not any(path_covers(p, h) for p in paths for h in known):
                return False
        return True

    @staticmethod
    def _group_matches(group: str, media: MediaFile) -> bool:
        if group == "/":
            return True
        return group in media.partitions or any(path_covers(group, g) for g in media.access_groups)


def agent_hierarchy_paths(recording: Recording) -> tuple[str, ...]:
    """The agent hierarchy paths of a recording: explicit hierarchy fields, else its access groups."""
    explicit = (*recording.hierarchy, *(h for m in recording.media for h in m.hierarchy))
    if explicit:
        return explicit
    return tuple(g for m in recording.media for g in m.access_groups)
