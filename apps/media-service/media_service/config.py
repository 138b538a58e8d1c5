"""media-service configuration: the service config (env/CLI) and a stream's request (REST/hooks).

Each setting is declared once below (type, default, range, flag, variable, description); the
command line, the checks at start and the table in docs/configuration.md (tests/unit/test_config_docs.py) follow
from it. A stream's request takes its defaults and ranges from the same declarations.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from livedub_protocol import LANGUAGE_PATTERN, weak_token_reason
from livedub_protocol.settings import ConfigError, HostList, LogLevel, Settings, comma_list, setting
from livedub_protocol.settings import build_parser as _build_parser
from livedub_protocol.settings import parse as _parse
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator, model_validator

from .redaction import redact_url
from .states import Mode
from .stream.budget import DelayTooShort, check_delay
from .targets import TargetPolicy, check_url_syntax

__all__ = ["ConfigError", "MediaConfig", "OutputSpec", "PlannedOutput", "StreamPatch", "StreamRequest", "Track",
           "build_parser", "parse_args"]

# Starts with a letter or digit: "." and ".." would be paths, "-x" an option to a child process.
STREAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Ranges a stream's request shares with the service settings (ints: they appear in messages).
DELAY_S = {"ge": 1, "le": 60}
DUCK_GAIN_DB = {"ge": -60, "le": 0}
MAX_LANGUAGES = 8
Language = Annotated[str, Field(pattern=LANGUAGE_PATTERN)]
Languages = comma_list(Language)
NetworkList = comma_list(IPvAnyNetwork)  # "10.0.0.0/8, 192.0.2.7"


class MediaConfig(Settings):
    """The media-service settings; made from keyword arguments (tests) or parse_args()."""

    PROG: ClassVar[str] = "media-service"
    DESCRIPTION: ClassVar[str] = "Live dubbing media service: RTMP in, dubbed RTMP out"

    host: str = setting("127.0.0.1", "--host", "MEDIA_HOST", "listen address of the control API")
    port: int = setting(8080, "--port", "MEDIA_PORT", "listen port (0–65535)", ge=0, le=65535)
    sts_url: str = setting(
        "http://127.0.0.1:8000", "--sts-url", "STS_URL",
        "sts-service base URL (http/https); several comma-separated, or a DNS name with several addresses, make a "
        "pool: each stream uses the least-loaded replica and moves on failure or drain "
        "([STS pool](../specs/media-service.md#sts-pool-sts_poolpy))")
    sts_token: str | None = setting(
        None, None, "STS_AUTH_TOKEN", "token sent to sts-service; the service refuses to start without it",
        secret=True)
    api_token: str | None = setting(
        None, None, "MEDIA_API_TOKEN",
        "bearer token of `/v1/*` (>= 16 characters, no placeholder); unset = a random one is generated and "
        "printed at start (the API is never open)", secret=True)
    viewer_token: str | None = setting(
        None, None, "MEDIA_VIEWER_TOKEN",
        "read-only bearer token (>= 16 characters, not the API token): GET/HEAD of `/v1/*` (stream list and "
        "snapshots, events, HLS playlists and segments, captions, preview) and the signed-link POSTs; anything "
        "else is refused with 403 `forbidden`; unset = no viewer token", secret=True)
    hook_token: str | None = setting(
        None, None, "MEDIA_HOOK_TOKEN",
        "token for the publish hooks only (>= 16 characters, not the API or viewer token): accepted on "
        "`/v1/hooks/*` and refused with 403 `forbidden` everywhere else, so the RTMP server (whose hook "
        "processes see it) never holds the API token; unset = hooks take the API token", secret=True)
    rtmp_base_url: str = setting(
        "rtmp://127.0.0.1:1935", "--rtmp-base-url", "MEDIA_RTMP_BASE_URL",
        "RTMP server that hook-started streams read from and publish to")
    rtmp_user: str | None = setting(
        None, "--rtmp-user", "MEDIA_RTMP_USER",
        "this service's user on the RTMP server (MediaMTX `authInternalUsers`): hook-started and reconciled "
        "streams add `?user=...&pass=...` to their input and output URLs, and `--mediamtx-api` gets it as "
        "HTTP basic auth; unset = no credentials", pattern=r"^[A-Za-z0-9._~-]{1,64}$")
    rtmp_pass: str | None = setting(
        None, None, "MEDIA_RTMP_PASS", "password of `--rtmp-user` (URL-safe: A-Z a-z 0-9 . _ ~ -); unused without it",
        secret=True, pattern=r"^[A-Za-z0-9._~-]{1,256}$")
    output_delay_s: float = setting(2.5, "--output-delay", "MEDIA_OUTPUT_DELAY",
                                    "constant output delay D (1–60 s)", **DELAY_S)
    max_fragment_ms: float = setting(
        5000.0, "--max-fragment-ms", "MEDIA_MAX_FRAGMENT_MS",
        "cap on the speech fragment length; the limit in force is derived from D and the measured service "
        "time ([Output delay D](operations.md#output-delay-d-and-fragment-limits))")
    min_fragment_ms: float = setting(500.0, "--min-fragment-ms", "MEDIA_MIN_FRAGMENT_MS",
                                     "speech spans shorter than this (padded) are not sent")
    min_silence_ms: float = setting(
        300.0, "--min-silence-ms", "MEDIA_MIN_SILENCE_MS",
        "cap on the pause that ends a speech fragment (shorter for short D: 60 ms per second of D, at least "
        "150 ms)")
    late_start_ms: float = setting(
        600.0, "--late-start-ms", "MEDIA_LATE_START_MS",
        "a dub that would miss its span's start may start up to this much later (at most 40 % of the span) "
        "and be as much shorter, instead of a fallback; 0 = never (0–2000)", ge=0, le=2000)
    speech_padding_ms: float = setting(150.0, "--speech-padding-ms", "MEDIA_SPEECH_PADDING_MS",
                                       "audio kept before and after detected speech (0–1000)", ge=0, le=1000)
    vad_threshold: float = setting(0.5, "--vad-threshold", "MEDIA_VAD_THRESHOLD",
                                   "Silero speech probability threshold (0–1]", gt=0, le=1)
    duck_gain_db: float = setting(-14.0, "--duck-gain-db", "MEDIA_DUCK_GAIN_DB",
                                  "gain of the original under the dub in `duck` mode (-60–0)", **DUCK_GAIN_DB)
    default_mix: Mode = setting(Mode.DUCK, "--mix", "MEDIA_MIX",
                                "mix of hook-started streams: `duck`, `replace`, `passthrough`")
    default_source_language: str = setting("en", "--source-language", "MEDIA_SOURCE_LANGUAGE",
                                           "source language of hook-started streams", pattern=LANGUAGE_PATTERN)
    default_target_languages: Languages = setting(
        ("es",), "--target-languages", "MEDIA_TARGET_LANGUAGES",
        "comma-separated targets of hook-started streams without `?lang=`", min_length=1)
    allowed_hosts: HostList = setting(
        (), "--allowed-hosts", "MEDIA_ALLOWED_HOSTS",
        "comma-separated Host names the service answers to, on every route (`/metrics` and `/health` too: "
        "DNS-rebinding guard); with `--redis-url` also the host of `--advertise-url` (what other replicas and "
        "Prometheus reach it at); unset = any")
    input_retry_s: float = setting(1.0, None, None, "pause before an input is opened again", gt=0)
    input_wait_timeout_s: float = setting(
        300.0, "--input-wait-timeout", "MEDIA_INPUT_WAIT_TIMEOUT",
        "a stream whose input never connects ends (and is removed) after this; 0 = wait forever", ge=0)
    # Limits (a client must not be able to exhaust the machine); refused with `limit_reached`.
    max_streams: int = setting(
        16, "--max-streams", "MEDIA_MAX_STREAMS",
        "running streams (1–1000); one more is refused with 503 `limit_reached` (and `Retry-After`)", ge=1, le=1000)
    max_languages: int = setting(
        8, "--max-languages", "MEDIA_MAX_LANGUAGES",
        f"target languages per stream (1–{MAX_LANGUAGES}); more: 400 `limit_reached`", ge=1, le=MAX_LANGUAGES)
    max_preview_viewers: int = setting(
        8, "--max-preview-viewers", "MEDIA_MAX_PREVIEW_VIEWERS",
        "preview viewers per stream (1–1000); more: 503 `limit_reached`", ge=1, le=1000)
    max_preview_viewers_total: int = setting(32, "--max-preview-viewers-total", "MEDIA_MAX_PREVIEW_VIEWERS_TOTAL",
                                             "preview viewers over all streams (1–10000)", ge=1, le=10000)
    max_caption_feeds: int = setting(
        16, "--max-caption-feeds", "MEDIA_MAX_CAPTION_FEEDS",
        "open caption feeds (SSE) per stream (1–1000); more: 503 `limit_reached`", ge=1, le=1000)
    max_caption_feeds_per_client: int = setting(
        16, "--max-caption-feeds-per-client", "MEDIA_MAX_CAPTION_FEEDS_PER_CLIENT",
        "open caption feeds per client address over all streams (1–1000; a dashboard opens one per stream; "
        "behind a reverse proxy every client has the proxy's address unless it is in `--trusted-proxies`)", ge=1, le=1000)
    trusted_proxies: NetworkList = setting(
        (), "--trusted-proxies", "MEDIA_TRUSTED_PROXIES",
        "comma-separated addresses or networks (`10.0.0.0/8`) of reverse proxies in front of the API (an "
        "ingress, the compose stack's `api`): a request from one counts against the client its "
        "`X-Forwarded-For` names (the right-most address that is not a trusted proxy) for the per-client "
        "caps; unset = every request counts against its connection's address")
    max_caption_feeds_total: int = setting(64, "--max-caption-feeds-total", "MEDIA_MAX_CAPTION_FEEDS_TOTAL",
                                           "open caption feeds over all streams (1–10000)", ge=1, le=10000)
    mediamtx_api: str | None = setting(
        None, "--mediamtx-api", "MEDIA_MEDIAMTX_API",
        "MediaMTX control API: at start and every `--reconcile-interval`, every published `<app>/<name>/in` "
        "without a stream gets one (restarts, lost hooks); a stream stopped over the API is not restarted "
        "while its path stays published")
    reconcile_interval_s: float = setting(10.0, "--reconcile-interval", "MEDIA_RECONCILE_INTERVAL",
                                          "how often the MediaMTX path list is read (0.2–3600)", ge=0.2, le=3600)
    redis_url: str | None = setting(
        None, "--redis-url", "MEDIA_REDIS_URL",
        "Redis of a cluster of media-service replicas (`redis://host:6379/0`): each stream has one owner "
        "(a lease), any replica answers the API and the hooks, a dead replica's streams restart elsewhere "
        "([scale-out.md](scale-out.md)); unset = this process runs alone", secret=True)
    lease_ttl_s: float = setting(3.0, "--lease-ttl", "MEDIA_LEASE_TTL",
                                 "stream lease TTL with `--redis-url`: an owner that cannot renew stops writing "
                                 "within it, a dead owner's streams restart elsewhere after it (1–30 s)", ge=1, le=30)
    advertise_url: str | None = setting(
        None, "--advertise-url", "MEDIA_ADVERTISE_URL",
        "with `--redis-url`: the URL other replicas reach this one's API at; unset = `http://<host>:<port>` "
        "(a wildcard host: this machine's address)")
    media_root: str | None = setting(
        None, "--media-root", "MEDIA_ROOT",
        "directory that file inputs and outputs must be under (`..` and symlinks resolved); unset = file URLs "
        "refused with 400")
    media_hosts: HostList = setting(
        (), "--media-hosts", "MEDIA_HOSTS",
        "comma-separated `host` or `host:port` that rtmp/srt inputs and outputs may reach (SSRF guard; include "
        "the `--rtmp-base-url` host)")
    shutdown_drain_s: float = setting(
        15.0, "--shutdown-drain", "MEDIA_SHUTDOWN_DRAIN",
        "on SIGTERM/SIGINT every stream stops reading and plays out what is buffered (at most D + 3 s, and at "
        "most this long), closing its outputs cleanly; 0 = stop at once (0–120 s)", ge=0, le=120)
    hls_js: str | None = setting(
        None, "--hls-js", "MEDIA_HLS_JS",
        "hls.js file (`hls.min.js`) served at `/assets/hls.min.js` for the dashboard's HLS player (`make setup` "
        "installs it from npm into `.node/node_modules/hls.js/dist/`); unset: the dashboard has no HLS player")
    log_level: LogLevel = setting("INFO", "--log-level", "MEDIA_LOG_LEVEL", "Python log level")

    def target_policy(self) -> TargetPolicy:
        return TargetPolicy(media_root=self.media_root, hosts=self.media_hosts)

    @field_validator("mediamtx_api", "advertise_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s):// URL, got {redact_url(v)!r}")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {redact_url(v)!r}")
        return v

    @field_validator("sts_url")
    @classmethod
    def _sts_urls(cls, v: str) -> str:
        urls = [u.strip() for u in v.split(",")]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"must be http(s):// URLs (comma-separated), got {redact_url(url)!r}")
        return ",".join(urls)

    @field_validator("rtmp_base_url")
    @classmethod
    def _rtmp(cls, v: str) -> str:
        if not v.startswith(("rtmp://", "rtmps://")):
            raise ValueError(f"must start with rtmp://, got {redact_url(v)!r}")
        return v

    @field_validator("api_token")
    @classmethod
    def _api_token(cls, v: str | None) -> str | None:
        if v is not None and (weak := weak_token_reason(v)):
            raise ValueError(f"is not usable: {weak} (or leave it unset to have one generated)")
        return v

    @field_validator("viewer_token", "hook_token")
    @classmethod
    def _viewer_token(cls, v: str | None) -> str | None:
        if v is not None and (weak := weak_token_reason(v)):
            raise ValueError(f"is not usable: {weak}")
        return v

    @field_validator("hls_js")
    @classmethod
    def _hls_js(cls, v: str | None) -> str | None:
        if v is not None and not os.path.isfile(v):
            raise ValueError(f"must be an existing file, got {v!r}")
        return v

    @field_validator("media_root")
    @classmethod
    def _media_root(cls, v: str | None) -> str | None:
        if v is not None and not os.path.isdir(v):
            raise ValueError(f"must be an existing directory, got {v!r}")
        return v

    @model_validator(mode="after")
    def _together(self) -> MediaConfig:
        if not self.sts_token:
            raise ConfigError("STS_AUTH_TOKEN is not set: media-service needs the sts-service token")
        try:
            check_delay(self.output_delay_s, min_silence_cap_ms=self.min_silence_ms)
        except DelayTooShort as exc:
            raise ConfigError(f"{self.label('output_delay_s')}: {exc}") from None
        if self.viewer_token and self.viewer_token == self.api_token:
            raise ConfigError("MEDIA_VIEWER_TOKEN must differ from MEDIA_API_TOKEN (the viewer token is read-only)")
        if self.hook_token and self.hook_token in (self.api_token, self.viewer_token):
            raise ConfigError("MEDIA_HOOK_TOKEN must differ from MEDIA_API_TOKEN and MEDIA_VIEWER_TOKEN "
                              "(the hook token is good for /v1/hooks/* only)")
        if not (0 < self.min_fragment_ms < self.max_fragment_ms):
            raise ConfigError(f"{self.label('min_fragment_ms')} must be above 0 and below "
                              f"{self.label('max_fragment_ms')}, got {self.min_fragment_ms:g}")
        return self


def build_parser(environ=None):
    """The command line; each default comes from its environment variable when set (read now)."""
    return _build_parser(MediaConfig, environ)


def parse_args(argv: list[str] | None = None, environ=None) -> MediaConfig:
    return _parse(MediaConfig, argv, environ)


_DEFAULTS = MediaConfig.model_fields  # a request's defaults are the service's declared defaults


class StreamPatch(BaseModel):
    """`PATCH /v1/streams/{id}`: what may change while a stream runs (both optional)."""

    model_config = ConfigDict(extra="forbid")

    mix: Mode | None = None
    duck_gain_db: float | None = Field(None, **DUCK_GAIN_DB)


OutputKind = Literal["rtmp", "hls", "srt", "file"]
MAX_OUTPUTS = 8


class OutputSpec(BaseModel):
    """One entry of `outputs`: where, in which form, with which target languages (default: all).

    rtmp: one FLV stream per language (`{lang}` in the URL as for `output_url`); hls, srt (MPEG-TS
    over srt:// or udp://) and file (an MPEG-TS file): one stream with every listed language and
    the original as separate audio tracks (hls: renditions, with subtitles).
    """

    model_config = ConfigDict(extra="forbid")

    kind: OutputKind
    url: str
    languages: list[Language] | None = Field(None, min_length=1, max_length=MAX_LANGUAGES)

    @model_validator(mode="after")
    def _url(self) -> OutputSpec:
        self.url = check_url_syntax(self.url, output=True, kind=self.kind, what="url")  # the URL to open
        return self


@dataclass(frozen=True)
class Track:
    """One audio track of an output: `mix` is the target language whose mix it carries, None for
    the original; `language` is its language tag (the source language for the original)."""

    mix: str | None
    language: str


@dataclass(frozen=True)
class PlannedOutput:
    """One writer the playout keeps open: `key` names it in snapshots and events (for `output_url`,
    the language code it carries)."""

    key: str
    kind: str
    url: str
    tracks: tuple[Track, ...]


def per_language_url(url: str, languages: list[str], lang: str) -> str:
    """`{lang}` replaced; without it the first language gets `url`, the others `<url>_<lang>`."""
    if "{lang}" in url:
        return url.replace("{lang}", lang)
    if len(languages) == 1 or lang == languages[0]:
        return url
    return f"{url.rstrip('/')}_{lang}"


class StreamRequest(BaseModel):
    """Body of POST /v1/streams (and what a publish hook builds)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="stream id; derived from the input URL when absent")
    input_url: str
    output_url: str | None = Field(None, description="may contain {lang}; one RTMP/FLV output per language")
    outputs: list[OutputSpec] | None = Field(None, min_length=1, max_length=MAX_OUTPUTS,
                                             description="instead of output_url: outputs of any kind")
    # The built-in defaults of --source-language, --target-languages and --mix (not their
    # configured values: those apply to hook-started streams); gain and delay: the service's.
    source_language: str = Field(_DEFAULTS["default_source_language"].default, pattern=LANGUAGE_PATTERN)
    target_languages: list[Language] = Field(
        default_factory=lambda: list(_DEFAULTS["default_target_languages"].default),
        min_length=1, max_length=MAX_LANGUAGES)
    mix: Mode = _DEFAULTS["default_mix"].default
    duck_gain_db: float | None = Field(None, description="default: --duck-gain-db", **DUCK_GAIN_DB)
    output_delay_s: float | None = Field(None, description="default: --output-delay", **DELAY_S)

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
    def _output(cls, v: str | None) -> str | None:
        return v if v is None else check_url_syntax(v, output=True)

    @model_validator(mode="after")
    def _outputs(self) -> StreamRequest:
        if (self.output_url is None) == (self.outputs is None):
            raise ValueError("give either output_url (one RTMP output per language) or outputs (a list of "
                             "{kind, url, languages}), not both" if self.output_url else
                             "output_url or outputs is required")
        targets = list(self.target_languages)
        for i, spec in enumerate(self.outputs or ()):
            for lang in spec.languages or ():
                if lang not in targets:
                    raise ValueError(f"outputs.{i}.languages: {lang!r} is not one of target_languages {targets}")
            if spec.languages and len(set(spec.languages)) != len(spec.languages):
                raise ValueError(f"outputs.{i}.languages: a language is listed twice")
        if sum(1 for spec in self.outputs or () if spec.kind == "hls") > 1:
            raise ValueError("outputs: at most one output of kind hls per stream")
        if len({(spec.kind, spec.url) for spec in self.outputs or ()}) != len(self.outputs or ()):
            raise ValueError("outputs: the same kind and url are listed twice")
        return self

    def output_plan(self) -> list[PlannedOutput]:
        """Every writer this stream keeps open, in order (see PlannedOutput)."""
        targets = list(self.target_languages)
        if self.outputs is None:
            return [PlannedOutput(lang, "rtmp", per_language_url(self.output_url, targets, lang), (Track(lang, lang),))
                    for lang in targets]
        plan = []
        for i, spec in enumerate(self.outputs):
            langs = list(spec.languages or targets)
            if spec.kind == "rtmp":
                plan += [PlannedOutput(f"rtmp.{i}.{lang}", "rtmp", per_language_url(spec.url, langs, lang),
                                       (Track(lang, lang),)) for lang in langs]
            else:  # every language and the original in one stream; the first target is the default
                tracks = tuple(Track(lang, lang) for lang in langs) + (Track(None, self.source_language),)
                plan.append(PlannedOutput(f"{spec.kind}.{i}", spec.kind, spec.url, tracks))
        return plan

    def has_hls(self) -> bool:
        return any(spec.kind == "hls" for spec in self.outputs or ())

    def output_for(self, lang: str) -> str | None:
        """The RTMP/FLV output that carries `lang` alone (what the preview decodes), if any."""
        return next((p.url for p in self.output_plan() if p.kind == "rtmp" and p.tracks[0].mix == lang), None)

    def stream_id(self) -> str:
        if self.id:
            return self.id
        tail = self.input_url.rstrip("/").split("://", 1)[-1].split("/", 1)[-1]
        parts = [p for p in tail.split("/") if p and p not in ("live", "in", "_definst_")]
        candidate = re.sub(r"[^A-Za-z0-9._-]", "-", "-".join(parts)).lstrip("._-")[:128]
        return candidate or "stream"

    def targets(self) -> list[tuple[str, bool, str | None, str]]:
        """Every URL this request opens, as (url, is_output, output kind, field name for messages)."""
        if self.outputs is None:
            return [(self.input_url, False, None, "input_url")] + [
                (p.url, True, None, "output_url") for p in self.output_plan()]
        return [(self.input_url, False, None, "input_url")] + [
            (p.url, True, p.kind, f"outputs.{p.key.split('.')[1]}.url") for p in self.output_plan()]
