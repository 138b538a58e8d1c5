"""The STS wire protocol, version 1.x: the single definition both services import.

See specs/protocol.md for the prose description. Split by what it defines: ``events`` (names,
version), ``models`` (payloads, parse/dump), ``errors`` (codes, refusals), ``audio`` (PCM16),
``tokens`` (the shared secret's strength check). Not the wire protocol but shared the same way:
``settings`` (how both services declare their config; import it from the submodule).
"""

from .audio import (
    DEFAULT_SAMPLE_RATE_HZ,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    float_to_pcm16,
    pcm16_duration_ms,
    pcm16_to_float,
)
from .errors import RETRYABLE_CODES, ErrorCode, ProtocolError, error_ack, reject_ack
from .events import (
    ERROR,
    FRAGMENT_DATA,
    FRAGMENT_PROCESSED,
    NAMESPACE,
    PROTOCOL_MINOR,
    PROTOCOL_VERSION,
    SERVER_DRAINING,
    STREAM_BACKPRESSURE,
    STREAM_END,
    STREAM_INIT,
)
from .models import (
    LANGUAGE_PATTERN,
    STREAM_ID_PATTERN,
    AudioFormat,
    Capabilities,
    DubResult,
    FragmentAck,
    FragmentData,
    FragmentError,
    FragmentProcessed,
    FragmentStatus,
    Refusal,
    ServerDraining,
    Stage,
    StageTimings,
    StreamBackpressure,
    StreamEnd,
    StreamEndAck,
    StreamInit,
    StreamInitAck,
    VoiceInfo,
    WireError,
    describe_validation_error,
    dump,
    parse,
    parse_ack,
)
from .tokens import MIN_TOKEN_CHARS, weak_token_reason

__all__ = [
    "DEFAULT_SAMPLE_RATE_HZ", "MAX_SAMPLE_RATE_HZ", "MIN_SAMPLE_RATE_HZ",
    "MIN_TOKEN_CHARS",
    "weak_token_reason",
    "ERROR", "FRAGMENT_DATA", "FRAGMENT_PROCESSED", "NAMESPACE", "PROTOCOL_MINOR", "PROTOCOL_VERSION",
    "RETRYABLE_CODES", "SERVER_DRAINING", "STREAM_BACKPRESSURE", "STREAM_END", "LANGUAGE_PATTERN", "STREAM_ID_PATTERN", "STREAM_INIT",
    "AudioFormat", "Capabilities", "DubResult", "ErrorCode", "FragmentAck", "FragmentData",
    "FragmentError", "FragmentProcessed", "FragmentStatus", "ProtocolError", "Stage", "StageTimings",
    "StreamBackpressure", "StreamEnd", "StreamEndAck", "StreamInit", "StreamInitAck",
    "Refusal", "ServerDraining", "VoiceInfo", "WireError",
    "describe_validation_error", "dump", "error_ack", "float_to_pcm16", "parse", "parse_ack", "pcm16_duration_ms",
    "pcm16_to_float", "reject_ack",
]
