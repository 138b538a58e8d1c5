"""Which child publishes an output (relay.relay_command), and how srt_relay reads an srt URL."""

from __future__ import annotations

import pytest
from media_service.media_io import relay
from media_service.media_io.relay import RelaySettings, RelayStartError, relay_command
from media_service.media_io.relay_main import URL_ENV
from media_service.media_io.srt_relay import (
    SRTO_CONNTIMEO,
    SRTO_LATENCY,
    SRTO_PASSPHRASE,
    SRTO_PEERIDLETIMEO,
    SRTO_SNDTIMEO,
    SRTO_STREAMID,
    SrtError,
    srt_options,
)

SRT_URL = "srt://h:9000?streamid=publish:live/a&passphrase=0123456789abc"


def _installed(monkeypatch, *, libav=("rtmp", "rtmps", "udp"), libsrt=True, ffmpeg=True):
    monkeypatch.setattr(relay, "libav_output_protocols", lambda: frozenset(libav))
    monkeypatch.setattr(relay, "libsrt_installed", lambda: libsrt)
    monkeypatch.setattr(relay.shutil, "which", lambda name: "/usr/bin/ffmpeg" if ffmpeg and name == "ffmpeg" else None)


def test_rtmp_goes_to_relay_main_with_the_url_in_the_environment(monkeypatch):
    _installed(monkeypatch)
    cmd, env = relay_command("rtmp://h/live/key", "flv", RelaySettings())
    assert cmd[1:3] == ["-m", "media_service.media_io.relay_main"] and env[URL_ENV] == "rtmp://h/live/key"
    assert not any("key" in arg for arg in cmd)


def test_srt_goes_to_srt_relay_before_ffmpeg_and_keeps_the_url_off_argv(monkeypatch):
    _installed(monkeypatch)
    cmd, env = relay_command(SRT_URL, "mpegts", RelaySettings(rw_timeout_s=2.5))
    assert cmd[1:] == ["-m", "media_service.media_io.srt_relay", "--rw-timeout-us", "2500000"]
    assert env[URL_ENV] == SRT_URL


def test_srt_without_libsrt_falls_back_to_ffmpeg_then_says_what_to_install(monkeypatch):
    _installed(monkeypatch, libsrt=False)
    cmd, _ = relay_command(SRT_URL, "mpegts", RelaySettings())
    assert cmd[0] == "/usr/bin/ffmpeg" and cmd[-1] == SRT_URL
    _installed(monkeypatch, libsrt=False, ffmpeg=False)
    with pytest.raises(RelayStartError, match="libsrt1.5-gnutls.*or ffmpeg"):
        relay_command(SRT_URL, "mpegts", RelaySettings())


def test_srt_options_are_read_in_ffmpeg_units():
    host, port, opts = srt_options(SRT_URL + "&latency=200000&connect_timeout=1500", 5_000_000)
    assert (host, port) == ("h", 9000)
    assert opts[SRTO_LATENCY] == 200 and opts[SRTO_CONNTIMEO] == 1500  # µs -> ms; ms kept
    assert opts[SRTO_STREAMID] == b"publish:live/a" and opts[SRTO_PASSPHRASE] == b"0123456789abc"
    assert opts[SRTO_SNDTIMEO] == opts[SRTO_PEERIDLETIMEO] == 5000
    _, _, opts = srt_options("srt://h:9000?timeout=2000000&streamid=a%3Ab+c", 5_000_000)
    assert opts[SRTO_SNDTIMEO] == opts[SRTO_CONNTIMEO] == 2000 and opts[SRTO_STREAMID] == b"a:b c"
    with pytest.raises(SrtError, match="caller"):
        srt_options("srt://h:9000?mode=listener", 5_000_000)
