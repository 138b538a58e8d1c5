"""Prometheus metrics of the media-service (names are a contract with deploy/grafana)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .states import StsState

_RTT_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0)


class MediaMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.fragments_sent = Counter("media_fragments_sent", "Speech fragments sent to the STS service",
                                      ["stream"], registry=r)
        self.fragments_processed = Counter("media_fragments_processed", "STS results received, by status",
                                           ["stream", "status"], registry=r)
        self.fallbacks = Counter("media_fallback", "Speech spans played with the original audio, by reason",
                                 ["stream", "reason"], registry=r)
        self.late_start = Histogram("media_dub_late_start_seconds",
                                    "How long after its span's start a late dub was placed (instead of a fallback)",
                                    ["stream"], buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0), registry=r)
        self.roundtrip = Histogram("media_fragment_roundtrip_seconds", "Fragment send -> result time",
                                   ["stream"], buckets=_RTT_BUCKETS, registry=r)
        self.output_delay = Gauge("media_output_delay_seconds", "Measured input arrival -> output write delay",
                                  ["stream"], registry=r)
        self.av_offset = Gauge("media_av_offset_seconds", "Audio minus video timing at the output muxer",
                               ["stream"], registry=r)
        self.streams_active = Gauge("media_streams_active", "Stream workers running", registry=r)
        self.sts_connected = Gauge("media_sts_connected", "1 while the stream's STS connection is up",
                                   ["stream"], registry=r)
        self.sts_state = Gauge("media_sts_connection_state", "STS connection state (1 = current)",
                               ["stream", "state"], registry=r)
        self.input_undecodable = Counter("media_input_undecodable", "Input audio packets skipped as undecodable",
                                         ["stream"], registry=r)
        self.input_up = Gauge("media_input_up", "1 while the input is being read", ["stream"], registry=r)
        self.input_lag = Gauge("media_input_lag_seconds",
                               "How far the reading has fallen behind the live input (grows when the reader "
                               "cannot keep up; not part of media_output_delay_seconds)", ["stream"], registry=r)
        self.output_up = Gauge("media_output_up", "1 while the output is being written", ["stream"], registry=r)
        self.output_loudness = Gauge(
            "media_output_loudness_lufs",
            "Programme loudness of a language's output (ITU-R BS.1770-4), by window: momentary 400 ms, "
            "short_term 3 s, integrated (gated, since the stream started)",
            ["stream", "language", "window"], registry=r)
        self.takeovers = Counter("media_stream_takeovers",
                                 "Streams this replica took over from another (cluster mode), by reason: "
                                 "lease_expired (the owner died or was cut off) or handover (it stopped)",
                                 ["reason"], registry=r)
        self.limit = Gauge("media_limit", "Configured limit, by name", ["limit"], registry=r)
        self.limit_refusals = Counter("media_limit_refusals", "Requests refused at a limit, by name", ["limit"],
                                      registry=r)

    def set_sts_state(self, stream: str, state: StsState) -> None:
        for s in StsState:
            self.sts_state.labels(stream, s.value).set(1 if s == state else 0)
        self.sts_connected.labels(stream).set(1 if state == StsState.CONNECTED else 0)

    def forget(self, stream: str) -> None:
        """Drop every series of a stopped stream (gauges, counters, histograms, all label
        combinations): stream ids come and go, and series kept for ended streams grow without
        bound. A scrape between the last increment and the stop may miss it; rate() over the
        remaining series is unaffected."""
        for metric in (self.fragments_sent, self.fragments_processed, self.fallbacks, self.roundtrip,
                       self.output_delay, self.av_offset, self.sts_connected, self.sts_state,
                       self.input_undecodable, self.input_up, self.input_lag, self.output_up, self.output_loudness):
            metric.remove_by_labels({"stream": stream})
