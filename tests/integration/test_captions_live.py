"""Live captions against the real stack: nginx-rtmp, media-service, sts-service, ffmpeg.

The 20 s fixture is published to live/<name>/in (the hook starts the worker). While it plays, two
SSE readers follow the caption feeds (Spanish through a signed link, as the dashboard's
EventSource does; English with the bearer token); once the output has played out, the WebVTT
documents of the source language and of `es` are fetched, read by ffprobe/ffmpeg and by a strict
parser, and compared with the stream's `dubbed` events: each span's cues start at its start_ms + D
and end at its end + D (within 100 ms), carry its transcript / translation, and hold the line limits.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import threading
import time
import urllib.request

import pytest
from livedub_testkit import analysis
from livedub_testkit.services import http_json
from media_service.config import MediaConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NAME = "captions"
DELAY_MS = MediaConfig.model_fields["output_delay_s"].default * 1000.0  # the local stack runs with the default D
TOLERANCE_MS = 100.0


@pytest.fixture(scope="module")
def stack(local_stack):
    return local_stack


class SseReader(threading.Thread):
    """Reads a text/event-stream response into `events`: (wall time received, event, id, data)."""

    def __init__(self, url: str, token: str | None = None):
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.events: list[tuple[float, str, str | None, dict]] = []
        self.status: int | None = None
        self.content_type = ""
        self.error: Exception | None = None

    def run(self) -> None:
        req = urllib.request.Request(self.url)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:  # nosec B310  # the test's own http:// URL
                self.status, self.content_type = resp.status, resp.headers.get("Content-Type", "")
                fields: dict[str, str] = {}
                for raw in resp:
                    line = raw.decode().rstrip("\n")
                    if line:
                        key, _, value = line.partition(":")
                        fields[key] = value[1:] if value.startswith(" ") else value
                        continue
                    if "data" in fields:
                        self.events.append((time.time(), fields.get("event", "message"), fields.get("id"),
                                            json.loads(fields["data"])))
                        if fields.get("event") == "end":
                            return
                    fields = {}
        except Exception as exc:  # reported by the test
            self.error = exc

    def of(self, kind: str) -> list[tuple[float, str | None, dict]]:
        return [(t, i, d) for t, k, i, d in self.events if k == kind]


TIMING = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")


def parse_vtt(text: str) -> list[dict]:
    """A strict WebVTT reader (header, then blank-line separated id / timing / payload blocks)."""
    assert text.startswith("WEBVTT\n\n"), text[:80]
    cues = []
    for block in text[len("WEBVTT\n\n"):].split("\n\n"):
        if not block.strip():
            continue
        ident, timing, *payload = block.split("\n")
        m = TIMING.match(timing)
        assert m and ident.isdigit() and payload, block
        g = [int(x) for x in m.groups()]
        start = g[0] * 3_600_000 + g[1] * 60_000 + g[2] * 1000 + g[3]
        end = g[4] * 3_600_000 + g[5] * 60_000 + g[6] * 1000 + g[7]
        assert end > start, block
        for line in payload:  # escaped: no markup, no stray '&'
            assert "<" not in line and ">" not in line, line
            assert not re.search(r"&(?!(amp|lt|gt);)", line), line
        cues.append({"seq": int(ident), "start_ms": start, "end_ms": end,
                     "lines": [html.unescape(line) for line in payload]})
    return cues


def ffprobe_cues(path) -> list[tuple[float, float]]:
    """(start, end) in ms of each subtitle packet ffprobe reads from a WebVTT file."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=pts_time,duration_time",
                          "-of", "json", str(path)], capture_output=True, text=True, timeout=30, check=True)
    packets = json.loads(out.stdout)["packets"]
    return [(float(p["pts_time"]) * 1000.0, (float(p["pts_time"]) + float(p["duration_time"])) * 1000.0)
            for p in packets]


