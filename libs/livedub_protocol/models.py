"""Payload models of every event, and parse()/dump() between them and raw Socket.IO payloads.

``parse()`` turns a raw payload into a model or raises ``ProtocolError`` with an
``invalid_payload`` code and a message that names the bad field.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .audio import DEFAULT_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
from .errors import ErrorCode, ProtocolError
from .events import PROTOCOL_MINOR, PROTOCOL_VERSION

STREAM_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
# A BCP-47-like language tag ("es", "pt-BR", "zh-Hans"): safe inside URLs and file names.
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$"

Stage = Literal["asr", "translation", "tts", "fit", "internal"]
FragmentStatus = Literal["ok", "no_speech", "failed"]


class _Model(BaseModel):
    # Unknown keys are ignored so that additions to the protocol stay compatible.
    model_config = ConfigDict(extra="ignore", use_enum_values=True)


# ---------------------------------------------------------------- client -> server


class AudioFormat(_Model):
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate_hz: int = Field(DEFAULT_SAMPLE_RATE_HZ, ge=MIN_SAMPLE_RATE_HZ, le=MAX_SAMPLE_RATE_HZ)
    channels: Literal[1] = 1


class StreamInit(_Model):
    stream_id: str = Field(pattern=STREAM_ID_PATTERN)
    source_language: str = Field(min_length=2, max_length=16)
    target_languages: list[str] = Field(min_length=1, max_length=8)
    audio: AudioFormat = Field(default_factory=AudioFormat)
    voice: dict[str, str] = Field(default_factory=dict)
    max_fragment_ms: float | None = Field(None, gt=0)

    @field_validator("target_languages")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("target languages must be distinct")
        return v


class FragmentData(_Model):
    stream_id: str = Field(pattern=STREAM_ID_PATTERN)
    fragment_id: str = Field(min_length=1, max_length=256)
    sequence_number: int = Field(ge=0)
    start_ms: float = Field(ge=0)
    duration_ms: float = Field(gt=0)
    audio: bytes
    # v1.1: the result is of no use this many ms after the server receives the fragment. The
    # server schedules earliest deadline first and answers `deadline_exceeded` at once for work
    # it cannot finish in time. Absent: only the server's stage timeouts apply.
    deadline_ms: float | None = Field(None, gt=0, le=600000)
    # v1.3, with `deadline_ms`: a dub that starts up to this many ms after the span's start (and
    # is as much shorter) is still of use until `deadline_ms` + this. A server that would miss
    # `deadline_ms` fits the dub to the rest of the span and says so in `start_offset_ms`.
    late_start_ms: float | None = Field(None, gt=0, le=10000)
    # v1.5: true when the span ends at a forced cut (the fragment limit), so the speech goes on in
    # the next fragment, which starts where this one ends. The server may then leave a word that
    # touches the cut to the next fragment's transcript. Absent: treated as false.
    continues: bool | None = None

    @field_validator("audio")
    @classmethod
    def _whole_samples(cls, v: bytes) -> bytes:
        if len(v) == 0 or len(v) % 2:
            raise ValueError("must be non-empty pcm_s16le (an even number of bytes)")
        return v


class StreamEnd(_Model):
    stream_id: str = Field(pattern=STREAM_ID_PATTERN)


# ---------------------------------------------------------------- acks


class VoiceInfo(_Model):
    """v1.2: who speaks one target language."""

    voice: str  # engine:model (or engine:voice name), e.g. "piper:es_ES-davefx-medium", "espeak-ng:ca"
    high_voice: str | None = None  # the voice for high-pitched source speakers, if any
    fallback: bool = False  # true: no voice was configured for the language, espeak-ng speaks it


class Capabilities(_Model):
    asr: str
    translation: str
    translators: dict[str, str] | None = None  # v1.2: the MT engine of each target in `languages`
    tts: str
    languages: list[str]
    voices: dict[str, VoiceInfo] | None = None  # v1.2: per target language in `languages`


class StreamInitAck(_Model):
    ok: Literal[True] = True
    session_id: str
    protocol_version: int = PROTOCOL_VERSION
    protocol_minor: int = PROTOCOL_MINOR
    max_inflight: int
    capabilities: Capabilities


class FragmentAck(_Model):
    accepted: Literal[True] = True
    queue_depth: int


class StreamEndAck(_Model):
    ok: Literal[True] = True
    fragments: int
    succeeded: int
    no_speech: int
    failed: int
    p50_ms: float
    p95_ms: float


class WireError(_Model):
    code: str  # an ErrorCode value; kept as text so a code added by a newer server still parses
    message: str
    retryable: bool | None = None


class Refusal(_Model):
    """A negative ack: ``ok: false`` (stream:init, stream:end) or ``accepted: false`` (fragment:data)."""

    ok: Literal[False] | None = None
    accepted: Literal[False] | None = None
    error: WireError


# ---------------------------------------------------------------- server -> client


class FragmentError(_Model):
    code: ErrorCode
    stage: Stage
    message: str
    retryable: bool = False


class DubResult(_Model):
    target_language: str
    text: str
    audio: bytes
    sample_rate_hz: int
    duration_ms: float
    speed_factor: float = 1.0


class StageTimings(_Model):
    queue: float = 0.0  # v1.1: waited before ASR started (scheduling, batching)
    asr: float = 0.0
    translation: float = 0.0
    tts: float = 0.0
    fit: float = 0.0
    total: float = 0.0


class FragmentProcessed(_Model):
    stream_id: str
    fragment_id: str
    sequence_number: int
    start_ms: float
    duration_ms: float
    status: FragmentStatus
    transcript: str = ""
    results: list[DubResult] = Field(default_factory=list)
    timings_ms: StageTimings = Field(default_factory=StageTimings)
    error: FragmentError | None = None
    # v1.3: the dubs start this long after `start_ms` and are as much shorter than the span (a
    # late start the fragment's `late_start_ms` allowed). 0: they start with the span.
    start_offset_ms: float = Field(0.0, ge=0)


class ServerDraining(_Model):
    """v1.4: sent to every connection when the server starts shutting down. The server keeps
    serving the streams it has for up to `drain_s`; a client moves them to another replica."""

    drain_s: float = Field(ge=0)


class StreamBackpressure(_Model):
    stream_id: str
    inflight: int
    max_inflight: int
    action: Literal["slow_down", "ok"]


# ---------------------------------------------------------------- helpers

M = TypeVar("M", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every bad field, e.g. ``sequence_number: Input should be >= 0``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse(model: type[M], payload: Any) -> M:
    """Validate a raw event payload; raise ProtocolError(invalid_payload) naming the bad field."""
    if not isinstance(payload, dict):
        raise ProtocolError(
            ErrorCode.INVALID_PAYLOAD,
            f"{model.__name__}: payload must be an object, got {type(payload).__name__}",
        )
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_PAYLOAD, f"{model.__name__}: {describe_validation_error(exc)}"
        ) from None


def parse_ack(model: type[M], payload: Any) -> M:
    """An ack as `model`; a refusal (``ok``/``accepted`` false) raises ProtocolError with its code
    and message (a code this version does not know becomes ``internal``)."""
    if isinstance(payload, dict) and (payload.get("ok") is False or payload.get("accepted") is False):
        err = parse(Refusal, payload).error
        code = err.code if err.code in {c.value for c in ErrorCode} else ErrorCode.INTERNAL
        raise ProtocolError(code, err.message, err.retryable)
    return parse(model, payload)


def dump(model: BaseModel) -> dict[str, Any]:
    """Wire form of a model: plain dict, bytes kept as bytes (Socket.IO binary attachments)."""
    return model.model_dump(mode="python")


