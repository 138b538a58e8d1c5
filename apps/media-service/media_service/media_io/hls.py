"""HLS output: the video once, an AAC audio rendition per language and the original, a WebVTT
subtitle rendition per language, in a live sliding window that the API serves.

Design (why this one): the video and audio renditions are segmented by FFmpeg's own `hls` muxer,
run by PyAV in this process with `var_stream_map` (one variant for the video, one per audio
track, all in audio group `aud`): it cuts on keyframes at `hls_time`, writes MPEG-TS segments and
the variant playlists, keeps the window (`hls_list_size`, `delete_segments`) and finishes them
(`#EXT-X-ENDLIST`) when the writer closes. The writer is the same `OutputWriter` as every other
output (the same H.264 packets, no re-encode; the same AAC tracks and A/V bookkeeping); only the
container differs. What FFmpeg's muxer cannot do from here is done in this module:
- the master playlist (`master.m3u8`): written once per open from the plan, so it names each
  audio rendition's `LANGUAGE` and `NAME` (the first target `DEFAULT=YES`) and the subtitle group;
- the subtitle renditions (`subs-<lang>/`): FFmpeg's WebVTT-in-HLS needs subtitle packets muxed
  in time order, but a cue is known before its time plays (D ahead) and may be split or arrive
  out of order. `SubtitleRenditions` writes 2 s WebVTT segments on the output timeline instead,
  each when the output has passed its end, with the cues of `captions.CaptionStore` that overlap
  it, and `X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000`: MPEG-TS timestamps here are the output
  timestamps themselves, so cue times are written in those seconds (span position + the
  timeline's origin), which is what the picture shows at that moment.

The subtitle state outlives one writer (an input that reconnects reopens the output): the worker
keeps one `SubtitleRenditions` per stream and the audio/video playlists continue (`append_list`,
on a reopen only).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

import av

from ..audio.timeline import RATE
from ..config import PlannedOutput
from .captions import CaptionStore, render_webvtt
from .output import OutputWriter

log = logging.getLogger(__name__)

SEGMENT_S = 2.0  # target segment length (video cuts on the first keyframe after it)
LIST_SIZE = 6  # segments in each live playlist (a 12 s window)
AUDIO_GROUP, SUBS_GROUP = "aud", "subs"
MASTER = "master.m3u8"
# What the API may serve from an HLS directory (nothing else: no traversal, no other files); the
# whole name must match (`fullmatch`).
SERVABLE = re.compile(r"^(master\.m3u8|(video|audio-[A-Za-z0-9-]+|subs-[A-Za-z0-9-]+)/"
                      r"(index\.m3u8|seg\d{1,9}\.(ts|vtt)))$")
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)  # Linux: a directory handle that needs no read permission
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".vtt": "text/vtt; charset=utf-8"}


def audio_name(track_mix: str | None) -> str:
    return "audio-original" if track_mix is None else f"audio-{track_mix}"


def _write_atomic(path: str, text: str) -> None:
    """Readers (players polling the playlist) see the old file or the new one, never half of it."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass
class _Rendition:
    language: str
    directory: str
    segments: list[tuple[int, float]]  # (sequence number, duration s) in the window, oldest first


