"""Ingest edge cases. An input whose audio changes sample rate and channels mid-stream (a new AAC
sequence header in one FLV, as an encoder whose settings were changed sends it) is read in one
session: the ingest resampler is rebuilt for the new format instead of the read failing ("Frame
does not match AudioResampler setup") and the input reconnecting. Corrupt audio packets are skipped and
reported to the caller (the worker counts them), the session goes on."""

import subprocess
import threading

import numpy as np
import pytest
from livedub_testkit import flv
from media_service.media_io.ingest import InputReader


def clip(path, rate: int, layout: str):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x90:rate=30:duration=1", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate={rate}:duration=1", "-ac", "1" if layout == "mono" else "2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-bf", "0", "-c:a", "aac",
                    "-f", "flv", str(path)], check=True)
    return flv.read_tags(path)


@pytest.mark.parametrize("before, after", [((48000, "stereo"), (44100, "mono")), ((44100, "mono"), (48000, "stereo"))])
def test_sample_rate_and_channel_change_is_read_in_one_session(tmp_path, before, after):
    """Both ways: 48 kHz stereo AAC is used as decoded (no resampler), anything else resampled."""
    first = clip(tmp_path / "a.flv", *before)
    second = clip(tmp_path / "b.flv", *after)
    shift = max(t.ms for t in first) + 34
    src = flv.write_flv(tmp_path / "switch.flv", first + flv.shifted(second, shift))
    audio, formats = [], []
    reader = InputReader(str(src), on_video=lambda p, a: None, on_audio=lambda x, t, a: audio.append((t, len(x))),
                         stop=threading.Event(), realtime=False, on_audio_format=lambda r, c: formats.append((r, c)))
    reason = reader.read_session(lambda info, container: None)
    assert reason == "ended", reason
    assert formats == [(after[0], 1 if after[1] == "mono" else 2)]
    total = sum(n for _, n in audio) / 48000
    assert 1.9 < total < 2.2, total  # both halves, at 48 kHz
    starts = np.array([t for t, _ in audio])
    assert starts.max() > shift / 1000  # the second half is there, on its own timestamps


def test_corrupt_audio_packets_are_skipped_counted_and_the_session_goes_on(tmp_path):
    tags = clip(tmp_path / "a.flv", 48000, "stereo")
    bad, damaged = flv.corrupt(tags, every=3)
    src = flv.write_flv(tmp_path / "bad.flv", bad)
    errors, audio = [], []
    reader = InputReader(str(src), on_video=lambda p, a: None, on_audio=lambda x, t, a: audio.append(len(x)),
                         stop=threading.Event(), realtime=False, on_undecodable=errors.append)
    assert reader.read_session(lambda info, container: None) == "ended"
    assert damaged > 10 and errors, (damaged, errors)
    assert sum(audio) > 0.5 * 48000  # the rest was decoded