@pytest.fixture(scope="module")
def run(stack, short_media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("captions")
    media = stack.media
    pub = analysis.publish(short_media.path, stack.url(f"{NAME}/in"))
    readers = []
    try:
        stack.wait_stream(NAME, lambda s: True, timeout=20)  # the hook started the worker
        status, link = media.api("POST", f"/v1/streams/{NAME}/captions/es/link")
        assert status == 200, link
        es = SseReader(media.url + link["events"])  # no token: the signed link alone
        en = SseReader(media.url + f"/v1/streams/{NAME}/captions/en/events", token=media.api_token)
        readers = [es, en]
        for r in readers:
            r.start()
        assert pub.wait(timeout=120) == 0, open(pub.log_path).read()
        published_until = time.time()
        stack.wait_stream(NAME, lambda s: s["output"]["state"] == "idle", timeout=30)  # played out
        _, snap = media.api("GET", f"/v1/streams/{NAME}")
        _, events = media.api("GET", f"/v1/streams/{NAME}/events?since=0")
        vtt = {}
        for lang in ("en", "es"):
            req = urllib.request.Request(media.url + f"/v1/streams/{NAME}/captions/{lang}.vtt",
                                         headers={"Authorization": f"Bearer {media.api_token}"})
            with urllib.request.urlopen(req, timeout=5) as resp:  # nosec B310
                assert resp.headers["Content-Type"].startswith("text/vtt"), resp.headers
                vtt[lang] = resp.read().decode("utf-8")
            (tmp / f"{lang}.vtt").write_text(vtt[lang], encoding="utf-8")
        checks = access_checks(stack, link)
    finally:
        analysis.stop_process(pub)
        media.api("DELETE", f"/v1/streams/{NAME}")
    for r in readers:
        r.join(timeout=10)
    return {"snap": snap, "events": events["events"], "vtt": vtt, "dir": tmp, "es_feed": readers[0],
            "en_feed": readers[1], "published_until": published_until, "access": checks}


def access_checks(stack, link) -> dict:
    """Status and error code of the caption routes with and without credentials."""
    media = stack.media

    def get(path, token=None):
        status, body = http_json(media.url + path, token=token)
        return status, (body.get("error", {}).get("code") if isinstance(body, dict) else None)

    base = f"/v1/streams/{NAME}/captions"
    return {
        "vtt_no_token": get(f"{base}/es.vtt"),
        "vtt_signed": get(link["vtt"]),
        "signed_for_another_language": get(link["vtt"].replace("/es.vtt", "/en.vtt")),
        "unknown_language": get(f"{base}/fr.vtt", media.api_token),
        "unknown_language_feed": get(f"{base}/fr/events", media.api_token),
        "unknown_stream": get("/v1/streams/nope/captions/en.vtt", media.api_token),
        "not_vtt": get(f"{base}/en.srt", media.api_token),
        "link_unknown_language": media.api("POST", f"{base}/fr/link")[0],
    }


def dubbed_spans(run) -> list[dict]:
    return [e | e["data"] for e in run["events"] if e["type"] == "dubbed"]


def cues_of(cues, span) -> list[dict]:
    """The cues of one span: inside [start + D, end + D] (with the tolerance)."""
    lo, hi = span["start_ms"] + DELAY_MS, span["start_ms"] + span["duration_ms"] + DELAY_MS
    return [c for c in cues if lo - TOLERANCE_MS <= c["start_ms"] < hi and c["end_ms"] <= hi + TOLERANCE_MS]


def test_access_rules_and_unknown_names(run):
    a = run["access"]
    assert a["vtt_no_token"] == (401, "unauthorized")
    assert a["vtt_signed"][0] == 200  # a <track> can open it with the signed link
    assert a["signed_for_another_language"] == (401, "unauthorized")
    assert a["unknown_language"] == (404, "not_found")
    assert a["unknown_language_feed"] == (404, "not_found")
    assert a["unknown_stream"] == (404, "not_found")
    assert a["not_vtt"] == (404, "not_found")
    assert a["link_unknown_language"] == 404


def test_webvtt_is_read_by_ffmpeg(run):
    for lang in ("en", "es"):
        path = run["dir"] / f"{lang}.vtt"
        cues = parse_vtt(run["vtt"][lang])
        assert len(cues) >= 3, run["vtt"][lang]
        probed = ffprobe_cues(path)
        assert len(probed) == len(cues), (probed, cues)
        for (a, b), cue in zip(probed, cues):
            assert abs(a - cue["start_ms"]) <= 1 and abs(b - cue["end_ms"]) <= 1, (a, b, cue)
        # ffmpeg decodes the cue text (character references included) and writes it out as SRT.
        done = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "srt", "-"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
        srt = [block.split("\n")[2:] for block in done.stdout.strip().split("\n\n")]
        assert srt == [c["lines"] for c in cues], (srt, cues)


def test_cues_are_ordered_and_within_the_line_limits(run):
    for lang in ("en", "es"):
        cues = parse_vtt(run["vtt"][lang])
        starts = [c["start_ms"] for c in cues]
        assert starts == sorted(starts)
        for c in cues:
            assert 1 <= len(c["lines"]) <= 2 and all(0 < len(line) <= 42 for line in c["lines"]), c
        assert run["snap"]["captions"][lang]["cues"] == len(cues)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_cue_times_match_the_dubbed_spans_plus_d(run, lang):
    spans = dubbed_spans(run)
    assert len(spans) >= 3, run["events"]
    cues = parse_vtt(run["vtt"][lang])
    used = set()
    for span in spans:
        text = span["transcript"] if lang == "en" else next(d["text"] for d in span["dubs"] if d["language"] == lang)
        mine = cues_of(cues, span)
        if not text.strip():
            assert not mine, (span, mine)
            continue
        assert mine, (span, cues)
        assert abs(mine[0]["start_ms"] - (span["start_ms"] + DELAY_MS)) <= TOLERANCE_MS, (span, mine)
        assert abs(mine[-1]["end_ms"] - (span["start_ms"] + span["duration_ms"] + DELAY_MS)) <= TOLERANCE_MS
        assert " ".join(line for c in mine for line in c["lines"]) == " ".join(text.split()), (text, mine)
        used.update(c["seq"] for c in mine)
    # Every cue is a span the STS answered: a dubbed one, or one whose dub came back too late to play.
    late = [e["data"]["start_ms"] + DELAY_MS for e in run["events"]
            if e["type"] == "fallback" and e["data"]["reason"] == "late"]
    for c in cues:
        assert c["seq"] in used or any(t - 1 <= c["start_ms"] < t + 15_000 for t in late), c


def test_sse_feeds_deliver_the_cues_as_they_appear(run):
    spans = dubbed_spans(run)
    for feed, lang in ((run["es_feed"], "es"), (run["en_feed"], "en")):
        assert feed.error is None and feed.status == 200, feed.error
        assert feed.content_type.startswith("text/event-stream")
        got = feed.of("cue")
        vtt = parse_vtt(run["vtt"][lang])
        # The same cues as the document (ids, times, text), each once.
        by_seq = {int(i): d for _, i, d in got}
        assert len(by_seq) == len(got) and sorted(by_seq) == sorted(c["seq"] for c in vtt), (got, vtt)
        for c in vtt:
            d = by_seq[c["seq"]]
            assert abs(d["start_ms"] - c["start_ms"]) <= 1 and abs(d["end_ms"] - c["end_ms"]) <= 1, (d, c)
            assert d["lines"] == c["lines"] and d["language"] == lang and d["seq"] == c["seq"], (d, c)
        assert feed.events[-1][1] == "end"  # sent when the stream was deleted
        # Live: the first cue came while the fixture was still being published, and each came
        # within a second of its span's `dubbed` event (they are added just before the dub is placed).
        assert got[0][0] < run["published_until"], (got[0][0], run["published_until"])
        for span in spans:
            mine = [(t, d) for t, _, d in got if abs(d["start_ms"] - (span["start_ms"] + DELAY_MS)) <= 1]
            if mine:
                assert mine[0][0] <= span["time"] + 1.0, (mine[0], span)
        # On the feed's output clock each dubbed span's cue arrived before it played (slack: the
        # clock runs up to 100 ms ahead, one output batch, plus the delivery to this thread).
        clocks = [(t, d["clock_ms"]) for t, _, d in feed.of("clock") if d["playing"]]
        assert clocks, feed.events
        assert all(b[1] >= a[1] for a, b in zip(clocks, clocks[1:])) and clocks[-1][1] > clocks[0][1]
        # A playing clock runs in real time, judged over the whole run: between two clock events
        # a loaded machine may hold the output thread back and let it catch up.
        wall_ms, media_ms = (clocks[-1][0] - clocks[0][0]) * 1000.0, clocks[-1][1] - clocks[0][1]
        assert abs(media_ms - wall_ms) <= 300.0 + 0.1 * wall_ms, clocks
        for span in spans:
            first = span["start_ms"] + DELAY_MS
            mine = [t for t, _, d in got if abs(d["start_ms"] - first) <= 1]
            before = [(t, c) for t, c in clocks if t <= mine[0]] if mine else []
            if before:
                t_clock, clock = before[-1]
                assert clock + (mine[0] - t_clock) * 1000.0 <= first + 500.0, (span, before[-1], mine[0])


def test_dashboard_shows_captions_under_the_preview(stack):
    with urllib.request.urlopen(stack.media.url + "/", timeout=5) as resp:  # nosec B310
        page = resp.read().decode()
    # A caption feed per card, opened with a signed link (EventSource cannot send the token), and
    # a language selector with the source and every target.
    assert "/captions/" in page and "/link" in page and "new EventSource(" in page
    assert 'title: "caption language"' in page and "s.source_language" in page
    assert "Authorization" in page and "token=" not in page  # the token never goes into a URL
    assert "http://" not in page and "https://" not in page
