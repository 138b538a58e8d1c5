"""HLS subtitle renditions (hls.py): segments on the output clock, the sliding window, cue times."""

from __future__ import annotations

import os

from media_service.media_io.captions import CaptionStore
from media_service.media_io.hls import SERVABLE, SubtitleRenditions, servable


def test_segments_follow_the_output_and_slide(tmp_path):
    captions = CaptionStore("en", ["es"], 3500.0)
    # a span at 5.0-6.5 s of the media timeline: cue times 8.5-10.0 s on the output timeline (+ D)
    captions.add_span(5000.0, 1500.0, "a <b> & c", {"es": "hola"})
    origin_s = 100.0  # output time of timeline sample 0
    subs = SubtitleRenditions(str(tmp_path), ["es", "en"], captions,
                              cue_offset_ms=lambda: origin_s * 1000.0 - 3500.0, segment_s=2.0, list_size=3)
    subs.advance(origin_s)  # the first frame: empty playlists exist at once
    assert "#EXT-X-MEDIA-SEQUENCE:0" in (tmp_path / "subs-es" / "index.m3u8").read_text()
    subs.advance(origin_s + 5.99)  # segments 0 and 1 ended, 2 not yet
    assert sorted(os.listdir(tmp_path / "subs-es")) == ["index.m3u8", "seg0.vtt", "seg1.vtt"]
    subs.advance(origin_s + 6.0)  # segment 2 (104-106 s) holds the cue at 105.0-106.5
    seg = (tmp_path / "subs-en" / "seg2.vtt").read_text()
    assert seg.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n\n")
    assert "00:01:45.000 --> 00:01:46.500\na &lt;b&gt; &amp; c\n" in seg
    subs.advance(origin_s + 8.0)  # the cue overlaps segment 3 too: repeated there
    assert "00:01:45.000 --> 00:01:46.500\nhola" in (tmp_path / "subs-es" / "seg3.vtt").read_text()
    assert "-->" not in (tmp_path / "subs-es" / "seg1.vtt").read_text()
    subs.advance(origin_s + 14.0)  # 7 segments: the window holds the last 3, files a window longer
    playlist = (tmp_path / "subs-es" / "index.m3u8").read_text()
    assert "#EXT-X-MEDIA-SEQUENCE:4" in playlist and "seg3.vtt" not in playlist and "#EXT-X-ENDLIST" not in playlist
    assert not (tmp_path / "subs-es" / "seg0.vtt").exists() and (tmp_path / "subs-es" / "seg1.vtt").exists()
    subs.finish(origin_s + 15.0)  # a 1 s last segment, then the end
    playlist = (tmp_path / "subs-es" / "index.m3u8").read_text()
    assert playlist.endswith("#EXTINF:1.000,\nseg7.vtt\n#EXT-X-ENDLIST\n")


def test_only_hls_files_are_served(tmp_path):
    (tmp_path / "video").mkdir()
    (tmp_path / "video" / "seg00001.ts").write_bytes(b"x")
    assert servable(str(tmp_path), "video/seg00001.ts") == (str(tmp_path / "video" / "seg00001.ts"), "video/mp2t")
    assert servable(str(tmp_path), "video/seg00002.ts") is None  # not there (left the window)
    for name in ("../etc/passwd", "video/../../x.ts", "video/index.m3u8.tmp", "other/seg1.ts", "/video/seg1.ts",
                 "video/seg1.ts/x"):
        assert not SERVABLE.match(name), name
