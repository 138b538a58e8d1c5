"""Fragment limits from the output delay D: every fragment must be cut, dubbed and placed before
its first sample plays, D after it arrived.

A span that starts arriving at t is sent at the latest at t + max_fragment + min_silence (it ends
by a silence run, or is cut at the maximum), and its dub must be placed by t + D - margin. So

    max_fragment = D - margin - min_silence - slack - round_trip

with the round trip the stream has measured (p95 of recent fragments; RTT_START_S until then).
The playout's round, one of the terms, is declared here and used by the playout.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH_S = 0.1  # the playout writes what is due within this much each round: ~20 wake-ups a second, not ~80
PLACE_S = 0.05  # placing a dub (decode and resample in the default executor), with room to spare
# The dub must be placed this long before its first sample's nominal render time (arrival + D): a
# frame is rendered up to one playout round early.
DEADLINE_MARGIN_S = BATCH_S + PLACE_S
# From a span's last sample to its fragment being sent: the capture's VAD block (capture.VAD_BLOCK),
# one VAD window, and the hops to the event loop (test_budget checks it covers the first two).
SLACK_S = 0.15
# The shortest round trip D must allow for (an idle sts-service): what check_delay assumes. About
# twice an idle service's p99 on the slower machine (bench/README.md), so D = 2 s fits one stream.
RTT_SEED_S = 0.50
# Assumed until the stream has measured 3 answers: streams started together share one sts-service,
# whose first bursts queue, so the round trip of an idle service would cut their first fragments too
# long (bench/README.md, "Measurements behind the code").
RTT_START_S = 1.0
MIN_USEFUL_FRAGMENT_S = 1.0  # below this a dub is rarely worth it: D must leave room for it


class DelayTooShort(ValueError):
    """D leaves no room for a useful fragment and its round trip."""


@dataclass(frozen=True)
class FragmentLimits:
    max_fragment_ms: float
    min_silence_ms: float


def min_silence_for(delay_s: float, cap_ms: float) -> float:
    """Shorter D, shorter pause that closes a span (150 ms at most D <= 2.5 s, up to the cap)."""
    return min(cap_ms, max(150.0, 60.0 * delay_s))


def fragment_limits(delay_s: float, rtt_s: float | None, *, cap_ms: float, min_silence_cap_ms: float) -> FragmentLimits:
    silence_ms = min_silence_for(delay_s, min_silence_cap_ms)
    rtt = RTT_START_S if rtt_s is None else rtt_s
    room_s = delay_s - DEADLINE_MARGIN_S - SLACK_S - silence_ms / 1000.0 - rtt
    return FragmentLimits(min(cap_ms, max(MIN_USEFUL_FRAGMENT_S, room_s) * 1000.0), silence_ms)


def check_delay(delay_s: float, *, min_silence_cap_ms: float) -> None:
    """Refuse a D that cannot hold even a minimal fragment with the seed round trip."""
    silence_s = min_silence_for(delay_s, min_silence_cap_ms) / 1000.0
    need = MIN_USEFUL_FRAGMENT_S + DEADLINE_MARGIN_S + SLACK_S + silence_s + RTT_SEED_S
    if delay_s < need:
        raise DelayTooShort(
            f"output_delay_s: {delay_s:g} s is too short: a {MIN_USEFUL_FRAGMENT_S:g} s fragment, the "
            f"{silence_s * 1000:.0f} ms pause that ends it, a {RTT_SEED_S:g} s round trip and a "
            f"{DEADLINE_MARGIN_S + SLACK_S:g} s margin need at least {need:.2f} s")
