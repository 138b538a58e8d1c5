"""DubTracks: the "late" rule and rendering of all languages (logic only, no threads)."""

from __future__ import annotations

import numpy as np
from media_service.audio.mixer import DubTracks, Mode


def test_a_clip_is_refused_where_output_was_already_rendered():
    tracks = DubTracks(["es", "ca"])
    original = np.zeros((1024, 2), np.float32)
    tone = np.full((2048, 2), 0.5, np.float32)
    assert tracks.place("es", 1024, tone)
    mixes = tracks.render(0, 1024, original, Mode.REPLACE, -14.0)
    assert set(mixes) == {"es", "ca"} and tracks.rendered_until == 1024
    assert not tracks.place("ca", 512, tone), "starts inside rendered output: late"
    assert not tracks.place("fr", 4096, tone), "not a language of this stream"
    assert tracks.place("ca", 1024, tone)
    mixes = tracks.render(1024, 1024, original, Mode.REPLACE, -14.0)
    assert mixes["es"][600:, 0].min() > 0.49 and mixes["ca"][600:, 0].min() > 0.49
    tracks.prune(8192)
    assert np.all(tracks.render(2048, 1024, original, Mode.REPLACE, -14.0)["es"] == 0)


def test_a_late_clip_starts_at_the_first_sample_not_rendered_with_its_tail_cut():
    tracks = DubTracks(["es"])
    original = np.zeros((1000, 2), np.float32)
    tone = np.full((2000, 2), 0.5, np.float32)
    tracks.render(0, 1000, original, Mode.REPLACE, -14.0)
    assert tracks.place("es", 400, tone) is None, "no late start allowed"
    assert tracks.place("es", 400, tone, latest=900) is None, "would start after the latest start"
    assert tracks.place("es", 400, tone[:500], latest=2000) is None, "nothing left of it"
    assert tracks.place("es", 400, tone, latest=1000) == 1000
    mix = tracks.render(1000, 2000, np.zeros((2000, 2), np.float32), Mode.REPLACE, -14.0)["es"]
    assert mix[500:900, 0].min() > 0.49, "the dub plays from the first sample not rendered (10 ms ramps)"
    assert np.all(mix[1400:, 0] == 0), "its end is where the span ends (400 + 2000), the tail cut by 600"
