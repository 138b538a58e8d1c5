"""Broadcast outputs (issue 10): one ingest, every kind of output at once, read back by ffmpeg.

A stream is started over REST with `outputs` of kinds rtmp (Spanish only), hls (served by the
media-service), srt (through srt_relay, libsrt, the path the image has: to an ffmpeg SRT listener
that records it, with a passphrase, a stream id and a latency in the URL) and file (MPEG-TS under the media
root), then the first 12 s of the short fixture are published to its input once. Every output is
read back with ffprobe/ffmpeg: the H.264 packets are the input's (compared NAL by NAL: MPEG-TS
carries Annex B with access unit delimiters, FLV/MP4 length-prefixed NALs), each audio track has
its language, sync markers (a white flash with a 1 kHz beep) line up within 5 ms on every audio
track, and the HLS subtitle renditions carry the dubbed spans' text at the spans' output times.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from livedub_testkit import analysis
from livedub_testkit.services import free_port, http_get
from livedub_testkit.stack import LocalStack
from media_service.media_io.relay import RelaySettings, relay_command

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SID = "bcast"
SRT_PASSPHRASE = "bcast-passphrase-0123"
TARGETS = ["es", "ca"]
SECONDS = 12.0  # of the 20 s fixture: 3 markers, 3 speech spans
AV_TOLERANCE_S = 0.005
CUE_TOLERANCE_S = 0.100


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("media-root")
    with LocalStack(workdir=tmp_path_factory.mktemp("stack"), media_args=("--media-root", str(root))) as s:
        s.root = root
        yield s


def fetch(stack, path: str) -> tuple[int, str, bytes]:
    return http_get(stack.media.url + path, stack.api_token)


def ffmpeg_copy(stack, inputs: list[str], out, maps: list[str]) -> None:
    """Copy HLS playlists served by the media-service (with the API token) into one local file."""
    cmd = [shutil.which("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for path in inputs:
        cmd += ["-headers", f"Authorization: Bearer {stack.api_token}\r\n", "-i", stack.media.url + path]
    cmd += [arg for m in maps for arg in ("-map", m)] + ["-c", "copy", "-copyts", str(out)]
    subprocess.run(cmd, check=True, timeout=30)


def ffprobe_streams(target: str, *extra: str) -> list[dict]:
    res = subprocess.run([shutil.which("ffprobe"), "-v", "error", *extra, "-show_streams", "-of", "json", target],
                         capture_output=True, text=True, timeout=30, check=True)
    return json.loads(res.stdout)["streams"]


def nal_units(payload: bytes) -> list[bytes]:
    """The NAL units of one H.264 packet, Annex B or 4-byte length-prefixed, without the ones a
    container may add or move (access unit delimiters, SPS/PPS repeated in band)."""
    if payload[:4] == b"\x00\x00\x00\x01" or payload[:3] == b"\x00\x00\x01":
        units = [u.lstrip(b"\x00") for u in re.split(b"\x00\x00\x01", payload)]
        units = [u for u in units if u]
        # a NAL may end with zero bytes that belong to the next 4-byte start code
        units = [u.rstrip(b"\x00") if i < len(units) - 1 else u for i, u in enumerate(units)]
    else:
        units, i = [], 0
        while i + 4 <= len(payload):
            n = int.from_bytes(payload[i:i + 4], "big")
            units.append(payload[i + 4:i + 4 + n])
            i += 4 + n
    return [u for u in units if u and (u[0] & 0x1F) not in (7, 8, 9)]


def assert_same_video(src_packets, got_packets) -> int:
    """Every output packet is the input's next one, NAL for NAL; returns the first one's index."""
    assert got_packets, "no video packets"
    src = [nal_units(p) for _, p in src_packets]
    first = src.index(nal_units(got_packets[0][1]))
    for i, (t, payload) in enumerate(got_packets):
        assert nal_units(payload) == src[first + i], f"video packet {i} (at {t:.3f} s) differs from the input's"
    return first


def assert_av_in_sync(path, min_markers: int) -> list[tuple[float, float]]:
    offsets = analysis.av_offsets(path)
    assert len(offsets) >= min_markers, (path, offsets)
    assert max(abs(o) for _, o in offsets) <= AV_TOLERANCE_S, (path, offsets)
    return offsets


def wait_until_closed(stack, events: list[dict], writers: int, timeout: float = 15.0) -> list[dict]:
    """More events until `writers` outputs have closed (they close in the same round)."""
    since = max(e["seq"] for e in events)
    more: list[dict] = []
    deadline = time.monotonic() + timeout
    while sum(1 for e in events + more if e["type"] == "output_closed") < writers and time.monotonic() < deadline:
        _, answer = stack.media.api("GET", f"/v1/streams/{SID}/events?since={since}&wait=1")
        more += answer["events"]
        since = answer["last_seq"]
    return more


def wait_event(stack, kind: str, since: int = 0, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    while time.monotonic() < deadline:
        _, answer = stack.media.api("GET", f"/v1/streams/{SID}/events?since={since}&wait=2")
        seen += answer["events"]
        since = answer["last_seq"]
        if any(e["type"] == kind for e in answer["events"]):
            return seen
    raise TimeoutError(f"no {kind} event; saw {[e['type'] for e in seen]}\n{stack.media.logs(30)}")


@pytest.fixture(scope="module")
def run(stack, short_media, tmp_path_factory):
    """One stream with every output kind, published once; what the tests read afterwards."""
    tmp = tmp_path_factory.mktemp("bcast")
    subprocess.run([shutil.which("ffmpeg"), "-hide_banner", "-loglevel", "error", "-i", str(short_media.path), "-t", "1",
                    "-map", "0", "-c", "copy", "-f", "flv", str(tmp / "head.flv")], check=True, timeout=30)
    audio_origin_s = analysis.probe(tmp / "head.flv")["audio"]["start_time"] or 0.0
    srt_port = free_port()
    srt_url = f"srt://127.0.0.1:{srt_port}?streamid=publish:{SID}&passphrase={SRT_PASSPHRASE}&latency=200000"
    # The child the service starts for it: libsrt's (no ffmpeg), with the URL off its command line.
    cmd, _ = relay_command(srt_url, "mpegts", RelaySettings())
    assert cmd[1:3] == ["-m", "media_service.media_io.srt_relay"] and srt_url not in cmd, cmd
    files = {"rtmp-es": tmp / "rtmp-es.flv", "srt": tmp / "srt.ts", "file": stack.root / "bcast.ts"}
    # An SRT listener (ffmpeg) that records what the media-service sends it, and an RTMP player.
    listener = subprocess.Popen([shutil.which("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "warning", "-y",
                                 "-i", f"srt://127.0.0.1:{srt_port}?mode=listener&passphrase={SRT_PASSPHRASE}", "-map", "0", "-c", "copy",
                                 "-copyts", "-f", "mpegts", str(files["srt"])],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    recorder = analysis.record_stream(stack.url(f"{SID}/es"), files["rtmp-es"])
    outputs = [{"kind": "rtmp", "url": stack.url(f"{SID}/{{lang}}"), "languages": ["es"]},
               {"kind": "hls", "url": "hls://"},
               {"kind": "srt", "url": srt_url},
               {"kind": "file", "url": str(files["file"])}]
    body = {"id": SID, "input_url": stack.url(f"{SID}/src"), "target_languages": TARGETS, "outputs": outputs}
    pub = None
    try:
        status, snap = stack.media.api("POST", "/v1/streams", body)
        assert status == 201, snap
        pub = analysis.publish(short_media.path, stack.url(f"{SID}/src"), extra_args=["-t", f"{SECONDS}"])
        pub.wait(timeout=60)
        events = wait_event(stack, "output_closed", timeout=30)
        events += wait_until_closed(stack, events, 4)
        _, snap = stack.media.api("GET", f"/v1/streams/{SID}")
        for name in ("es", "ca", "original"):
            out = tmp / f"hls-{name}.mkv"
            ffmpeg_copy(stack, [f"/v1/streams/{SID}/hls/video/index.m3u8", f"/v1/streams/{SID}/hls/audio-{name}/index.m3u8"],
                        out, ["0:v", "1:a"])
            files[f"hls-{name}"] = out
        subs = {}
        for lang in ("es", "ca", "en"):
            _, ctype, playlist = fetch(stack, f"/v1/streams/{SID}/hls/subs-{lang}/index.m3u8")
            assert ctype.startswith("application/vnd.apple.mpegurl"), playlist
            segments = [line for line in playlist.decode().splitlines() if line and not line.startswith("#")]
            subs[lang] = [fetch(stack, f"/v1/streams/{SID}/hls/subs-{lang}/{seg}")[2].decode() for seg in segments]
        master = fetch(stack, f"/v1/streams/{SID}/hls/master.m3u8")
        video_playlist = fetch(stack, f"/v1/streams/{SID}/hls/video/index.m3u8")[2].decode()
        probe_master = ffprobe_streams(stack.media.url + f"/v1/streams/{SID}/hls/master.m3u8",
                                       "-headers", f"Authorization: Bearer {stack.api_token}\r\n")
    finally:
        if pub is not None:
            analysis.stop_process(pub)
        stack.media.api("DELETE", f"/v1/streams/{SID}")
        analysis.stop_process(recorder)
        try:
            listener.wait(timeout=10)  # ends when the caller closes the connection
        except subprocess.TimeoutExpired:
            analysis.stop_process(listener)
    listener_log = listener.stderr.read().decode(errors="replace")
    listener.stderr.close()
    files["srt-log"] = listener_log
    for name in ("srt", "file"):  # one file per audio track (with the video) for the A/V tools
        for i in range(len(TARGETS) + 1):
            subprocess.run([shutil.which("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-i", str(files[name]),
                            "-map", "0:v", "-map", f"0:a:{i}", "-c", "copy", "-copyts", str(tmp / f"{name}-a{i}.mkv")],
                           check=True, timeout=30)
            files[f"{name}-a{i}"] = tmp / f"{name}-a{i}.mkv"
    return {"snap": snap, "events": events, "files": files, "subs": subs, "master": master,
            "probe_master": probe_master, "info": short_media, "audio_origin_s": audio_origin_s,
            "video_playlist": video_playlist}


def test_hls_master_names_every_rendition(run):
    status, ctype, body = run["master"]
    assert status == 200 and ctype.startswith("application/vnd.apple.mpegurl")
    text = body.decode()
    audio = re.findall(r'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",LANGUAGE="([^"]+)",NAME="[^"]+",DEFAULT=(YES|NO)', text)
    assert audio == [("es", "YES"), ("ca", "NO"), ("en", "NO")], text
    subs = re.findall(r'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="([^"]+)"', text)
    assert subs == ["es", "ca", "en"], text
    assert re.search(r'#EXT-X-STREAM-INF:BANDWIDTH=\d+,CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2",RESOLUTION=640x360,'
                     r'AUDIO="aud",SUBTITLES="subs"\nvideo/index\.m3u8', text), text
    # ffprobe reads the whole presentation: one video, an AAC track per rendition with its language
    kinds = [(s["codec_type"], s["codec_name"], s.get("tags", {}).get("language")) for s in run["probe_master"]]
    assert ("video", "h264", None) in kinds or any(k[:2] == ("video", "h264") for k in kinds), kinds
    assert sorted(k[2] for k in kinds if k[0] == "audio") == ["ca", "en", "es"], kinds
    assert all(k[1] == "aac" for k in kinds if k[0] == "audio"), kinds


def test_hls_is_served_under_the_api_auth_only(stack, run):
    req = urllib.request.Request(stack.media.url + f"/v1/streams/{SID}/hls/master.m3u8")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)  # nosec B310  # the test's own http:// URL
    assert refused.value.code == 401


def test_hls_video_is_the_input_video_and_segments_are_about_2_s(run, stack):
    info = run["info"]
    src = analysis.video_packets(info.path)
    got = analysis.video_packets(run["files"]["hls-original"])  # Matroska: ms timestamps, as the input's FLV
    assert_same_video(src, got)
    assert len(got) >= 5 * 2 * 30, len(got)  # the window: 6 segments at 30 fps, the last one may be short
    # A sliding window of 6 segments cut on the fixture's 2 s GOP, closed when the input ended.
    playlist = run["video_playlist"]
    durations = [float(d) for d in re.findall(r"#EXTINF:([0-9.]+),", playlist)]
    assert 5 <= len(durations) <= 6 and "#EXT-X-ENDLIST" in playlist, playlist
    assert all(abs(d - 2.0) <= 0.05 for d in durations[:-1]), durations


def test_hls_audio_renditions_are_in_sync(run):
    for name in ("es", "ca", "original"):
        assert_av_in_sync(run["files"][f"hls-{name}"], min_markers=2)


def test_hls_subtitles_carry_each_dubbed_span_at_its_output_time(run):
    dubbed = [e["data"] for e in run["events"] if e["type"] == "dubbed"]
    assert len(dubbed) >= 2, [e["type"] for e in run["events"]]
    # The media timeline's origin (output time of its sample 0) is the first audio timestamp the
    # publisher sends: the fixture remuxed to FLV as the publisher does it.
    shift = run["audio_origin_s"]
    cues = {lang: parse_cues(docs) for lang, docs in run["subs"].items()}
    window_start = min(start for lang in cues for start, _, _ in cues[lang]) if any(cues.values()) else None
    checked = 0
    for span in dubbed:
        start_s = span["start_ms"] / 1000.0 + shift
        end_s = start_s + span["duration_ms"] / 1000.0
        if window_start is None or start_s < window_start - 0.5:
            continue  # left the live window
        texts = {"en": span["transcript"], **{d["language"]: d["text"] for d in span["dubs"]}}
        for lang, text in texts.items():
            nearest = min(cues[lang], key=lambda c: abs(c[0] - start_s))
            assert abs(nearest[0] - start_s) <= CUE_TOLERANCE_S, (lang, nearest, start_s)
            mine = sorted({c for c in cues[lang] if start_s - CUE_TOLERANCE_S <= c[0] < end_s - CUE_TOLERANCE_S})
            assert abs(mine[-1][1] - end_s) <= CUE_TOLERANCE_S, (lang, mine, end_s)
            assert " ".join(" ".join(c[2].split()) for c in mine) == " ".join(html.escape(text, quote=False).split()), (
                lang, text, mine)
        checked += 1
    assert checked >= 2, (dubbed, cues)


def parse_cues(docs: list[str]) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of every cue of a rendition's WebVTT segments, each document checked."""
    out = []
    for doc in docs:
        lines = doc.split("\n")
        assert lines[0] == "WEBVTT" and lines[1] == "X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000", doc
        for block in doc.split("\n\n")[1:]:
            rows = [r for r in block.split("\n") if r]
            if len(rows) < 3:
                continue
            a, b = rows[1].split(" --> ")
            out.append((_seconds(a), _seconds(b), "\n".join(rows[2:])))
    return out


