"""Which input and output URLs a stream may use, and which ffmpeg protocols may open them.

Why: libavformat speaks dozens of protocols (http, gopher, unix, data, ftp, …). An API client must
reach only RTMP/SRT servers and, when the operator configures a media root, files under it; every
open (input, relay output, preview) also carries a protocol whitelist so a URL that slipped past
the checks still cannot reach anything else.

Two layers:
- `check_url_syntax` needs no configuration (used by the request model): scheme, length,
  whitespace, srt/udp option keys, no `#` or second `?` in a network URL (the URL kept is
  rebuilt from the checked parts: what was checked is what is opened), no nested scheme inside a
  file path.
- `TargetPolicy.check` needs the service's configuration (used before a stream starts): files
  only under `--media-root` (symlinks and `..` resolved), hosts only from `--media-hosts` when set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .redaction import redact_url

MAX_URL_LENGTH = 2048
INPUT_SCHEMES = ("rtmp", "rtmps", "srt", "file")
OUTPUT_SCHEMES = ("rtmp", "rtmps", "file")  # `output_url`, and `outputs` of kind rtmp (FLV, one language each)
# What each kind of `outputs` entry may point at (docs/api.md, "Outputs"): srt = MPEG-TS over srt/udp,
# file = MPEG-TS file, hls = `hls://` (served by this service) or a directory.
KIND_SCHEMES = {"rtmp": OUTPUT_SCHEMES, "srt": ("srt", "udp"), "file": ("file",), "hls": ("hls", "file")}
HLS_SERVED = "hls://"  # an hls output kept in a temporary directory, served under /v1/streams/{id}/hls/
# What libavformat may open for each scheme (rtmps runs rtmp over tls over tcp).
PROTOCOL_WHITELIST = {
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tls,tcp",
    "srt": "srt",
    "udp": "udp",
    "file": "file",
}
# srt options an API client may set; `mode` only as caller (a listener would open a port here).
SRT_QUERY_KEYS = frozenset({"streamid", "passphrase", "pbkeylen", "latency", "rcvlatency", "peerlatency",
                            "connect_timeout", "timeout", "mode"})
# udp output options an API client may set (no localaddr/localport: which socket this host uses is ours).
UDP_QUERY_KEYS = frozenset({"pkt_size", "ttl", "buffer_size"})
OPTION_KEYS = {"srt": SRT_QUERY_KEYS, "udp": UDP_QUERY_KEYS}
_NESTED_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")


class TargetRefused(ValueError):
    """A URL this service will not open; the message says why (and has no secrets in it)."""


def scheme_of(url: str) -> str:
    """`rtmp`, `srt`, … or `file` for an absolute path."""
    if url.startswith("/"):
        return "file"
    return url.split("://", 1)[0].lower() if "://" in url else ""


def file_path(url: str) -> str:
    """The local path of a `file://` URL or absolute path."""
    return url[len("file://"):] if url.startswith("file://") else url


def protocol_whitelist(url: str) -> str:
    """The `protocol_whitelist` option for opening `url` with libavformat (PyAV or the ffmpeg CLI)."""
    return PROTOCOL_WHITELIST.get(scheme_of(url), "none")


def check_url_syntax(url: str, *, output: bool, kind: str | None = None, what: str | None = None) -> str:
    """The URL to open if `url`'s form is acceptable for an input (or an output of `kind`: None
    for `output_url`): a network URL rebuilt from its checked parts; raise TargetRefused naming
    why (`what` names the field in the message)."""
    what = what or ("output_url" if output else "input_url")
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"{what} is {len(url)} characters long; at most {MAX_URL_LENGTH}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise TargetRefused(f"{what} contains whitespace or control characters")
    scheme = scheme_of(url)
    allowed = (KIND_SCHEMES[kind] if kind else OUTPUT_SCHEMES) if output else INPUT_SCHEMES
    if scheme not in allowed:
        names = ", ".join(f"{s}://" for s in allowed if s != "file")
        names += " or an absolute path" if "file" in allowed else ""
        kind_note = f" for an output of kind {kind!r}" if kind else ""
        raise TargetRefused(f"{what}: unsupported URL {redact_url(url)!r}{kind_note}: use {names}")
    if scheme == "hls":
        if url != HLS_SERVED:
            raise TargetRefused(f"{what}: an hls output is {HLS_SERVED!r} (served by this service) or a directory path")
        return url
    if scheme == "file":
        path = file_path(url)
        if not path.startswith("/"):
            raise TargetRefused(f"{what}: a file URL needs an absolute path (file:///dir/name.flv)")
        if _NESTED_SCHEME.match(path.lstrip("/")):
            raise TargetRefused(f"{what}: a file path may not contain another URL scheme")
        return url
    # FFmpeg reads srt/udp options from the first `?` anywhere in the URL, Python's urlsplit stops
    # the query at `#`: with neither a `#` nor a second `?`, both see the same option string.
    if "#" in url:
        raise TargetRefused(f"{what}: a network URL may not contain `#`")
    if url.count("?") > 1:
        raise TargetRefused(f"{what}: a network URL may not contain a second `?`")
    parts = urlsplit(url)
    if not parts.hostname:
        raise TargetRefused(f"{what} {redact_url(url)!r} has no host")
    query = parts.query
    if scheme in OPTION_KEYS:
        query = _checked_options(scheme, query, what)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _checked_options(scheme: str, query: str, what: str) -> str:
    """The option string of an srt/udp URL, rebuilt from the pairs checked here.

    Split as FFmpeg splits it (`av_find_info_tag`: pairs at `&`, the key up to the first `=`,
    keys never decoded), so a key is checked as FFmpeg will read it; values are kept as written.
    """
    allowed = OPTION_KEYS[scheme]
    pairs = [pair for pair in query.split("&") if pair]
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in allowed:
            raise TargetRefused(f"{what}: {scheme} option {key!r} is not allowed (allowed: {sorted(allowed)})")
        if scheme == "srt" and key == "mode" and value != "caller":
            raise TargetRefused(f"{what}: srt mode must be caller (this service does not listen)")
    return "&".join(pairs)


@dataclass(frozen=True)
class TargetPolicy:
    """Where streams may read and write, from the service configuration."""

    media_root: str | None = None  # files only under this directory; None: no file targets
    hosts: tuple[str, ...] = ()  # host or host:port allowed for rtmp/srt; empty: any

    def check(self, url: str, *, output: bool, kind: str | None = None, what: str | None = None) -> str:
        """Return the URL to open (a file URL resolved to its real path); raise TargetRefused."""
        what = what or ("output_url" if output else "input_url")
        check_url_syntax(url, output=output, kind=kind, what=what)
        if scheme_of(url) == "hls":
            return url  # a directory of our own
        if scheme_of(url) == "file":
            return self._check_file(file_path(url), what)
        if self.hosts:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            with_port = f"{host}:{parts.port}" if parts.port else host
            if host not in self.hosts and with_port not in self.hosts:
                raise TargetRefused(f"{what}: host {host!r} is not one of --media-hosts")
        return url

    def _check_file(self, path: str, what: str) -> str:
        if not self.media_root:
            raise TargetRefused(f"{what}: file inputs and outputs are off; start media-service with "
                                "--media-root DIR (MEDIA_ROOT) to allow files under DIR")
        root = os.path.realpath(self.media_root)
        real = os.path.realpath(path)  # resolves `..` and every symlink that exists
        if os.path.commonpath([root, real]) != root or real == root:
            raise TargetRefused(f"{what}: {path!r} is outside the media root")
        return real
