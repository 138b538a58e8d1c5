"""The media timeline: sample-accurate placement from input timestamps, no drift, clean gaps."""

import numpy as np
from media_service.audio.timeline import AudioStore, Timeline


def test_frames_are_laid_end_to_end_despite_millisecond_timestamps():
    tl = Timeline(48000, tolerance_s=0.015)
    # FLV timestamps are whole milliseconds: 1024 samples = 21.333 ms, rounded each time.
    starts = [tl.place(round(i * 1024 / 48) / 1000, 1024).start for i in range(10_000)]
    assert starts == [i * 1024 for i in range(10_000)]  # no drift after 213 s


def test_a_forward_jump_is_a_gap_and_an_overlap_is_dropped():
    tl = Timeline(48000, tolerance_s=0.015)
    tl.place(10.0, 48000)  # [0, 48000)
    p = tl.place(11.5, 1000)  # 0.5 s hole
    assert (p.start, p.gap, p.dropped) == (72000, 24000, 0)
    p = tl.place(11.5, 2000)  # repeats the last 1000 samples
    assert (p.start, p.gap, p.dropped) == (73000, 0, 1000)
    assert tl.end == 74000


def test_new_input_session_continues_where_the_output_stopped():
    tl = Timeline(48000)
    tl.place(100.0, 48000)
    tl.new_session(first_pts_s=0.0, resume_out_s=tl.to_out_seconds_of_index(tl.end))
    p = tl.place(0.0, 1024)
    assert (p.start, p.gap) == (48000, 0)
    assert tl.out_index_pts(48000) == 101 * 48000


def test_a_new_session_keeps_its_audio_where_its_timestamps_put_it():
    """Its video is shifted exactly: snapping the audio onto the old end would offset A/V."""
    tl = Timeline(48000)
    tl.place(100.0, 48000)  # ends at 101.0 s
    tl.new_session(first_pts_s=0.0, resume_out_s=101.005)  # resumed by the last video packet
    p = tl.place(0.0, 1024)  # 5 ms after the end (inside the tolerance): silence, not end to end
    assert (p.start, p.gap) == (48000 + 240, 240)
    assert tl.place(1024 / 48000 + 0.004, 1024).start == 48000 + 240 + 1024, "then end to end again"
    tl.new_session(first_pts_s=0.0, resume_out_s=tl.to_out_seconds_of_index(tl.end) - 0.005)
    p = tl.place(0.0, 1024)  # 5 ms of overlap: dropped, so the session keeps its own timing
    assert (p.start, p.dropped) == (tl.end - 1024 + 240, 240)


def test_audio_store_reads_silence_in_gaps_and_tracks_arrival():
    store = AudioStore(channels=2)
    store.write(0, np.ones((100, 2), np.float32), arrival=1.0)
    store.write(200, np.ones((100, 2), np.float32), arrival=2.0)
    out = store.read(50, 200)
    assert out[:50].min() == 1 and out[50:150].max() == 0 and out[150:].min() == 1
    assert store.arrival_of(99) == 1.0 and store.arrival_of(250) == 2.0 and store.arrival_of(300) is None
    store.discard_before(150)
    assert store.read(0, 100).max() == 0
