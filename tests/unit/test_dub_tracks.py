"""DubTracks: the "late" rule and rendering of all languages (logic only, no threads)."""

from __future__ import annotations

import numpy as np
from media_service.mixer import DubTracks, Mode


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