def _seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)




# ---------------------------------------------------------------- MPEG-TS (srt, file) and all at once


@pytest.mark.parametrize("name", ["srt", "file"])
def test_mpegts_has_every_language_as_a_tagged_track(run, name):
    streams = ffprobe_streams(str(run["files"][name]))
    kinds = [(s["codec_type"], s["codec_name"], s.get("tags", {}).get("language")) for s in streams]
    assert kinds == [("video", "h264", None), ("audio", "aac", "spa"), ("audio", "aac", "cat"),
                     ("audio", "aac", "eng")], (kinds, run["files"].get("srt-log"))


@pytest.mark.parametrize("name", ["srt", "file"])
def test_mpegts_video_is_the_input_video_and_every_track_is_in_sync(run, name):
    src = analysis.video_packets(run["info"].path)
    first = assert_same_video(src, analysis.video_packets(run["files"][f"{name}-a0"]))
    assert first <= 60, first  # from the first keyframe the worker saw (GOP 2 s)
    for i in range(len(TARGETS) + 1):
        offsets = assert_av_in_sync(run["files"][f"{name}-a{i}"], min_markers=2)
        assert len(offsets) >= 2, offsets


def test_one_ingest_feeds_rtmp_hls_srt_and_file_at_once(run):
    """Done when of issue 10: every kind from one stream, one input session, no output lost."""
    snap, events = run["snap"], run["events"]
    assert set(snap["outputs"]) == {"rtmp.0.es", "hls.1", "srt.2", "file.3"}, snap["outputs"]
    assert snap["input"]["sessions"] == 1, snap  # one ingest (fallbacks depend on the STS, not checked here)
    opened = [e["data"] for e in events if e["type"] == "output_open"]
    assert sorted(d.get("output", d.get("language")) for d in opened) == ["file.3", "hls.1", "rtmp.0.es", "srt.2"]
    assert not [e for e in events if e["type"] == "output_lost"], events
    assert [d["languages"] for d in opened if d.get("kind") == "srt"] == [["es", "ca", "en"]]
    rtmp = run["files"]["rtmp-es"]
    info = analysis.probe(rtmp)
    assert info["video"]["codec"] == "h264" and info["audio"]["codec"] == "aac"
    assert len(info["raw"]["streams"]) == 2  # FLV: one language per stream
    assert_same_video(analysis.video_packets(run["info"].path), analysis.video_packets(rtmp)[:-1])
    assert_av_in_sync(rtmp, min_markers=2)
    # The Spanish mix is the same on every output that carries it (FLV and MPEG-TS round the
    # timestamps differently: aligned within 1 ms first).
    (a, sr, ta), (b, _, tb) = analysis.decode_audio(rtmp), analysis.decode_audio(run["files"]["file-a0"])
    start = int(round((tb - ta) * sr))
    n = min(len(a) - max(start, 0), len(b)) - 96
    assert n > 5 * sr, (len(a), len(b), start)
    def diff(lag):
        x = a[max(start, 0) + lag + 48:][:n - 96]
        y = b[max(-start, 0) + 48:][:n - 96]
        return float(np.abs(x - y).mean())
    best = min(range(-48, 49), key=diff)
    assert diff(best) < 1e-3 * float(np.abs(a).mean() + 1e-9) + 1e-6, (best, diff(best))
