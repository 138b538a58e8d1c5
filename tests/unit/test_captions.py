"""Live captions (captions.py): cue splitting, escaping, timing, WebVTT rendering, bounds, waiting."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from media_service.control.auth import SIGNED_LINK_PATH
from media_service.media_io.captions import (
    MAX_LINE_CHARS,
    CaptionStore,
    CaptionTrack,
    Cue,
    escape_vtt,
    render_webvtt,
    split_cue,
    vtt_timestamp,
    wrap_lines,
)

LONG = ("Good evening and welcome to the late edition of the news, where tonight we look at the "
        "weather, the markets and a very long word: supercalifragilisticexpialidocious-and-then-some-more.")


def test_short_text_is_one_cue_of_one_line_with_the_span_time():
    assert split_cue("  Good   evening.\n", 1000.0, 2500.0) == [(1000.0, 2500.0, ("Good evening.",))]


def test_empty_text_gives_no_cue():
    assert split_cue("", 0.0, 1000.0) == [] and split_cue(" \n\t", 0.0, 1000.0) == []


def test_lines_break_at_words_and_never_exceed_the_limit():
    text = LONG.rsplit(" ", 1)[0]  # without the over-long word
    lines = wrap_lines(text)
    assert all(0 < len(line) <= MAX_LINE_CHARS for line in lines), lines
    assert " ".join(lines) == " ".join(text.split())  # every word, in order, none cut
    for line, following in zip(lines, lines[1:]):  # greedy: the next word did not fit
        assert len(line) + 1 + len(following.split()[0]) > MAX_LINE_CHARS, (line, following)


def test_a_word_longer_than_a_line_is_broken():
    assert wrap_lines("a" * 100) == ["a" * 42, "a" * 42, "a" * 16]
    assert wrap_lines("x " + "b" * 50 + " y") == ["x", "b" * 42, "b" * 8 + " y"]


def test_long_text_is_split_into_cues_of_at_most_two_lines_timed_by_characters():
    cues = split_cue(LONG, 10_000.0, 19_000.0)
    assert len(cues) >= 2
    assert all(1 <= len(lines) <= 2 and all(len(line) <= 42 for line in lines) for _, _, lines in cues)
    # Consecutive, covering the span exactly.
    assert cues[0][0] == 10_000.0 and cues[-1][1] == 19_000.0
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(cues, cues[1:]))
    # Each cue's share of the time is its share of the characters (lines + one per break).
    weights = [sum(map(len, lines)) + len(lines) for _, _, lines in cues]
    for (a, b, _), w in zip(cues, weights):
        assert b - a == pytest.approx(9000.0 * w / sum(weights))
    assert [line for _, _, lines in cues for line in lines] == wrap_lines(LONG)


def test_escaping_for_webvtt():
    assert escape_vtt("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert escape_vtt("x --> y") == "x --&gt; y"  # no timing arrow inside a cue
    assert escape_vtt("&amp;") == "&amp;amp;"  # escaped once, not taken as a reference
    assert escape_vtt("<b>bold</b> <c.x>") == "&lt;b&gt;bold&lt;/b&gt; &lt;c.x&gt;"


def test_timestamps():
    assert vtt_timestamp(0) == "00:00:00.000"
    assert vtt_timestamp(3_723_456.4) == "01:02:03.456"
    assert vtt_timestamp(59_999.6) == "00:01:00.000"
    assert vtt_timestamp(-5) == "00:00:00.000"
    assert vtt_timestamp(100 * 3_600_000) == "100:00:00.000"


TIMING = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")


def parse_vtt(text: str) -> list[tuple[str, float, float, list[str]]]:
    """A strict reader for what render_webvtt writes: header, blank line, blocks of id/timing/text."""
    assert text.startswith("WEBVTT") and text.endswith("\n")
    blocks = text.split("\n\n")
    assert blocks[0].split("\n")[0].startswith("WEBVTT")
    cues = []
    for block in blocks[1:]:
        if not block.strip():
            continue
        lines = block.split("\n")
        ident, timing, payload = lines[0], lines[1], lines[2:]
        m = TIMING.match(timing)
        assert m and "-->" not in ident and payload, block
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600_000 + g[1] * 60_000 + g[2] * 1000 + g[3]
        end = g[4] * 3600_000 + g[5] * 60_000 + g[6] * 1000 + g[7]
        assert end > start
        cues.append((ident, start, end, payload))
    return cues


def test_render_webvtt_document():
    cues = [Cue(1, 3500.0, 5000.0, ("Tom & Jerry <live>",)), Cue(2, 5000.0, 5000.0, ("one", "two"))]
    text = render_webvtt(cues)
    assert text == ("WEBVTT\n\n"
                    "1\n00:00:03.500 --> 00:00:05.000\nTom &amp; Jerry &lt;live&gt;\n\n"
                    "2\n00:00:05.000 --> 00:00:05.001\none\ntwo\n\n")
    assert parse_vtt(text) == [("1", 3500, 5000, ["Tom &amp; Jerry &lt;live&gt;"]),
                               ("2", 5000, 5001, ["one", "two"])]
    assert render_webvtt([]) == "WEBVTT\n\n"
    assert render_webvtt([], header="a --> b\nc").split("\n")[0] == "WEBVTT a -> b c"


def test_store_adds_source_and_targets_at_span_plus_delay():
    store = CaptionStore("en", ["es", "fr"], delay_ms=3500.0)
    assert store.languages == ["en", "es", "fr"]
    added = store.add_span(2000.0, 1500.0, "Good evening.", {"es": "Buenas tardes.", "fr": ""})
    assert set(added) == {"en", "es"}  # an empty translation gives no cue
    (en,) = store.track("en").cues()
    (es,) = store.track("es").cues()
    assert (en.start_ms, en.end_ms, en.lines, en.span_start_ms) == (5500.0, 7000.0, ("Good evening.",), 2000.0)
    assert (es.start_ms, es.end_ms, es.lines) == (5500.0, 7000.0, ("Buenas tardes.",))
    assert store.track("de") is None
    assert store.snapshot() == {"en": {"cues": 1, "added": 1}, "es": {"cues": 1, "added": 1},
                                "fr": {"cues": 0, "added": 0}}


def test_a_target_equal_to_the_source_shares_the_transcript_track():
    store = CaptionStore("en", ["en", "es"], delay_ms=0.0)
    assert store.languages == ["en", "es"]
    store.add_span(0.0, 1000.0, "hello", {"en": "HELLO", "es": "hola"})
    assert [c.text for c in store.track("en").cues()] == ["hello"]


def test_track_keeps_start_order_when_answers_come_out_of_order():
    track = CaptionTrack("en")
    track.add("second", 5000.0, 6000.0)
    track.add("first", 1000.0, 2000.0)
    assert [c.text for c in track.cues()] == ["first", "second"]
    assert [c.seq for c in track.cues()] == [2, 1]
    assert [c.text for c in track.since(0)] == ["second", "first"]  # the feed: in the order added
    assert [c.text for c in track.since(1)] == ["first"]


def test_track_is_bounded_by_count_and_by_time():
    track = CaptionTrack("en", max_cues=10, window_ms=60_000.0)
    for i in range(25):
        track.add(f"cue {i}", i * 1000.0, i * 1000.0 + 900.0)
    assert len(track) == 10 and [c.text for c in track.cues()][0] == "cue 15"
    assert track.added == 25 and track.last_seq == 25
    track.add("much later", 200_000.0, 201_000.0)  # everything else ended > 60 s before it
    assert [c.text for c in track.cues()] == ["much later"]
    assert render_webvtt(track.cues()).count("-->") == 1


def test_waiting_for_cues_added_from_another_thread():
    track = CaptionTrack("es")

    async def main():
        assert await track.wait_since(0, 0.05) == []
        threading.Timer(0.1, track.add, args=("hola", 0.0, 500.0)).start()
        got = await asyncio.wait_for(track.wait_since(0, 5.0), 3.0)
        assert [c.text for c in got] == ["hola"]
        assert await track.wait_since(got[-1].seq, 0.05) == []
        assert got[0].as_json("es") == {"seq": 1, "language": "es", "start_ms": 0.0, "end_ms": 500.0,
                                        "lines": ["hola"]}

    asyncio.run(main())


def test_signed_links_open_only_previews_and_caption_reads():
    for path in ("/v1/streams/a/preview.mjpg", "/v1/streams/a/captions/es.vtt", "/v1/streams/a/captions/en/events"):
        assert SIGNED_LINK_PATH.match(path), path
    for path in ("/v1/streams/a/events", "/v1/streams/a/captions/es/link", "/v1/streams/a", "/v1/streams",
                 "/v1/streams/a/captions/es", "/v1/streams/a/captions/x/y/events", "/v1/events"):
        assert not SIGNED_LINK_PATH.match(path), path
