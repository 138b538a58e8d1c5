"""media-service configuration: the service config (env/CLI) and a stream's request (REST/hooks).

Both are validated when they are made, with messages that name the bad field.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Annotated

from livedub_protocol import LANGUAGE_PATTERN, weak_token_reason
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .budget import DelayTooShort, check_delay
from .redaction import redact_url
from .states import Mode
from .targets import TargetPolicy, check_url_syntax

# Starts with a letter or digit: "." and ".." would be paths, "-x" an option to a child process.
STREAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the flag/variable."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass
class MediaConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    sts_url: str = "http://127.0.0.1:8000"
    sts_token: str | None = None
    api_token: str | None = None  # generated at start when MEDIA_API_TOKEN is unset
    allowed_hosts: tuple[str, ...] = ()  # empty: any Host header (the token still applies)
    rtmp_base_url: str = "rtmp://127.0.0.1:1935"
    # Constant output delay D (s): the STS budget of a fragment is D minus its own length.
    output_delay_s: float = 8.0
    max_fragment_ms: float = 5000.0
    min_fragment_ms: float = 500.0
    min_silence_ms: float = 300.0
    speech_padding_ms: float = 150.0
    vad_threshold: float = 0.5
    duck_gain_db: float = -14.0
    default_mix: str = "duck"
    default_source_language: str = "en"
    default_target_languages: tuple[str, ...] = ("es",)
    input_retry_s: float = 1.0
    input_wait_timeout_s: float = 300.0  # a stream whose input never connects ends after this (0 = never)
    shutdown_drain_s: float = 15.0  # on SIGTERM, streams play out what is buffered for at most this long
    # Limits (a client must not be able to exhaust the machine); refused with `limit_reached`.
    max_streams: int = 16  # running streams per media-service
    max_languages: int = 8  # target languages per stream
    max_preview_viewers: int = 8  # preview viewers per stream
    max_preview_viewers_total: int = 32  # preview viewers in total
    mediamtx_api: str | None = None  # MediaMTX control API: streams for published inputs are reconciled
    reconcile_interval_s: float = 10.0
    media_root: str | None = None  # file inputs/outputs only under this directory; None: no files
    media_hosts: tuple[str, ...] = ()  # rtmp/srt hosts streams may reach; empty: any
    log_level: str = "INFO"

    def target_policy(self) -> TargetPolicy:
        return TargetPolicy(media_root=self.media_root, hosts=self.media_hosts)

    def validate(self) -> MediaConfig:
        if not self.sts_url.startswith(("http://", "https://")):
            raise ConfigError(f"STS_URL must be an http(s):// URL, got {self.sts_url!r}")
        if not self.sts_token:
            raise ConfigError("STS_AUTH_TOKEN is not set: media-service needs the sts-service token")
        if self.api_token is not None and (weak := weak_token_reason(self.api_token)):
            raise ConfigError(f"MEDIA_API_TOKEN is not usable: {weak} (or leave it unset to have one generated)")
        if not (1.0 <= self.output_delay_s <= 60.0):
            raise ConfigError(f"--output-delay must be 1..60 s, got {self.output_delay_s}")
        try:
            check_delay(self.output_delay_s, min_silence_cap_ms=self.min_silence_ms)
        except DelayTooShort as exc:
            raise ConfigError(f"--output-delay: {exc}") from None
        if not (0 < self.min_fragment_ms < self.max_fragment_ms):
            raise ConfigError(f"--min-fragment-ms must be above 0 and below --max-fragment-ms, got "
                              f"{self.min_fragment_ms}")
        if not (0.0 <= self.shutdown_drain_s <= 120.0):
            raise ConfigError(f"--shutdown-drain must be within 0..120 s, got {self.shutdown_drain_s}")
        if self.input_wait_timeout_s < 0:
            raise ConfigError(f"--input-wait-timeout must be >= 0 s (0 = wait forever), got {self.input_wait_timeout_s}")
        if not (0 <= self.speech_padding_ms <= 1000):
            raise ConfigError(f"--speech-padding-ms must be within 0..1000, got {self.speech_padding_ms}")
        if not (-60.0 <= self.duck_gain_db <= 0.0):
            raise ConfigError(f"--duck-gain-db must be within -60..0, got {self.duck_gain_db}")
        if self.default_mix not in {m.value for m in Mode}:
            raise ConfigError(f"--mix must be one of {', '.join(m.value for m in Mode)}, got {self.default_mix!r}")
        if not self.rtmp_base_url.startswith(("rtmp://", "rtmps://")):
            raise ConfigError(f"--rtmp-base-url must start with rtmp://, got {self.rtmp_base_url!r}")
        for flag, value, top in (("--max-streams", self.max_streams, 1000), ("--max-languages", self.max_languages, 8),
                                 ("--max-preview-viewers", self.max_preview_viewers, 1000),
                                 ("--max-preview-viewers-total", self.max_preview_viewers_total, 10000)):
            if not (1 <= value <= top):
                raise ConfigError(f"{flag} must be within 1..{top}, got {value}")
        if self.mediamtx_api is not None and not self.mediamtx_api.startswith(("http://", "https://")):
            raise ConfigError(f"--mediamtx-api (MEDIA_MEDIAMTX_API) must be an http(s):// URL, got "
                              f"{redact_url(self.mediamtx_api)!r}")
        if not (0.2 <= self.reconcile_interval_s <= 3600):
            raise ConfigError(f"--reconcile-interval must be within 0.2..3600 s, got {self.reconcile_interval_s}")
        if self.media_root is not None and not os.path.isdir(self.media_root):
            raise ConfigError(f"--media-root (MEDIA_ROOT) must be an existing directory, got {self.media_root!r}")
        return self


def build_parser() -> argparse.ArgumentParser:
    """The command line; each default comes from its environment variable when set (read now)."""
    d = MediaConfig()
    p = argparse.ArgumentParser(prog="media-service",
                                description="Live dubbing media service: RTMP in, dubbed RTMP out")
    p.add_argument("--host", default=_env("MEDIA_HOST", d.host))
    p.add_argument("--port", type=int, default=int(_env("MEDIA_PORT", str(d.port))))
    p.add_argument("--sts-url", default=_env("STS_URL", d.sts_url))
    p.add_argument("--rtmp-base-url", default=_env("MEDIA_RTMP_BASE_URL", d.rtmp_base_url),
                   help="RTMP server that hook-started streams read from and publish to")
    p.add_argument("--output-delay", dest="output_delay_s", type=float,
                   default=float(_env("MEDIA_OUTPUT_DELAY", str(d.output_delay_s))))
    p.add_argument("--max-fragment-ms", type=float, default=float(_env("MEDIA_MAX_FRAGMENT_MS", str(d.max_fragment_ms))))
    p.add_argument("--min-fragment-ms", type=float, default=float(_env("MEDIA_MIN_FRAGMENT_MS", str(d.min_fragment_ms))))
    p.add_argument("--min-silence-ms", type=float, default=float(_env("MEDIA_MIN_SILENCE_MS", str(d.min_silence_ms))))
    p.add_argument("--speech-padding-ms", type=float,
                   default=float(_env("MEDIA_SPEECH_PADDING_MS", str(d.speech_padding_ms))))
    p.add_argument("--vad-threshold", type=float, default=float(_env("MEDIA_VAD_THRESHOLD", str(d.vad_threshold))))
    p.add_argument("--duck-gain-db", type=float, default=float(_env("MEDIA_DUCK_GAIN_DB", str(d.duck_gain_db))))
    p.add_argument("--mix", dest="default_mix", default=_env("MEDIA_MIX", d.default_mix))
    p.add_argument("--source-language", dest="default_source_language",
                   default=_env("MEDIA_SOURCE_LANGUAGE", d.default_source_language))
    p.add_argument("--target-languages", dest="default_target_languages",
                   default=_env("MEDIA_TARGET_LANGUAGES", ",".join(d.default_target_languages)),
                   help="comma-separated, used for hook-started streams without ?lang=")
    p.add_argument("--allowed-hosts", default=_env("MEDIA_ALLOWED_HOSTS", ""),
                   help="comma-separated host names the API answers to (default: any; DNS-rebinding guard)")
    p.add_argument("--input-wait-timeout", dest="input_wait_timeout_s", type=float,
                   default=float(_env("MEDIA_INPUT_WAIT_TIMEOUT", str(d.input_wait_timeout_s))),
                   help="seconds a stream waits for its input to connect a first time before it ends (0 = forever)")
    for flag, env, dest, text in (
            ("--max-streams", "MEDIA_MAX_STREAMS", "max_streams", "running streams (more: 503 limit_reached)"),
            ("--max-languages", "MEDIA_MAX_LANGUAGES", "max_languages", "target languages per stream (1..8)"),
            ("--max-preview-viewers", "MEDIA_MAX_PREVIEW_VIEWERS", "max_preview_viewers", "preview viewers per stream"),
            ("--max-preview-viewers-total", "MEDIA_MAX_PREVIEW_VIEWERS_TOTAL", "max_preview_viewers_total",
             "preview viewers in total")):
        p.add_argument(flag, dest=dest, type=int, default=int(_env(env, str(getattr(d, dest)))), help=text)
    p.add_argument("--mediamtx-api", default=_env("MEDIA_MEDIAMTX_API"),
                   help="MediaMTX control API (http://host:9997): published inputs without a stream get one, "
                        "at start and every --reconcile-interval (restarts, lost hooks)")
    p.add_argument("--reconcile-interval", dest="reconcile_interval_s", type=float,
                   default=float(_env("MEDIA_RECONCILE_INTERVAL", str(d.reconcile_interval_s))))
    p.add_argument("--media-root", default=_env("MEDIA_ROOT"),
                   help="directory that file inputs and outputs must be under (default: files refused)")
    p.add_argument("--media-hosts", default=_env("MEDIA_HOSTS", ""),
                   help="comma-separated host or host:port that rtmp/srt inputs and outputs may reach "
                        "(default: any; SSRF guard)")
    p.add_argument("--shutdown-drain", dest="shutdown_drain_s", type=float,
                   default=float(_env("MEDIA_SHUTDOWN_DRAIN", str(d.shutdown_drain_s))),
                   help="on SIGTERM, seconds streams may take to play out what is buffered (0 = stop at once)")
    p.add_argument("--log-level", default=_env("MEDIA_LOG_LEVEL", d.log_level))
    return p


def parse_args(argv: list[str] | None = None) -> MediaConfig:
    ns = build_parser().parse_args(argv)
    values = vars(ns)
    for key in ("allowed_hosts", "media_hosts"):
        values[key] = tuple(h.strip().lower() for h in values[key].split(",") if h.strip())
    values["default_target_languages"] = tuple(
        t.strip() for t in values["default_target_languages"].split(",") if t.strip())
    cfg = MediaConfig(**values, sts_token=_env("STS_AUTH_TOKEN"), api_token=_env("MEDIA_API_TOKEN"))
    return cfg.validate()


class StreamPatch(BaseModel):
    """`PATCH /v1/streams/{id}`: what may change while a stream runs (both optional)."""

    model_config = ConfigDict(extra="forbid")

    mix: Mode | None = None
    duck_gain_db: float | None = Field(None, ge=-60, le=0)


class StreamRequest(BaseModel):
    """Body of POST /v1/streams (and what a publish hook builds)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="stream id; derived from the input URL when absent")
    input_url: str
    output_url: str = Field(description="may contain {lang}; required when several languages are dubbed")
    source_language: str = Field("en", pattern=LANGUAGE_PATTERN)
    target_languages: list[Annotated[str, Field(pattern=LANGUAGE_PATTERN)]] = Field(
        default_factory=lambda: ["es"], min_length=1, max_length=8)
    mix: Mode = Mode.DUCK
    duck_gain_db: float | None = Field(None, ge=-60, le=0)
    output_delay_s: float | None = Field(None, ge=1, le=60)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not STREAM_ID_RE.match(v):
            raise ValueError("must be 1..128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit")
        return v

    @field_validator("input_url")
    @classmethod
    def _input(cls, v: str) -> str:
        return check_url_syntax(v, output=False)

    @field_validator("output_url")
    @classmethod
    def _output(cls, v: str) -> str:
        return check_url_syntax(v, output=True)

    def output_for(self, lang: str) -> str:
        if "{lang}" in self.output_url:
            return self.output_url.replace("{lang}", lang)
        if len(self.target_languages) == 1 or lang == self.target_languages[0]:
            return self.output_url
        return f"{self.output_url.rstrip('/')}_{lang}"

    def stream_id(self) -> str:
        if self.id:
            return self.id
        tail = self.input_url.rstrip("/").split("://", 1)[-1].split("/", 1)[-1]
        parts = [p for p in tail.split("/") if p and p not in ("live", "in", "_definst_")]
        candidate = re.sub(r"[^A-Za-z0-9._-]", "-", "-".join(parts)).lstrip("._-")[:128]
        return candidate or "stream"

    def targets(self) -> list[tuple[str, bool]]:
        """Every URL this request opens, as (url, is_output)."""
        return [(self.input_url, False)] + [(self.output_for(lang), True) for lang in self.target_languages]
