"""STS pool (issue 23 #5): which sts-service replica a stream connects to."""

from __future__ import annotations

import asyncio

from media_service.stream.sts_pool import (
    FAILED_COOLDOWN_S,
    Replica,
    StsPool,
    expandable,
    pick,
    resolve_all,
    split_urls,
    with_host,
)


def replica(name: str, *, sessions=0, wait=0.0, workers=1, tie=0.5, **kw) -> Replica:
    return Replica(f"http://{name}:8000", sessions=sessions, estimated_wait_ms=wait, asr_workers=workers,
                   tiebreak=tie, **kw)


def test_fewer_streams_per_worker_wins_among_idle_replicas():
    a, b = replica("a", sessions=3), replica("b", sessions=1)
    assert pick([a, b], 0.0) is b
    # b has one worker, a four: 3/4 streams per worker is less than 1/1
    a4 = replica("a", sessions=3, workers=4)
    assert pick([a4, b], 0.0) is a4


def test_a_replica_whose_fragments_wait_loses_even_with_fewer_streams():
    busy, calm = replica("busy", sessions=0, wait=900.0), replica("calm", sessions=6, wait=20.0)
    assert pick([busy, calm], 0.0) is calm


def test_waits_within_one_step_are_equal_and_streams_decide():
    a, b = replica("a", sessions=2, wait=30.0), replica("b", sessions=1, wait=200.0)
    assert pick([a, b], 0.0) is b
    c, d = replica("c", sessions=1, wait=120.0), replica("d", sessions=1, wait=40.0)
    assert pick([c, d], 0.0) is d  # same step, same streams: the shorter wait


def test_tiebreak_decides_between_equal_replicas():
    a, b = replica("a", tie=0.9), replica("b", tie=0.1)
    assert pick([a, b], 0.0) is b


def test_draining_down_unready_and_excluded_replicas_are_left_out():
    draining = replica("d", draining=True)
    down = replica("x", down_until=10.0)
    loading = replica("l", ready=False)
    busy = replica("b", sessions=9, wait=3000.0)
    assert pick([draining, down, loading, busy], 5.0) is busy
    assert pick([draining, down, loading, busy], 5.0, exclude=frozenset({busy.url})) is None
    assert pick([down], 10.0) is down  # its cool-down is over


def test_which_urls_are_resolved_into_one_replica_per_address():
    assert expandable("http://sts-service:8000")
    assert not expandable("http://127.0.0.1:8000")
    assert not expandable("http://[::1]:8000")
    assert not expandable("http://localhost:8000")  # both families: the same server twice
    assert not expandable("https://sts.example.org")  # the certificate names the host
    assert with_host("http://sts:8000/x", "10.0.0.7") == "http://10.0.0.7:8000/x"
    assert with_host("http://sts:8000", "fd00::7") == "http://[fd00::7]:8000"
    assert split_urls(" http://a:1/ , http://b:2,, ") == ["http://a:1", "http://b:2"]


async def test_a_name_resolves_to_every_address():
    urls = await resolve_all("http://localhost:8123")
    assert "http://127.0.0.1:8123" in urls and len(urls) == len(set(urls))


class FakeLoads(StsPool):
    """A pool whose replicas report fixed loads instead of answering HTTP."""

    def __init__(self, spec, loads, clock):
        super().__init__(spec, clock=clock)
        self.loads, self.polls = loads, 0

    async def _poll(self):
        self.polls += 1
        for r in self.replicas():
            load = self.loads.get(r.url)
            if load is None:
                r.down_until = self._clock() + FAILED_COOLDOWN_S
            else:
                r.sessions, r.estimated_wait_ms, r.draining = load
                r.down_until = 0.0
        self._polled_at = self._clock()


def test_streams_started_together_spread_over_the_replicas():
    now = [100.0]
    pool = FakeLoads("http://127.0.0.1:1,http://127.0.0.1:2",
                     {"http://127.0.0.1:1": (0, 0.0, False), "http://127.0.0.1:2": (0, 0.0, False)},
                     clock=lambda: now[0])
    chosen = [asyncio.run(pool.choose()) for _ in range(6)]
    assert pool.polls == 1  # within REFRESH_S: one poll for all of them
    assert chosen.count("http://127.0.0.1:1") == chosen.count("http://127.0.0.1:2") == 3


def test_a_failed_replica_is_avoided_and_a_draining_one_until_it_recovers():
    now = [100.0]
    a, b = "http://127.0.0.1:1", "http://127.0.0.1:2"
    pool = FakeLoads(f"{a},{b}", {a: (0, 0.0, False), b: (5, 0.0, False)}, clock=lambda: now[0])
    assert asyncio.run(pool.choose()) == a
    pool.mark_failed(a)
    assert asyncio.run(pool.choose()) == b
    assert not pool.others_usable(b) and pool.others_usable(a)
    now[0] += 2.0  # the next poll finds a answering again
    assert asyncio.run(pool.choose()) == a
    pool.loads[a] = (0, 0.0, True)
    now[0] += 2.0
    assert asyncio.run(pool.choose()) == b
    assert asyncio.run(pool.choose(exclude=frozenset({b}))) == a  # nothing else: the connect will say why


def test_with_every_replica_down_the_one_down_longest_ago_is_tried():
    now = [100.0]
    a, b = "http://127.0.0.1:1", "http://127.0.0.1:2"
    pool = FakeLoads(f"{a},{b}", {}, clock=lambda: now[0])
    asyncio.run(pool.choose())
    pool.replicas()[0].down_until = 104.0
    pool.replicas()[1].down_until = 103.0
    pool._polled_at = now[0]  # no new poll
    assert asyncio.run(pool.choose()) == b


def test_one_replica_is_used_without_polling():
    pool = FakeLoads("http://127.0.0.1:9", {}, clock=lambda: 0.0)
    assert asyncio.run(pool.choose()) == "http://127.0.0.1:9"
    assert pool.polls == 0 and pool.single
