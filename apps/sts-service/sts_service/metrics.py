"""Prometheus metrics of the sts-service (names are a contract with deploy/grafana)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGES = ("asr", "translation", "tts", "fit", "total")
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)


class StsMetrics:
    """One registry per server instance, so tests can run several servers in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "sts_stage_duration_seconds", "Time spent per pipeline stage for one fragment",
            ["stage"], buckets=_BUCKETS, registry=self.registry,
        )
        self.fragments = Counter(
            "sts_fragments", "Fragments processed, by outcome", ["status"], registry=self.registry
        )
        self.errors = Counter("sts_errors", "Errors by protocol error code", ["code"], registry=self.registry)
        self.inflight = Gauge("sts_inflight_fragments", "Fragments accepted and not yet answered",
                              registry=self.registry)
        self.sessions = Gauge("sts_sessions", "Open stream sessions", registry=self.registry)
        self.connections = Gauge("sts_connections", "Connected Socket.IO clients", registry=self.registry)
        self.asr_queue = Gauge("sts_asr_queue_depth", "Fragments waiting for ASR (all connections)",
                               registry=self.registry)
        self.asr_batch_size = Histogram("sts_asr_batch_size", "Fragments per batched ASR call",
                                        buckets=(1, 2, 3, 4, 6, 8), registry=self.registry)
        self.asr_calls = Counter("sts_asr_calls", "Batched ASR calls by decoding (beam, or greedy under load)",
                                 ["decoding"], registry=self.registry)
        self.deadline_exceeded = Counter(
            "sts_deadline_exceeded", "Fragments answered deadline_exceeded, by the stage that would have run",
            ["stage"], registry=self.registry)
        self.work_on_expired = Counter(
            "sts_work_on_expired", "Work started on a fragment whose deadline had passed (should stay 0)",
            registry=self.registry)
        self.asr_left_context = Counter(
            "sts_asr_left_context", "Fragments heard behind the one before: after a cut (`used`) or a pause "
            "(`used_after_pause`); heard alone after a pause because the deadline had no room for it "
            "(`skipped_busy`); cold because its words were not back in time (`cold`); words handed over to "
            "the next fragment at a cut (`word_handed_over`)",
            ["outcome"], registry=self.registry)
        self.asr_reruns = Counter(
            "sts_asr_full_window_reruns", "Fragments decoded again with the full 30 s window, by the "
            "truncation guard that asked for it (each costs ~3 sized calls)", ["guard"], registry=self.registry)
        self.late_start = Histogram(
            "sts_late_start_seconds", "How late a dub starts after its span's start, when the fragment's "
            "late_start_ms let the server fit it to the rest of the span instead of failing it",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0), registry=self.registry)
        self.dub_gain_db = Histogram(
            "sts_dub_gain_db", "Gain that level-matched a dub to its original span (BS.1770 loudness)",
            buckets=(-24, -18, -12, -9, -6, -3, 0, 3, 6, 9, 12, 18, 24), registry=self.registry)
        self.ready = Gauge("sts_ready", "1 once the models are loaded", registry=self.registry)
        self.draining = Gauge("sts_draining", "1 while shutting down: new streams are refused",
                              registry=self.registry)
        for status in ("ok", "no_speech", "failed"):
            self.fragments.labels(status)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for stage in ("asr", "translation", "tts", "fit"):
            self.deadline_exceeded.labels(stage)