class SubtitleRenditions:
    """The WebVTT renditions of one HLS output (see the module docstring), one per language.

    `advance(t)` is called by the output thread with the output time (s) written so far; it
    writes every segment that ended by then. `cue_offset_ms()` maps a cue's time (output
    timeline, + D) to MPEG-TS seconds × 1000: the timeline's origin − D.
    """

    def __init__(self, directory: str, languages: list[str], captions: CaptionStore,
                 cue_offset_ms: Callable[[], float], segment_s: float = SEGMENT_S, list_size: int = LIST_SIZE):
        self.captions, self.cue_offset_ms = captions, cue_offset_ms
        self.segment_s, self.list_size = segment_s, list_size
        self.renditions = [_Rendition(lang, os.path.join(directory, f"subs-{lang}"), []) for lang in languages]
        self.t0: float | None = None  # output time (s) where segment 0 starts
        self.next = 0  # next segment number to write
        self.ended = False
        for r in self.renditions:
            os.makedirs(r.directory, exist_ok=True)

    def advance(self, t: float) -> None:
        if self.t0 is None:
            self.t0 = t
            self._playlists()  # players may open the rendition before its first segment exists
        while self.t0 + (self.next + 1) * self.segment_s <= t:
            self._segment(self.t0 + self.next * self.segment_s, self.segment_s)
        if self.ended:
            self.ended = False
            self._playlists()

    def finish(self, t: float) -> None:
        """The output closed at output time `t`: the partial last segment, then `#EXT-X-ENDLIST`."""
        if self.t0 is None:
            return
        start = self.t0 + self.next * self.segment_s
        if t > start + 0.001:
            self._segment(start, t - start)
            self.t0 += (t - start) - self.segment_s  # the grid continues from `t` if the output reopens
        self.ended = True
        self._playlists()

    def _segment(self, start_s: float, duration_s: float) -> None:
        seq = self.next
        self.next += 1
        offset = self.cue_offset_ms()
        a, b = start_s * 1000.0, (start_s + duration_s) * 1000.0
        for r in self.renditions:
            track = self.captions.track(r.language)
            cues = []
            for cue in track.cues() if track else ():
                start, end = cue.start_ms + offset, cue.end_ms + offset
                if start < b and end > a:
                    cues.append(replace(cue, start_ms=start, end_ms=end))
            doc = render_webvtt(cues)
            head, _, rest = doc.partition("\n")
            _write_atomic(os.path.join(r.directory, f"seg{seq}.vtt"),
                          f"{head}\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n{rest}")
            r.segments.append((seq, duration_s))
            while len(r.segments) > self.list_size:
                old, _ = r.segments.pop(0)
                stale = os.path.join(r.directory, f"seg{old - self.list_size}.vtt")  # kept a window longer
                if os.path.exists(stale):
                    os.unlink(stale)
        self._playlists()

    def _playlists(self) -> None:
        for r in self.renditions:
            first = r.segments[0][0] if r.segments else self.next
            lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{int(self.segment_s + 0.999)}",
                     f"#EXT-X-MEDIA-SEQUENCE:{first}"]
            for seq, duration in r.segments:
                lines += [f"#EXTINF:{duration:.3f},", f"seg{seq}.vtt"]
            if self.ended:
                lines.append("#EXT-X-ENDLIST")
            _write_atomic(os.path.join(r.directory, "index.m3u8"), "\n".join(lines) + "\n")


def master_playlist(out: PlannedOutput, video, subtitle_languages: list[str], *, audio: bool,
                    audio_bit_rate: int) -> str:
    """The master playlist of one HLS output: audio renditions in plan order (the first target
    is the default), the original last; one subtitle rendition per language; one video variant."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for i, track in enumerate(out.tracks if audio else ()):
        name = f"{track.language} (original)" if track.mix is None else track.language
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",LANGUAGE="{track.language}",NAME="{name}",'
                     f'DEFAULT={"YES" if i == 0 else "NO"},AUTOSELECT=YES,CHANNELS="2",'
                     f'URI="{audio_name(track.mix)}/index.m3u8"')
    for lang in subtitle_languages:
        lines.append(f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{SUBS_GROUP}",LANGUAGE="{lang}",NAME="{lang}",'
                     f'DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="subs-{lang}/index.m3u8"')
    attrs = [f"BANDWIDTH={_bandwidth(video) + (audio_bit_rate if audio else 0)}"]
    codecs = [c for c in (_avc1(video), "mp4a.40.2" if audio else None) if c]
    attrs.append(f'CODECS="{",".join(codecs)}"')
    if video is not None and video.codec_context.width:
        attrs.append(f"RESOLUTION={video.codec_context.width}x{video.codec_context.height}")
    if audio and out.tracks:
        attrs.append(f'AUDIO="{AUDIO_GROUP}"')
    if subtitle_languages:
        attrs.append(f'SUBTITLES="{SUBS_GROUP}"')
    lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), "video/index.m3u8" if video is not None
              else f"{audio_name(out.tracks[0].mix)}/index.m3u8"]
    return "\n".join(lines) + "\n"


def _bandwidth(video) -> int:
    """Nominal peak rate of the video variant: the input's declared bit rate, else 3 Mb/s."""
    rate = getattr(video.codec_context, "bit_rate", 0) if video is not None else 0
    return int(rate * 1.2) if rate else 3_000_000


