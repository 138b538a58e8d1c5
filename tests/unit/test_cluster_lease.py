"""Stream leases (media_service/cluster/lease.py) against a real redis-server: one owner, fences
that only grow (also across a Redis that restarted empty), a lost lease revoked at once, and a
local validity that runs from when a renewal was sent, not from when it was answered."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from media_service.cluster import lease as lease_module
from media_service.cluster.lease import LeaseClock, Leases, Renewal, margin_for
from media_service.cluster.placement import assign, choose, headroom
from media_service.cluster.replicas import ReplicaLoad

redis_asyncio = pytest.importorskip("redis.asyncio", reason="redis-py (the media-service dependency) is missing")


def run(coro):
    return asyncio.run(coro)


async def _client(url):
    return redis_asyncio.from_url(url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1)


def test_one_owner_and_fences_that_grow(redis_server):
    async def main():
        r = await _client(redis_server.url)
        a, b = Leases(r, "a", ttl_s=1.0), Leases(r, "b", ttl_s=1.0)
        lease, holder = await a.acquire("s1")
        assert lease is not None and holder is None and lease.fence == 1
        second, holder = await b.acquire("s1")
        assert second is None and holder == ("a", 1)
        await asyncio.sleep(1.2)  # a stopped renewing: the key expires in Redis
        second, _ = await b.acquire("s1")
        assert second is not None and second.fence == 2
        # a wakes up: its renewal finds b's lease, it is told it lost and its clock is revoked
        [(outcome, holder)] = await a.renew_all([lease])
        assert outcome == Renewal.LOST and holder == ("b", 2) and not lease.clock.valid()
        assert await a.release(lease) is False  # a stale release leaves b's lease alone
        assert (await b.holders(["s1"]))["s1"] == ("b", 2)
        assert await b.release(second) is True
        assert (await b.holders(["s1"]))["s1"] is None
        await r.aclose()
    run(main())


def test_racing_acquirers_get_exactly_one_lease(redis_server):
    async def main():
        clients = [await _client(redis_server.url) for _ in range(5)]
        got = await asyncio.gather(*(Leases(c, f"r{i}", 3.0).acquire("race") for i, c in enumerate(clients)))
        assert sum(1 for lease, _ in got if lease is not None) == 1
        for c in clients:
            await c.aclose()
    run(main())


def test_a_redis_restarted_empty_gives_the_lease_back_with_a_higher_fence(redis_server):
    async def main():
        r = await _client(redis_server.url)
        leases = Leases(r, "a", ttl_s=3.0)
        for _ in range(3):  # fence counter at 3
            lease, _ = await leases.acquire("s")
            await leases.release(lease)
        lease, _ = await leases.acquire("s")
        assert lease.fence == 4
        await asyncio.get_running_loop().run_in_executor(None, redis_server.restart)
        for _ in range(20):  # the client reconnects by itself
            try:
                [(outcome, _)] = await leases.renew_all([lease])
                break
            except Exception:
                await asyncio.sleep(0.1)
        assert outcome == Renewal.REACQUIRED
        assert lease.fence == 5  # above every token handed out before the restart
        assert (await leases.holders(["s"]))["s"] == ("a", 5)
        await r.aclose()
    run(main())


def test_renewal_validity_runs_from_when_it_was_sent(redis_server, monkeypatch):
    """The leases' clock is stopped and moved by hand; Redis's answer takes half a second of it."""
    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr(lease_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    valid_for = 2.0 - margin_for(2.0)

    async def main():
        r = await _client(redis_server.url)
        real_pipeline = r.pipeline

        def slow_pipeline(*args, **kwargs):
            pipe = real_pipeline(*args, **kwargs)
            execute = pipe.execute

            async def answered_later(*a, **kw):
                clock.now += 0.5
                return await execute(*a, **kw)

            pipe.execute = answered_later
            return pipe

        r.pipeline = slow_pipeline
        leases = Leases(r, "a", ttl_s=2.0)
        lease, _ = await leases.acquire("s")
        assert lease.clock.remaining() == pytest.approx(valid_for)
        clock.now += 0.3
        [(outcome, _)] = await leases.renew_all([lease])  # sent at 100.3, answered at 100.8
        assert outcome == Renewal.RENEWED
        assert lease.clock.remaining() == pytest.approx(valid_for - 0.5), "validity counted from the answer"
        await r.aclose()
    run(main())


def test_renewal_with_redis_gone_confirms_nothing(redis_server):
    async def main():
        r = await _client(redis_server.url)
        leases = Leases(r, "a", ttl_s=1.0)
        lease, _ = await leases.acquire("s")
        redis_server.stop()
        with pytest.raises((redis_asyncio.ConnectionError, redis_asyncio.TimeoutError)):
            await leases.renew_all([lease])
        await asyncio.sleep(1.0 - margin_for(1.0) + 0.05)
        assert not lease.clock.valid()  # the owner stops writing before Redis could expire the key
        await r.aclose()
    run(main())


def test_clock_logic():
    clock = LeaseClock(ttl_s=3.0, margin_s=0.6)
    assert not clock.valid(now=0.0)
    clock.confirmed(sent_at=10.0)
    assert clock.valid(now=12.3) and not clock.valid(now=12.4)
    clock.confirmed(sent_at=9.0)  # a late answer to an older renewal never shortens it... nor extends it
    assert clock.remaining(now=12.0) == pytest.approx(0.4)
    clock.revoke()
    assert not clock.valid(now=10.0)


def test_placement_prefers_headroom_and_spreads_orphans():
    a = ReplicaLoad("a", "http://a", streams=["x", "y"], max_streams=4)
    b = ReplicaLoad("b", "http://b", streams=[], max_streams=4, cpu_share=0.1)
    c = ReplicaLoad("c", "http://c", streams=[], max_streams=4, input_lag_s=2.0)  # behind: no headroom
    assert choose([a, b, c]).id == "b"
    assert choose([a, b, c], pending={"b": 3}).id == "a"
    assert choose([a, b], exclude=["b"]).id == "a"
    assert headroom(ReplicaLoad("d", "", streams=["1"], max_streams=1)) == float("-inf")
    busy = ReplicaLoad("f", "", streams=["1", "2", "3", "4"], max_streams=16, cpu_share=0.95)
    assert headroom(busy) == float("-inf")  # its one core is used up
    assert headroom(ReplicaLoad("g", "", streams=["1", "2", "3", "4"], max_streams=16, cpu_share=0.6)) == 12
    assert choose([ReplicaLoad("h", "", cpu_share=0.3), ReplicaLoad("i", "", cpu_share=0.1)]).id == "i"
    assert headroom(ReplicaLoad("e", "", draining=True)) == float("-inf")
    plan = assign(["s1", "s2", "s3", "s4"], [ReplicaLoad("a", ""), ReplicaLoad("b", ""), ReplicaLoad("dead", "")],
                  exclude_of={s: "dead" for s in ("s1", "s2", "s3", "s4")})
    assert sorted(plan.values()) == ["a", "a", "b", "b"]


def test_the_output_gate_refuses_writes_and_kills_the_relay_once_the_lease_runs_out():
    from media_service.cluster.gate import LEASE_LOST, GatedWriter
    from media_service.media_io.output import OutputError

    class Relay:
        killed = False

        def kill(self):
            self.killed = True

    class Writer:
        def __init__(self):
            self.relay, self.frames = Relay(), 0

        def write_audio(self, *args):
            self.frames += 1

        def write_video(self, *args):
            self.frames += 1

    clock = LeaseClock(ttl_s=3.0)
    clock.confirmed(sent_at=__import__("time").monotonic())
    inner = Writer()
    writer = GatedWriter(inner, clock.valid)
    writer.write_audio(None, 0)
    writer.write_video(None, 0)
    assert inner.frames == 2 and writer.relay is inner.relay  # everything else reaches the writer
    clock.revoke()
    with pytest.raises(OutputError) as refused:
        writer.write_audio(None, 0)
    assert refused.value.kind == LEASE_LOST and inner.frames == 2 and inner.relay.killed


def test_cluster_settings_are_checked_and_a_token_is_required(capsys, monkeypatch):
    from livedub_protocol.settings import ConfigError
    from media_service.__main__ import main
    from media_service.config import parse_args

    env = {"STS_AUTH_TOKEN": "Zq7-test-token-4821-xk"}
    cfg = parse_args(["--redis-url", "redis://:pw-4821@127.0.0.1:6379/0", "--lease-ttl", "2"], env)
    assert cfg.redis_url.startswith("redis://") and cfg.lease_ttl_s == 2.0 and cfg.advertise_url is None
    with pytest.raises(ConfigError, match="--redis-url") as err:
        parse_args(["--redis-url", "http://:pw-4821@127.0.0.1:6379"], env)
    assert "pw-4821" not in str(err.value)  # a Redis password never appears in messages
    with pytest.raises(ConfigError, match="--lease-ttl"):
        parse_args(["--lease-ttl", "0.5"], env)
    # Replicas forward requests with the API token: a generated one would differ per replica.
    monkeypatch.setenv("STS_AUTH_TOKEN", env["STS_AUTH_TOKEN"])
    monkeypatch.delenv("MEDIA_API_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--redis-url", "redis://127.0.0.1:6379/0"])
    assert exit_.value.code == 2 and "MEDIA_API_TOKEN" in capsys.readouterr().err
