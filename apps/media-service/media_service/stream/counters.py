"""What a stream counts: one typed record that the stages write and the snapshot reads.

The fields are grouped by the stage that writes them; the worker's snapshot reads them all from
the event loop (and copies the dicts).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Counters:
    # dubbing (event loop)
    fragments_sent: int = 0
    fragments_processed: dict[str, int] = field(default_factory=lambda: {"ok": 0, "no_speech": 0, "failed": 0})
    fallbacks: dict[str, int] = field(default_factory=dict)
    dubs_placed: int = 0
    late_starts: int = 0  # dubs placed after their span's start (a late start instead of a fallback)
    roundtrip_ms: deque = field(default_factory=lambda: deque(maxlen=500))
    # worker and capture (ingest thread)
    input_sessions: int = 0
    timestamp_jumps: int = 0
    video_packets_in: int = 0
    audio_packets_undecodable: int = 0
    undecodable_session: int = 0  # the input session and time of the last input_undecodable event
    undecodable_event_at: float = 0.0
    # playout (output thread)
    video_packets_out: int = 0
    audio_frames_out: int = 0