def _avc1(video) -> str | None:
    """`avc1.PPCCLL` from the avcC record (profile, constraints, level), when the input has one."""
    extradata = video.codec_context.extradata if video is not None and video.codec_context.name == "h264" else None
    if extradata and len(extradata) >= 4 and extradata[0] == 1:
        return f"avc1.{extradata[1]:02x}{extradata[2]:02x}{extradata[3]:02x}"
    return "avc1.64001f" if video is not None and video.codec_context.name == "h264" else None


class HlsWriter(OutputWriter):
    """An `OutputWriter` whose container is FFmpeg's hls muxer writing into `directory`, plus the
    master playlist and the subtitle renditions (see the module docstring)."""

    def __init__(self, out: PlannedOutput, directory: str, video_template, *, audio: bool,
                 subtitles: SubtitleRenditions):
        self.directory, self.plan_entry, self.subtitles = directory, out, subtitles
        self._variants = (["v:0,agroup:aud,name:video"] if video_template is not None else []) + [
            f"a:{i},agroup:{AUDIO_GROUP},name:{audio_name(t.mix)}" for i, t in enumerate(out.tracks if audio else ())]
        self._written_to = 0.0  # output time (s) of the end of the last audio frame written
        super().__init__(directory, video_template, audio=audio, kind="hls",
                         languages=tuple(t.language for t in out.tracks))
        _write_atomic(os.path.join(directory, MASTER), master_playlist(
            out, video_template, [r.language for r in subtitles.renditions], audio=audio, audio_bit_rate=128_000))

    def _open_container(self, relay_settings):
        os.makedirs(self.directory, exist_ok=True)
        # append_list only when reopening (an input that reconnected): FFmpeg marks the first
        # segment it writes with it as a discontinuity even in a new playlist, and writes no
        # EXT-X-DISCONTINUITY-SEQUENCE when that segment leaves the window, so a player that
        # loaded one rendition before and another after disagrees on the count and hls.js never
        # loads a segment of the audio it switches to (test_dashboard_hls_browser.py).
        names = [v.rsplit("name:", 1)[1] for v in self._variants]
        reopened = any(os.path.exists(os.path.join(self.directory, n, "index.m3u8")) for n in names)
        options = {"hls_time": f"{SEGMENT_S:g}", "hls_list_size": str(LIST_SIZE),
                   "hls_flags": "delete_segments+independent_segments" + ("+append_list" if reopened else ""),
                   "hls_segment_filename": os.path.join(self.directory, "%v", "seg%05d.ts"),
                   "var_stream_map": " ".join(self._variants)}
        log.info("output %s: HLS into %s", self.label, self.directory)
        return av.open(os.path.join(self.directory, "%v", "index.m3u8"), mode="w", format="hls", options=options)

    def write_audio(self, samples, pts: int, track: int = 0) -> None:
        super().write_audio(samples, pts, track)
        if track == 0:
            self._written_to = (pts + len(samples)) / RATE
            self.subtitles.advance(self._written_to)

    def close(self) -> None:
        super().close()
        self.subtitles.finish(self._written_to)


def servable(directory: str, name: str) -> tuple[str, str] | None:
    """(resolved file path, content type) of `name` in an HLS directory, or None if it may not be
    served: the whole name matches SERVABLE (`fullmatch`: `$` would accept a final newline) and no
    part of the path is a symlink (its resolved path is the path itself). Read it with
    `read_servable`, which opens that path without following a link put there since."""
    if not SERVABLE.fullmatch(name):
        return None
    root = os.path.realpath(directory)
    path = os.path.join(root, name)
    if os.path.realpath(path) != path or not os.path.isfile(path):
        return None
    return path, CONTENT_TYPES[os.path.splitext(name)[1]]


def read_servable(path: str) -> bytes:
    """The bytes of the regular file at `path` (absolute and resolved, from `servable`), opened one
    component at a time with O_NOFOLLOW: a symlink anywhere on the way (one swapped in after the
    check) fails with OSError, so the file read is the one checked. O_NONBLOCK: opening a FIFO put
    there must not block; it is refused as not a regular file."""
    parts = path.strip("/").split("/")
    walk = _O_PATH | os.O_DIRECTORY  # directories are only passed through: search permission is enough
    fd = os.open("/", walk)
    try:
        for part in parts[:-1]:
            below = os.open(part, walk | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        return f.read()
