"""RCBS's disk-usage estimate ("Disk usage estimation").

    MB per day = calls per day x (metadata MB + average duration s x bitrate kbps / 8 / 1024)

Voice recordings: metadata upper bound 1 MB per recording, bitrate 32 kbps by default.
Screen recordings: metadata upper bound 8 KB (8/1024 MB), total bitrate (screen + voice, the files are
muxed) 256 kbps by default.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "SCREEN_BITRATE_KBPS",
    "SCREEN_METADATA_MB",
    "VOICE_BITRATE_KBPS",
    "VOICE_METADATA_MB",
    "DiskEstimate",
    "estimate_disk",
]

VOICE_METADATA_MB = 1.0
VOICE_BITRATE_KBPS = 32.0
SCREEN_METADATA_MB = 8 / 1024
SCREEN_BITRATE_KBPS = 256.0


def _num(x: float) -> str:
    return f"{x:.10g}"


@dataclass(frozen=True)
class DiskEstimate:
    calls_per_day: float
    avg_duration_s: float
    bitrate_kbps: float
    metadata_mb: float
    screen: bool
    days: int = 1

    @property
    def media_mb_per_call(self) -> float:
        return self.avg_duration_s * self.bitrate_kbps / 8 / 1024

    @property
    def mb_per_day(self) -> float:
        return self.calls_per_day * (self.metadata_mb + self.media_mb_per_call)

    @property
    def total_mb(self) -> float:
        return self.mb_per_day * self.days

    def explain(self) -> list[str]:
        kind = "Screen" if self.screen else "Voice"
        meta = "8 KB" if self.screen and self.metadata_mb == SCREEN_METADATA_MB else f"{_num(self.metadata_mb)} MB"
        lines = [
            f"{kind} recordings: metadata upper bound {meta} per recording, bitrate {_num(self.bitrate_kbps)} kbps",
            "MB per day = calls per day x (metadata MB + average duration s x bitrate kbps / 8 / 1024)",
            f"           = {_num(self.calls_per_day)} x ({_num(self.metadata_mb)} + {_num(self.avg_duration_s)} x "
            f"{_num(self.bitrate_kbps)} / 8 / 1024)",
            f"           = {_num(self.calls_per_day)} x ({_num(self.metadata_mb)} + {self.media_mb_per_call:.6g})",
            f"           = {self.mb_per_day:,.2f} MB per day ({self.mb_per_day / 1024:,.2f} GB)",
        ]
        if self.days != 1:
            lines.append(
                f"For {self.days} days: {self.total_mb:,.2f} MB ({self.total_mb / 1024:,.2f} GB, "
                f"{self.total_mb / 1024 / 1024:,.3f} TB)"
            )
        return lines


def estimate_disk(
    calls_per_day: float,
    avg_duration_s: float,
    *,
    screen: bool = False,
    bitrate_kbps: float | None = None,
    days: int = 1,
) -> DiskEstimate:
    if calls_per_day < 0 or avg_duration_s < 0 or days < 1 or (bitrate_kbps is not None and bitrate_kbps <= 0):
        raise ValueError("calls, duration must be >= 0, bitrate > 0 and days >= 1")
    return DiskEstimate(
        calls_per_day=calls_per_day,
        avg_duration_s=avg_duration_s,
        bitrate_kbps=bitrate_kbps or (SCREEN_BITRATE_KBPS if screen else VOICE_BITRATE_KBPS),
        metadata_mb=SCREEN_METADATA_MB if screen else VOICE_METADATA_MB,
        screen=screen,
        days=days,
    )
