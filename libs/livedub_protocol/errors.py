"""Wire error codes and the exception that carries one."""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    UNAUTHORIZED = "unauthorized"
    INVALID_PAYLOAD = "invalid_payload"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    UNSUPPORTED_AUDIO = "unsupported_audio"
    FRAGMENT_TOO_LARGE = "fragment_too_large"
    UNKNOWN_STREAM = "unknown_stream"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    DEADLINE_EXCEEDED = "deadline_exceeded"  # v1.1: the fragment's deadline_ms could not be met
    ASR_FAILED = "asr_failed"
    TRANSLATION_FAILED = "translation_failed"
    TTS_FAILED = "tts_failed"
    INTERNAL = "internal"
    DRAINING = "draining"  # v1.4: the server is shutting down; open the stream on another replica


RETRYABLE_CODES = frozenset({ErrorCode.OVERLOADED, ErrorCode.TIMEOUT, ErrorCode.INTERNAL, ErrorCode.DRAINING})


class ProtocolError(Exception):
    """A payload or request that the protocol refuses; carries the wire error code."""

    def __init__(self, code: ErrorCode, message: str, retryable: bool | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.retryable = self.code in RETRYABLE_CODES if retryable is None else retryable

    def to_wire(self, with_retryable: bool = False) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if with_retryable:
            err["retryable"] = self.retryable
        return err


def error_ack(code: ErrorCode, message: str, *, retryable: bool | None = None) -> dict[str, Any]:
    """Negative ack for stream:init / stream:end (``ok: false``)."""
    return {"ok": False, "error": ProtocolError(code, message, retryable).to_wire()}


def reject_ack(code: ErrorCode, message: str, *, retryable: bool | None = None) -> dict[str, Any]:
    """Negative ack for fragment:data (``accepted: false``, with ``retryable``)."""
    return {
        "accepted": False,
        "error": ProtocolError(code, message, retryable).to_wire(with_retryable=True),
    }
