"""The media-service's vocabularies, each defined once: mix modes, stream states, fallback reasons.

They are `str` enums, so they compare equal to their wire values and serialise as them (JSON
bodies, events, metric labels); specs/media-service.md lists the same values.
"""

from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    """How the dub is mixed over the original in the spans it covers."""

    DUCK = "duck"  # original lowered by duck_gain_db under the dub
    REPLACE = "replace"  # dub only
    PASSTHROUGH = "passthrough"  # original only (bypass)

    def __str__(self) -> str:
        return self.value


class StreamState(str, Enum):
    STARTING = "starting"
    WAITING_INPUT = "waiting_input"  # the input has not connected yet
    RUNNING = "running"
    RECONNECTING_INPUT = "reconnecting_input"
    ENDED = "ended"  # stopped by itself (input gone or never came): the registry removes it
    FAILED = "failed"  # a thread failed or stuck: the registry stops it and keeps its reason
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class FallbackReason(str, Enum):
    """Why a span plays with its original audio (the `reason` label of media_fallback_total)."""

    STS_UNAVAILABLE = "sts_unavailable"
    BACKPRESSURE = "backpressure"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    STS_DISCONNECTED = "sts_disconnected"
    CLOSED = "closed"
    FAILED = "failed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    LATE = "late"

    def __str__(self) -> str:
        return self.value
