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
