"""Cluster mode's parts that need no cluster: placement by free capacity, the channel between
a front door and a worker, the measured capacity, and the one-line errors (Ray missing, bad
options). The cluster itself is tested in test_cluster.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from realtime_sda.cluster.placement import WorkerLoad, rank_workers


def test_placement_prefers_most_free_capacity_and_skips_full_or_starting():
    loads = [WorkerLoad("a", 3, 4), WorkerLoad("b", 1, 4), WorkerLoad("c", 0, 2), WorkerLoad("d", 8, 8),
             WorkerLoad("e", 0, 10, ready=False)]
    assert [w.name for w in rank_workers(loads)] == ["b", "c", "a"]  # free 3, 2, 1; d full; e starting
    assert rank_workers([WorkerLoad("x", 2, 2), WorkerLoad("y", 5, 4)]) == []  # all busy
    # equal free capacity: the less loaded fraction first, then the name
    assert [w.name for w in rank_workers([WorkerLoad("p", 6, 8), WorkerLoad("q", 0, 2)])] == ["q", "p"]
    assert WorkerLoad.from_report("w", {"sessions": 1, "capacity": 3, "ready": True}).free == 2
    assert WorkerLoad.from_report("w", {}).free == 0


class _Remote:
    """A Ray method handle's stand-in (``.remote(...)`` gives an awaitable), for the front
    door's bookkeeping alone: a worker whose load report takes ``delay`` seconds."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class _Worker:
    def __init__(self, name: str) -> None:
        self.name, self.sessions, self.delay = name, 0, 0.0
        self.load = _Remote(self._load)
        self.open = _Remote(self._open)

    async def _load(self) -> dict:
        seen = self.sessions  # what the worker holds when it is asked
        await asyncio.sleep(self.delay)
        return {"worker": self.name, "ready": True, "sessions": seen, "capacity": 2}

    async def _open(self, channel_id: str) -> dict:
        self.sessions += 1
        return {"worker": self.name, "node": "127.0.0.1"}


def test_pages_placed_while_loads_are_read_stay_counted():
    """A load poll that was asked before a page was placed must not make the door forget that
    page: three pages placed around a slow poll go to three idle workers, not two."""
    pytest.importorskip("ray")
    from realtime_sda.cluster import FrontDoor, FrontDoorConfig

    workers = {f"w{i}": _Worker(f"w{i}") for i in range(3)}
    door = FrontDoor(FrontDoorConfig(port=0), find=lambda: workers)

    async def main() -> list[str]:
        await door.refresh(find=True)
        for w in workers.values():
            w.delay = 0.2
        poll = asyncio.ensure_future(door.refresh())  # asks every worker now, answers later
        await asyncio.sleep(0.05)
        first = await door.place()  # placed while the poll's answers are on their way
        await poll
        rest = [await door.place(), await door.place()]
        return [p[0] for p in [first, *rest] if p is not None]

    placed = asyncio.run(main())
    assert sorted(placed) == ["w0", "w1", "w2"], placed


def test_channel_carries_both_ways_and_ends():
    from realtime_sda.cluster.channel import Channel, ChannelClosed

    async def main():
        ch = Channel("w/1")
        got = []

        async def reader():
            async for raw in ch:
                got.append(raw)
                await ch.send(f"echo {raw}")

        task = asyncio.ensure_future(reader())
        await ch.put("one")
        await ch.put(b"\x00photo")
        out, closed = await ch.take(2.0)
        while len(out) < 2:
            more, closed = await ch.take(2.0)
            out += more
        empty = await ch.take(0.05)
        ch.hang_up()
        await asyncio.wait_for(task, 2.0)
        await ch.close()
        with pytest.raises(ChannelClosed):
            await ch.send("late")
        return got, out, closed, empty, await ch.take(0.0)

    got, out, closed, empty, last = asyncio.run(main())
    assert got == ["one", b"\x00photo"]
    assert out == ["echo one", "echo b'\\x00photo'"] and not closed
    assert empty == ([], False)
    assert last == ([], True)


def test_capacity_is_measured_on_the_model(tiny_model, one_torch_thread):
    pytest.importorskip("aiortc")
    from realtime_sda.cluster.capacity import measure_capacity

    cap = measure_capacity(tiny_model, limit=6, frame_size=tuple(tiny_model.config.img_size))
    assert 0 <= cap.sessions <= 6 and cap.limit == 6 and cap.period_ms == 40.0
    assert 1 in cap.step_ms and all(ms > 0 for ms in cap.step_ms.values())
    assert cap.encode_ms > 0
    budget = cap.budget * cap.period_ms
    if cap.sessions:  # what it admits fits its budget on both counts
        assert cap.sessions * cap.encode_ms <= budget * cap.media_threads
    assert cap.as_dict()["step_ms"]["1"] == round(cap.step_ms[1], 2)


def test_import_does_not_import_ray():
    code = "import sys, realtime_sda, realtime_sda.cluster, realtime_sda.cli.serve; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_missing_ray_is_one_clear_line(monkeypatch):
    from realtime_sda.cluster.launch import ray_module
    from realtime_sda.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingDependencyError) as err:
        ray_module()
    text = str(err.value)
    assert "pip install 'realtime-sda[cluster]'" in text and "\n" not in text


def test_serve_cluster_bad_worker_cpus_is_one_line(cli):
    pytest.importorskip("ray")
    out = cli(["serve", "--cluster", "auto", "--worker-cpus", "0"], timeout=120)
    assert out.returncode != 0
    assert "--worker-cpus must be at least 1, got 0" in out.stderr
    assert "Traceback" not in out.stderr
