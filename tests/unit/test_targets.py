"""URL policy and protocol whitelists (issue 12 #2, issue 9 #1): logic, plus one real libavformat open."""

from __future__ import annotations

import pytest
from media_service.media_io.ingest import InputError, open_input
from media_service.targets import TargetPolicy, TargetRefused, check_url_syntax, protocol_whitelist


def test_each_scheme_opens_only_its_own_protocols():
    assert protocol_whitelist("rtmp://h/live/x") == "rtmp,tcp"
    assert protocol_whitelist("rtmps://h/live/x") == "rtmps,rtmp,tls,tcp"
    assert protocol_whitelist("/srv/media/a.flv") == protocol_whitelist("file:///srv/a.flv") == "file"
    assert protocol_whitelist("http://h/x") == "none"


def test_libavformat_refuses_a_protocol_outside_the_whitelist():
    # Even if a URL got past the request checks, the open itself cannot reach http.
    with pytest.raises(InputError, match="protocol not allowed"):
        open_input("http://127.0.0.1:9/latest/meta-data", timeout_s=1)


def test_syntax_accepts_the_usual_urls():
    for url in ("rtmp://127.0.0.1:1935/live/a/in?user=u&pass=p", "rtmps://h/app/key",
                "srt://h:9000?streamid=read:live/a&passphrase=0123456789&mode=caller", "/srv/a.flv"):
        assert check_url_syntax(url, output=False) == url


def test_host_allow_list_guards_rtmp_and_srt():
    policy = TargetPolicy(hosts=("mediamtx", "127.0.0.1:1935"))
    assert policy.check("rtmp://mediamtx/live/a", output=True)
    assert policy.check("rtmp://127.0.0.1:1935/live/a", output=False)
    for url in ("rtmp://127.0.0.1:1936/live/a", "rtmp://169.254.169.254/x", "srt://evil:9000"):
        with pytest.raises(TargetRefused, match="--media-hosts"):
            policy.check(url, output=False)


def test_media_root_resolves_dot_dot_and_refuses_the_root_itself(tmp_path):
    policy = TargetPolicy(media_root=str(tmp_path))
    assert policy.check(f"{tmp_path}/sub/../a.flv", output=True) == str(tmp_path / "a.flv")
    for url in (str(tmp_path), f"file://{tmp_path}/../x.flv"):
        with pytest.raises(TargetRefused, match="outside the media root"):
            policy.check(url, output=True)
    with pytest.raises(TargetRefused, match="--media-root"):
        TargetPolicy().check(f"{tmp_path}/a.flv", output=True)


# FFmpeg takes srt/udp options from the first `?` anywhere in the URL; Python puts what follows a
# `#` in the fragment, so the allow-list never saw these (issue 24 #1).
SMUGGLED = ("srt://127.0.0.1:9000#?mode=listener", "udp://127.0.0.1:9#?localport=53&localaddr=127.0.0.1",
            "srt://127.0.0.1:9000?latency=20?mode=listener", "udp://127.0.0.1:9?ttl=2?localport=53",
            "rtmp://127.0.0.1/live/x#frag")


@pytest.mark.parametrize("url", SMUGGLED)
def test_options_cannot_hide_behind_a_fragment_or_a_second_question_mark(url):
    with pytest.raises(TargetRefused, match=r"`#`|second `\?`"):
        check_url_syntax(url, output=True, kind="rtmp" if url.startswith("rtmp") else "srt")


def test_the_url_opened_is_rebuilt_from_the_checked_options():
    # What FFmpeg reads (av_find_info_tag: pairs split at `&`, key up to `=`) is what was checked:
    # empty pairs are dropped, nothing is decoded or re-encoded on the way.
    assert check_url_syntax("srt://h:9000?latency=200&&passphrase=ab%2Bcd+ef&", output=False) \
        == "srt://h:9000?latency=200&passphrase=ab%2Bcd+ef"
    assert check_url_syntax("udp://h:9?pkt_size=1316", output=True, kind="srt") == "udp://h:9?pkt_size=1316"
    with pytest.raises(TargetRefused, match="'m%6Fde' is not allowed"):  # FFmpeg does not decode keys either
        check_url_syntax("srt://h:9000?m%6Fde=listener", output=False)
    with pytest.raises(TargetRefused, match="mode must be caller"):
        check_url_syntax("srt://h:9000?mode=calle%72", output=False)


def test_the_request_keeps_the_rebuilt_url():
    from media_service.config import StreamRequest

    req = StreamRequest(input_url="srt://h:9000?latency=200&", outputs=[{"kind": "srt", "url": "udp://h:9?ttl=2&&"}])
    assert req.input_url == "srt://h:9000?latency=200"
    assert req.outputs[0].url == "udp://h:9?ttl=2"
