"""sts-service configuration: each setting declared once (type, default, range, flag, variable,
description); the command line, the checks at start and the table in docs/configuration.md follow from it."""

from __future__ import annotations

import os
from typing import ClassVar, Literal

from livedub_protocol import weak_token_reason
from livedub_protocol.settings import ConfigError, LogLevel, Settings, comma_list, setting
from livedub_protocol.settings import build_parser as _build_parser
from livedub_protocol.settings import parse as _parse
from pydantic import model_validator

from .asr import whisper
from .models.store import ModelStore, default_models_dir
from .tts.voices import VoiceSpec, parse_voice_specs

__all__ = ["ConfigError", "StsConfig", "build_parser", "parse_args"]


def _cpu_count() -> int:
    return os.cpu_count() or 2


class StsConfig(Settings):
    """The sts-service settings; made from keyword arguments (tests) or parse_args()."""

    PROG: ClassVar[str] = "sts-service"
    DESCRIPTION: ClassVar[str] = "Speech-to-speech dubbing service (Socket.IO /sts)"

    host: str = setting("127.0.0.1", "--host", "STS_HOST", "listen address")
    port: int = setting(8000, "--port", "STS_PORT", "listen port (0–65535)", ge=0, le=65535)
    auth_token: str | None = setting(
        None, "--auth-token", "STS_AUTH_TOKEN",
        "token clients must send; without it, or with a weak one (placeholder such as `change-me`, < 16 "
        "characters, < 6 distinct characters), the service refuses to start (exit 2) unless `--no-auth`",
        secret=True)
    no_auth: bool = setting(False, "--no-auth", None, "accept clients without a token (local use only)")
    # ASR
    asr_model: str | None = setting(
        None, "--asr-model", "STS_ASR_MODEL",
        "faster-whisper CTranslate2 model directory, or a size name already in the local cache (never "
        "downloaded)")
    asr_compute_type: str = setting(whisper.COMPUTE_TYPE, "--asr-compute-type", "STS_ASR_COMPUTE_TYPE",
                                    "CTranslate2 compute type")
    asr_device: Literal["cpu", "cuda", "auto"] = setting(
        "cpu", "--asr-device", "STS_ASR_DEVICE",
        "faster-whisper device: `cpu`, `cuda` (an NVIDIA GPU with CUDA 12 and cuDNN 9 libraries; with "
        "`--asr-compute-type float16` or `int8_float16`) or `auto`")
    asr_beam_size: int = setting(whisper.BEAM_SIZE, "--asr-beam-size", "STS_ASR_BEAM_SIZE",
                                 "beam size (>= 1; > 1: only for a lone fragment on an idle ASR)", ge=1)
    asr_threads: int = setting(whisper.CPU_THREADS, "--asr-threads", "STS_ASR_THREADS",
                               "CTranslate2 CPU threads per ASR worker (>= 1)", ge=1)
    asr_min_window: int = setting(
        whisper.MIN_WINDOW, "--asr-min-window", "STS_ASR_MIN_WINDOW",
        "shortest encoder window in 10 ms frames (100–3000); a fragment gets its length + 2 s, 3000 is "
        "Whisper's full 30 s window", ge=100, le=3000)
    asr_left_context_s: float = setting(
        5.0, "--asr-left-context", "STS_ASR_LEFT_CONTEXT",
        "a fragment is kept, up to this many seconds, and the next one is heard behind it when it goes on from it "
        "(after a cut the client marks `continues`, its last word going to the next one; or after a pause, `"
        "--asr-left-context-pause`); 0 turns it off (0–10 s)", ge=0, le=10)
    asr_left_context_pause_s: float = setting(
        1.5, "--asr-left-context-pause", "STS_ASR_LEFT_CONTEXT_PAUSE",
        "a fragment that starts at most this many seconds after the one before (a pause inside the speech) is "
        "heard behind it too, the pause as silence, where that needs no wider encoder window; 0: only after a "
        "cut (0–5 s)", ge=0, le=5)
    asr_workers: int = setting(
        _cpu_count, "--asr-workers", "STS_ASR_WORKERS",
        "ASR workers, each transcribing one batch at a time (>= 1; workers x threads should not exceed the "
        "cores)", ge=1)
    # Per-pair MT, and model servers over OpenAI-compatible HTTP APIs (keys: environment only)
    asr_engine: Literal["faster-whisper", "openai"] = setting(
        "faster-whisper", "--asr-engine", "STS_ASR_ENGINE",
        "speech recognition: `faster-whisper` (in process) or `openai` (a server's `/v1/audio/transcriptions` at "
        "`--asr-url`)")
    asr_url: str | None = setting(None, "--asr-url", "STS_ASR_URL",
                                  "`--asr-engine openai`: the server's base URL, e.g. `http://gpu:8000/v1`")
    asr_api_key: str | None = setting(None, None, "STS_ASR_API_KEY",
                                      "`--asr-engine openai`: API key sent as a bearer token (never logged)",
                                      secret=True)
    asr_server_model: str = setting("whisper-1", "--asr-server-model", "STS_ASR_SERVER_MODEL",
                                    "`--asr-engine openai`: the model name sent to the server")
    mt_models: comma_list() = setting(
        (), "--mt-model", "STS_MT_MODELS",
        "comma-separated `SRC-TGT=ENGINE[:ARG]`: the engine of one language pair, e.g. "
        "`en-es=ctranslate2:/models/opus-mt-en-es` (a CTranslate2 Marian/OPUS-MT, NLLB or M2M-100 directory, or "
        "an Argos Translate package), `en-ca=openai[:MODEL]`, `en-fr=deepl`; other pairs use "
        "`--translation-engine`")
    llm_url: str | None = setting(None, "--llm-url", "STS_LLM_URL",
                                  "`openai` translation: the chat server's base URL, e.g. `http://gpu:8000/v1`")
    llm_api_key: str | None = setting(None, None, "STS_LLM_API_KEY",
                                      "`openai` translation: API key sent as a bearer token (never logged)",
                                      secret=True)
    llm_model: str | None = setting(None, "--llm-model", "STS_LLM_MODEL",
                                    "`openai` translation: the chat model name sent to the server")
    tts_url: str | None = setting(None, "--tts-url", "STS_TTS_URL",
                                  "`--tts-engine openai`: the speech server's base URL, e.g. `http://gpu:8000/v1`")
    tts_api_key: str | None = setting(None, None, "STS_TTS_API_KEY",
                                      "`--tts-engine openai`: API key sent as a bearer token (never logged)",
                                      secret=True)
    tts_server_model: str = setting("tts-1", "--tts-server-model", "STS_TTS_SERVER_MODEL",
                                    "`--tts-engine openai`: the model name sent to the server")
    tts_server_voice: str = setting(
        "alloy", "--tts-server-voice", "STS_TTS_SERVER_VOICE",
        "`--tts-engine openai`: the voice asked for when the stream names none")
    tts_server_languages: comma_list(lower=True) = setting(
        (), "--tts-server-languages", "STS_TTS_SERVER_LANGUAGES",
        "`--tts-engine openai`: comma-separated languages the server's model speaks (default: every language "
        "the service knows)")
    # Translation / TTS
    translation_engine: Literal["apertium", "deepl", "google", "openai"] = setting(
        "apertium", "--translation-engine", "STS_TRANSLATION_ENGINE",
        "translation engine of the pairs without `--mt-model`: `apertium`, `deepl`, `google` or `openai` (an "
        "LLM at `--llm-url`)")
    tts_engine: Literal["espeak", "piper", "coqui", "openai"] = setting(
        "espeak", "--tts-engine", "STS_TTS_ENGINE",
        "speech engine: `espeak`, `piper`, `coqui` (`piper`/`coqui` need `--tts-model`) or `openai` (a server's "
        "`/v1/audio/speech` at `--tts-url`)")
    tts_model: str | None = setting(None, "--tts-model", "STS_TTS_MODEL",
                                    "Piper `.onnx` voice / Coqui checkpoint (file or directory)")
    tts_config: str | None = setting(
        None, "--tts-config", "STS_TTS_CONFIG",
        "Piper: `<model>.json` beside the model; Coqui: `config.json` beside the checkpoint")
    tts_language: str | None = setting(None, "--tts-language", "STS_TTS_LANGUAGE",
                                       "the language a single-language `--tts-model` voice speaks")
    tts_voices: comma_list() = setting(
        (), "--tts-voice", "STS_TTS_VOICES",
        "a language's voice, `LANG=ENGINE[:PATH]` (engine `piper`, `coqui` or `espeak`; PATH: the model, or "
        "an espeak-ng voice name), e.g. `es=piper:/models/es_ES-davefx-medium.onnx`; `LANG.high=...` is the "
        "voice for high-pitched speakers; repeatable (variable: comma-separated); languages without one "
        "speak espeak-ng", repeat=True)
    tts_high_pitch_hz: float = setting(
        165.0, "--tts-high-pitch-hz", "STS_TTS_HIGH_PITCH_HZ",
        "source speech with a median pitch at or above this (Hz, 50–500) is spoken by the language's high "
        "voice (`LANG.high`, or espeak-ng's `+f3` variant)", ge=50.0, le=500.0)
    models_dir: str = setting(
        default_models_dir, "--models-dir", "STS_MODELS_DIR",
        "where `livedub-models pull` puts models: a bare name in `--tts-voice` (`es=piper:es_ES-davefx-medium`) "
        "or `--asr-model` is looked up there; read only, nothing is downloaded")
    # Fit
    max_speed: float = setting(1.5, "--max-speed", "STS_MAX_SPEED",
                               "maximum time-stretch speed-up (1.0–4.0)", ge=1.0, le=4.0)
    # Limits
    max_fragment_ms: float = setting(15000.0, "--max-fragment-ms", "STS_MAX_FRAGMENT_MS",
                                     "longest fragment accepted (>= 500; a client may ask for less)", ge=500)
    max_inflight: int = setting(
        4, "--max-inflight", "STS_MAX_INFLIGHT",
        "per stream: `slow_down` at this many fragments in flight (>= 1); sent to clients in the init ack", ge=1)
    max_queued: int = setting(
        8, "--max-queued", "STS_MAX_QUEUED",
        "per stream: fragments refused with `overloaded` at this many in flight (>= max-inflight)")
    max_queued_total: int = setting(
        64, "--max-queued-total", "STS_MAX_QUEUED_TOTAL",
        "all streams: fragments refused with `overloaded` at this many in flight (>= max-queued)")
    max_sessions_per_connection: int = setting(
        16, "--max-sessions-per-connection", "STS_MAX_SESSIONS_PER_CONNECTION",
        "stream sessions one connection may open (>= 1; `overloaded` at init)", ge=1)
    max_connections: int = setting(64, "--max-connections", "STS_MAX_CONNECTIONS",
                                   "Socket.IO connections (>= 1; refused with `overloaded`)", ge=1)
    drain_timeout_s: float = setting(
        30.0, "--drain-timeout", "STS_DRAIN_TIMEOUT",
        "on SIGTERM/SIGINT new streams are refused (`draining`) and the open ones served until their clients have "
        "moved them or nothing has been in flight for 2 s, at most this long; then in-flight fragments get 10 s "
        "(0–600 s)", ge=0, le=600)
    asr_prompt: bool = setting(False, "--asr-prompt", "STS_ASR_PROMPT",
                               "the stream's previous transcript as the Whisper prompt (variable: 1, true or yes)")
    cors_origins: str = setting(
        "", "--cors-origins", "STS_CORS_ORIGINS",
        "comma-separated browser origins allowed (servers connect over websocket and need none)")
    post_workers: int = setting(lambda: max(2, _cpu_count()), "--post-workers", "STS_POST_WORKERS",
                                "threads for translation/TTS/fit (>= 1)", ge=1)
    asr_timeout_s: float = setting(20.0, "--asr-timeout", "STS_ASR_TIMEOUT", "ASR stage timeout", gt=0)
    translation_timeout_s: float = setting(10.0, None, None, "translation stage timeout", gt=0)
    tts_timeout_s: float = setting(10.0, None, None, "TTS stage timeout", gt=0)
    fit_timeout_s: float = setting(10.0, None, None, "fit stage timeout", gt=0)
    end_wait_s: float = setting(30.0, None, None, "how long `stream:end` waits for fragments in flight", ge=0)
    log_level: LogLevel = setting("INFO", "--log-level", "STS_LOG_LEVEL", "Python log level")

    @model_validator(mode="after")
    def _servers(self) -> StsConfig:
        """Per-pair MT entries and the model servers: what each needs is there, checked at start."""
        from .translation.router import parse_mt_models

        label = self.label
        try:
            specs = parse_mt_models(self.mt_models)
        except ValueError as exc:
            raise ConfigError(f"{label('mt_models')}: {exc}") from None
        for spec in specs.values():
            if spec.engine == "ctranslate2" and not os.path.isdir(spec.arg):
                raise ConfigError(f"{label('mt_models')} {spec.text}: {spec.arg} is not a directory")
        llm = self.translation_engine == "openai" or any(s.engine == "openai" for s in specs.values())
        if llm and not self.llm_url:
            raise ConfigError(f"openai translation needs {label('llm_url')}")
        if llm and not self.llm_model and (self.translation_engine == "openai"
                                           or any(s.engine == "openai" and not s.arg for s in specs.values())):
            raise ConfigError(f"openai translation needs {label('llm_model')} (or en-xx=openai:MODEL)")
        if self.asr_engine == "openai" and not self.asr_url:
            raise ConfigError(f"--asr-engine openai needs {label('asr_url')}")
        if self.tts_engine == "openai" and not self.tts_url:
            raise ConfigError(f"--tts-engine openai needs {label('tts_url')}")
        for name in ("asr_url", "llm_url", "tts_url"):
            value = getattr(self, name)
            if value and not value.lower().startswith(("http://", "https://")):
                raise ConfigError(f"{label(name)} must be an http(s) URL")
        return self

    @model_validator(mode="after")
    def _together(self) -> StsConfig:
        if not self.no_auth and not self.auth_token:
            raise ConfigError("STS_AUTH_TOKEN is not set: set it (or --auth-token) or start with --no-auth to run "
                              "without authentication")
        if not self.no_auth and (weak := weak_token_reason(self.auth_token)):
            raise ConfigError(f"STS_AUTH_TOKEN is not usable: {weak}")
        label = self.label
        if self.max_queued < self.max_inflight:
            raise ConfigError(f"{label('max_queued')} must be >= {label('max_inflight')}, got "
                              f"{self.max_queued} < {self.max_inflight}")
        if self.max_queued_total < self.max_queued:
            raise ConfigError(f"{label('max_queued_total')} must be >= {label('max_queued')}, got "
                              f"{self.max_queued_total} < {self.max_queued}")
        if self.tts_engine in ("piper", "coqui") and not self.tts_model:
            raise ConfigError(f"--tts-engine {self.tts_engine} needs --tts-model (a local model path)")
        specs = self.voice_specs()
        for spec in specs:
            if spec.path and spec.engine != "espeak" and not os.path.exists(spec.path):
                if "/" not in spec.path:
                    raise ConfigError(f"{label('tts_voices')} {spec.text}: no such file, nor a {spec.engine} model "
                                      f"of that name in {label('models_dir')} {self.models_dir} (livedub-models "
                                      "list shows what is there)")
                raise ConfigError(f"{label('tts_voices')} {spec.text}: {spec.path} does not exist")
        for name in ("tts_model", "tts_config", "asr_model"):
            value = getattr(self, name)
            if value and ("/" in value or value.endswith((".onnx", ".pth", ".json"))) and not os.path.exists(value):
                raise ConfigError(f"{label(name)}: {value} does not exist")
        return self


    def voice_specs(self) -> list[VoiceSpec]:
        """The voice map: `--tts-voice` entries, plus the single `--tts-model` voice (its language)."""
        try:
            specs = parse_voice_specs(self.tts_voices)
        except ValueError as exc:
            raise ConfigError(f"{self.label('tts_voices')}: {exc}") from None
        if self.tts_engine in ("piper", "coqui") and self.tts_model:
            lang = (self.tts_language or ("en" if self.tts_engine == "piper" else "es")).lower()
            if any(s.language == lang and not s.high for s in specs):
                raise ConfigError(f"{self.label('tts_model')} and {self.label('tts_voices')} both give a voice "
                                  f"for {lang!r}: keep one")
            specs.insert(0, VoiceSpec(lang, False, self.tts_engine, self.tts_model))
        store = ModelStore(self.models_dir)
        return [VoiceSpec(s.language, s.high, s.engine, str(found))
                if s.engine == "piper" and s.path and not os.path.exists(s.path) and (found := store.find("piper", s.path))
                else s for s in specs]

    def asr_model_path(self) -> str | None:
        """`--asr-model`, or the pulled model of that name in the models directory."""
        found = ModelStore(self.models_dir).find("whisper", self.asr_model or "")
        return str(found) if found else self.asr_model


def build_parser(environ=None):
    """The command line; each default comes from its environment variable when set (read now)."""
    return _build_parser(StsConfig, environ)


def parse_args(argv: list[str] | None = None, environ=None) -> StsConfig:
    return _parse(StsConfig, argv, environ)
