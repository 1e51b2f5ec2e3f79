"""Flow control with real worker processes (DESIGN section 9): concurrency limits under
races and crashes, rate limits, delays, pauses and overrides, all enforced in Redis."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from harness import Jobs, Workers

from orchestrator_core import Job, State
from orchestrator_core.states import TERMINAL_STATES

# Read in one atomic step, independently of the slot sets that enforce the limits.
RUNNING_BY_KEY = """
local counts = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local fields = redis.call('HMGET', ARGV[1] .. '{' .. id .. '}', 'type', 'state', 'ckey')
    if fields[1] == ARGV[2] and fields[2] == 'RUNNING' then
        local key = fields[3] or ''
        counts[key] = (counts[key] or 0) + 1
    end
end
local flat = {}
for key, n in pairs(counts) do flat[#flat + 1] = key; flat[#flat + 1] = n end
return flat
"""


def running_by_key(jobs: Jobs, job_type: str) -> dict[str, int]:
    """The RUNNING jobs of ``job_type`` by concurrency key ('' for none), as Redis holds them."""
    store = jobs.store
    flat = store.redis.eval(RUNNING_BY_KEY, 1, store.keys.leases, store.keys.job_stem, job_type)
    return {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}


def running_of(jobs: Jobs, job_type: str) -> int:
    return sum(running_by_key(jobs, job_type).values())


@contextmanager
def observed(sample: Callable[[], int], *, every: float = 0.01) -> Iterator[list[int]]:
    """Samples ``sample()`` every ``every`` seconds while the block runs."""
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(sample())
            done.wait(every)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def settle(jobs: Jobs, ids: list[str], *, timeout: float) -> list[Job]:
    deadline = time.monotonic() + timeout
    while True:
        found = [jobs.store.get(job_id) for job_id in ids]
        if all(job.state in TERMINAL_STATES for job in found):
            return found
        if time.monotonic() > deadline:
            stuck = [job for job in found if job.state not in TERMINAL_STATES]
            raise AssertionError(f"{len(stuck)} jobs never finished, e.g. {stuck[0]}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Race:
    """A limit to race against: ``cap`` running at once of ``job_type`` (of each key)."""

    job_type: str
    cap: int
    keys: tuple[str, ...] = ()
    override: dict[str, int] | None = None

    def busiest(self, jobs: Jobs) -> int:
        counts = running_by_key(jobs, self.job_type)
        return max(counts.values(), default=0) if self.keys else sum(counts.values())


RACES = {
    "concurrency": Race("wt.limited", 3),
    "concurrency_per_key": Race("wt.keyed", 2, keys=tuple(f"tenant-{n}" for n in range(5))),
    "override": Race("wt.free", 3, override={"concurrency": 3}),
}


@pytest.mark.parametrize("race", RACES.values(), ids=RACES.keys())
def test_a_limit_holds_under_races_cancels_and_a_killed_worker(
    workers: Workers, jobs: Jobs, race: Race
) -> None:
    if race.override:
        jobs.store.override(race.job_type, race.override)
    pool = [workers.start(concurrency=2, types=race.job_type) for _ in range(4)]
    rng = random.Random(15)

    def key() -> str | None:
        return rng.choice(race.keys) if race.keys else None

    with observed(lambda: race.busiest(jobs)) as seen:
        ids = [
            jobs.submit(
                race.job_type, {"seconds": rng.uniform(0.02, 0.12)}, concurrency_key=key()
            ).id
            for _ in range(200)
        ]
        for job_id in rng.sample(ids, 20):
            jobs.store.cancel(job_id)
        time.sleep(1.0)
        pool[1].kill()  # SIGKILL, holding slots: they come back when its leases are taken over
        settle(jobs, ids, timeout=120)
    print(f"{race.job_type}: most seen running at once {max(seen)} of {len(seen)} samples")
    assert max(seen) <= race.cap, max(seen)
    assert max(seen) == race.cap  # the limit was reached, not merely never hit
    # No slot leaked: a later burst (of one key) still reaches the cap.
    with observed(lambda: race.busiest(jobs)) as later:
        burst_key = race.keys[0] if race.keys else None
        burst = [
            jobs.submit(race.job_type, {"seconds": 0.5}, concurrency_key=burst_key).id
            for _ in range(2 * race.cap)
        ]
        settle(jobs, burst, timeout=60)
    assert max(later) == race.cap, later
    usage = jobs.store.flow_usage()
    assert usage.running.get(race.job_type, 0) == 0
    assert usage.waiting.get((race.job_type, "concurrency"), 0) == 0


def test_an_override_limits_a_type_at_once_and_its_removal_frees_the_waiters(
    workers: Workers, jobs: Jobs
) -> None:
    workers.start(concurrency=4, types="wt.free")
    workers.start(concurrency=4, types="wt.free")
    assert jobs.store.override("wt.free", {"concurrency": 2}) == {"concurrency": 2}
    with observed(lambda: running_of(jobs, "wt.free")) as seen:
        ids = [jobs.submit("wt.free", {"seconds": 0.1}).id for _ in range(30)]
        settle(jobs, ids, timeout=60)
    assert max(seen) == 2, max(seen)
    # Waiters blocked by the override start as soon as it is removed, not at the next finish.
    ids = [jobs.submit("wt.free", {"seconds": 2.0}).id for _ in range(6)]
    jobs.wait(ids[0], State.RUNNING)
    time.sleep(0.3)
    assert running_of(jobs, "wt.free") == 2
    assert jobs.store.get(ids[-1]).waiting == "concurrency"
    assert jobs.store.override("wt.free", {"concurrency": None}) == {}
    deadline = time.monotonic() + 1.0
    while running_of(jobs, "wt.free") < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running_of(jobs, "wt.free") == 6


def test_a_paused_type_starts_nothing_until_unpaused(workers: Workers, jobs: Jobs) -> None:
    workers.start(concurrency=2, types="wt.free")
    running = jobs.submit("wt.free", {"seconds": 1.0})
    jobs.wait(running.id, State.RUNNING)
    jobs.store.override("wt.free", {"paused": True})
    held = [jobs.submit("wt.free", {"seconds": 0.0}).id for _ in range(3)]
    time.sleep(0.5)
    assert [jobs.store.get(job_id).waiting for job_id in held] == ["paused"] * 3
    assert jobs.store.flow_usage().waiting[("wt.free", "paused")] == 3
    # The running one was let finish.
    assert jobs.wait(running.id, State.COMPLETED).state is State.COMPLETED
    cancelled = jobs.store.cancel(held[0]).job
    assert cancelled.state is State.CANCELLED
    assert cancelled.waiting is None
    unpaused = time.monotonic()
    jobs.store.override("wt.free", {"paused": None})
    for job_id in held[1:]:
        assert jobs.wait(job_id, State.COMPLETED, timeout=5).waiting is None
    assert time.monotonic() - unpaused < 2.0  # woken by the unpause, not by a poll
    assert jobs.store.get(held[0]).started_at is None
    assert jobs.store.flow_usage().waiting.get(("wt.free", "paused"), 0) == 0


def test_a_rate_limit_spaces_the_starts_deployment_wide(workers: Workers, jobs: Jobs) -> None:
    for _ in range(2):
        workers.start(concurrency=3, types="wt.rated")
    began = time.monotonic()
    ids = [jobs.submit("wt.rated", {"seconds": 0.0}).id for _ in range(60)]
    done = settle(jobs, ids, timeout=60)
    took = time.monotonic() - began
    starts = sorted(job.history[1].at.timestamp() for job in done)
    busiest = max(sum(1 for t in starts if first <= t < first + 1.0) for first in starts)
    assert busiest <= 21, busiest
    assert took >= 2.5, took
    assert starts[-1] - starts[0] >= 2.5
    assert took < 15, took  # paced, not stalled: 60 at 20/s is 3 s


def test_delayed_jobs_start_on_time_survive_restarts_and_cancel_at_once(
    workers: Workers, jobs: Jobs
) -> None:
    now_us = int(time.time() * 1_000_000)
    soon = jobs.submit("wt.free", {"seconds": 0.0}, not_before_us=now_us + 1_500_000)
    later = jobs.submit("wt.free", {"seconds": 0.0}, not_before_us=now_us + 4_000_000)
    dropped = jobs.submit("wt.free", {"seconds": 0.0}, not_before_us=now_us + 1_000_000)
    assert soon.waiting == "time"
    assert soon.not_before is not None
    assert jobs.store.get(soon.id).waiting == "time"
    assert jobs.store.cancel(dropped.id).job.state is State.CANCELLED
    first = workers.start(concurrency=2, types="wt.free")
    done = jobs.wait(soon.id, State.COMPLETED, timeout=10)
    assert done.started_at is not None
    assert soon.not_before is not None
    late = (done.started_at - soon.not_before).total_seconds()
    assert 0 <= late < 1.0, late  # within ~100 ms here; loosely bounded on a busy machine
    # Every worker goes away and new ones come: the delayed job still runs, at its time.
    first.kill()
    assert jobs.store.get(later.id).state is State.CREATED
    workers.start(concurrency=2, types="wt.free")
    done = jobs.wait(later.id, State.COMPLETED, timeout=15)
    assert done.started_at is not None
    assert later.not_before is not None
    assert done.started_at >= later.not_before
    time.sleep(0.5)
    assert jobs.store.get(dropped.id).started_at is None
    assert jobs.store.flow_usage().waiting.get(("wt.free", "time"), 0) == 0


def test_waiters_start_by_priority_then_age(workers: Workers, jobs: Jobs) -> None:
    # One slot, so that the starts come one at a time, in the order the waiters are woken.
    jobs.store.override("wt.free", {"concurrency": 1})
    workers.start(concurrency=3, types="wt.free")
    blocker = jobs.submit("wt.free", {"seconds": 1.0}).id
    jobs.wait(blocker, State.RUNNING)
    low = [jobs.submit("wt.free", {"seconds": 0.02}, priority=1).id for _ in range(4)]
    high = [jobs.submit("wt.free", {"seconds": 0.02}, priority=8).id for _ in range(4)]
    for job_id in low + high:
        jobs.wait(job_id, lambda job: job.waiting == "concurrency")
    finished = settle(jobs, [blocker, *low, *high], timeout=60)
    started = {job.id: job.history[1].at for job in finished}
    order = sorted(low + high, key=lambda job_id: started[job_id])
    assert order == high + low
