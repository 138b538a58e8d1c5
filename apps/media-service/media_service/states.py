"""The media-service's vocabularies, each defined once: mix modes, stream, input, output and STS
connection states, fallback reasons.

They are `str` enums, so they compare equal to their wire values and serialise as them (JSON
bodies, events, metric labels, log lines); specs/media-service.md lists the same values.
"""

from __future__ import annotations

from enum import Enum


class WireValue(str, Enum):
    """A value that is shown as it is sent: `str()` and `%s` give the wire value, not `Class.NAME`."""

    def __str__(self) -> str:
        return self.value


class Mode(WireValue):
    """How the dub is mixed over the original in the spans it covers."""

    DUCK = "duck"  # original lowered by duck_gain_db under the dub
    REPLACE = "replace"  # dub only
    PASSTHROUGH = "passthrough"  # original only (bypass)


class StreamState(WireValue):
    STARTING = "starting"
    WAITING_INPUT = "waiting_input"  # the input has not connected yet
    RUNNING = "running"
    RECONNECTING_INPUT = "reconnecting_input"
    ENDED = "ended"  # stopped by itself (input gone or never came): the registry removes it
    FAILED = "failed"  # a thread failed or stuck: the registry stops it and keeps its reason
    STOPPED = "stopped"


class InputState(WireValue):
    """The input reader's state (snapshot `input.state`)."""

    CONNECTING = "connecting"
    READING = "reading"
    ENDED = "ended"  # the publisher stopped; retried
    ERROR = "error"  # the input could not be opened or read; retried


class OutputState(WireValue):
    """The playout's outputs (snapshot `output.state`)."""

    WAITING = "waiting"  # no input session yet, or nothing due yet
    WRITING = "writing"
    ERROR = "error"  # an output failed; reopened after its backoff
    DISK_FULL = "disk_full"  # what `OutputError.state` says of a full disk
    IDLE = "idle"  # the input ended and everything it gave was played out: outputs closed
    CLOSED = "closed"  # the stream stopped


class StsState(WireValue):
    """The STS client's connection (snapshot `sts.state`, label of media_sts_connection_state)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    UNAUTHORIZED = "unauthorized"  # refused: retried at the longest backoff
    CLOSED = "closed"


class FallbackReason(WireValue):
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
