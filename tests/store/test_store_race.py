"""20 threads and 4 processes race conflicting transitions on the same jobs.

Each racer reads a job, picks a move the table allows from what it saw (or a
deliberately stale lease), and tries it; Redis decides. Whatever the interleaving,
every job must end in exactly one terminal state with a legal history that holds
one entry per successful move, and stale leases must never win.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading
from dataclasses import dataclass
from typing import Any

import redis

from orchestrator_core import (
    AttemptsExhaustedError,
    IllegalTransitionError,
    StaleLeaseError,
    State,
)
from orchestrator_core.settings import Settings, load_settings
from orchestrator_core.states import TRANSITIONS
from orchestrator_core.store import CancelOutcome, JobStore
from orchestrator_core.store.connection import connect_redis

THREADS = 20
PROCESSES = 4
JOBS = 6
MAX_STEPS = 400


@dataclass
class Tally:
    moves: dict[str, int]
    stale_refused: int = 0
    stale_won: int = 0


def race(store: JobStore, job_ids: list[str], name: str, seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally(moves=dict.fromkeys(job_ids, 0))
    for job_id in job_ids:
        leases: list[str] = []
        for step in range(MAX_STEPS):
            job = store.get(job_id)
            if job.terminal:
                break
            try:
                if job.state is State.RUNNING:
                    stale = not leases or rng.random() < 0.2
                    fence = f"{name}:stale:{step}" if stale else leases[-1]
                    target = rng.choices(
                        [State.RETRYING, State.COMPLETED, State.FAILED, State.CANCELLED],
                        weights=[85, 5, 5, 5],
                    )[0]
                    try:
                        store.transition(job_id, target, fence=fence)
                    except StaleLeaseError:
                        tally.stale_refused += stale
                        continue
                    tally.stale_won += stale
                elif rng.random() < 0.05:
                    if store.cancel(job_id).outcome is not CancelOutcome.CANCELLED:
                        continue
                else:
                    owner = f"{name}:{step}"
                    store.transition(job_id, State.RUNNING, owner=owner)
                    leases.append(owner)
            except (IllegalTransitionError, StaleLeaseError, AttemptsExhaustedError):
                continue
            tally.moves[job_id] += 1
    return tally


def _process_racer(
    settings: Settings, job_ids: list[str], n: int, ready: Any, go: Any, results: Any
) -> None:
    store = JobStore(connect_redis(settings), prefix=settings.prefix)
    ready.release()
    go.wait()
    results.put(race(store, job_ids, f"p{n}", seed=1000 + n))


def test_racing_writers_leave_one_terminal_state_and_a_complete_legal_history(
    store: JobStore, redis_client: redis.Redis, settings: Settings
) -> None:
    job_ids = [store.create("t.race", {"i": i}, max_attempts=10_000).id for i in range(JOBS)]
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    child_settings = load_settings(prefix=settings.prefix)
    processes = [
        context.Process(
            target=_process_racer,
            args=(child_settings, job_ids, n, ready, go, results),
        )
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    tallies: list[Tally] = []
    lock = threading.Lock()

    def thread_racer(n: int) -> None:
        go.wait()
        tally = race(store, job_ids, f"t{n}", seed=n)
        with lock:
            tallies.append(tally)

    threads = [threading.Thread(target=thread_racer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for _ in processes:
        assert ready.acquire(timeout=60), "a racer process did not start"
    go.set()
    for thread in threads:
        thread.join(timeout=90)
    tallies.extend(results.get(timeout=90) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    assert len(tallies) == THREADS + PROCESSES
    assert sum(t.stale_won for t in tallies) == 0
    assert sum(t.stale_refused for t in tallies) > 0
    for job_id in job_ids:
        job = store.get(job_id)
        states = [entry.state for entry in job.history]
        assert job.terminal, f"{job_id} ended {job.state}"
        assert [s for s in states if s.terminal] == [job.state], "exactly one terminal state"
        for before, after in itertools.pairwise(states):
            assert after in TRANSITIONS[before], f"illegal {before}->{after} in history"
        assert len(states) == 1 + sum(t.moves[job_id] for t in tallies), "a history entry was lost"
        assert job.attempts == states.count(State.RUNNING)
        assert [entry.attempt for entry in job.history] == sorted(
            entry.attempt for entry in job.history
        )
        instants = [entry.at for entry in job.history]
        assert instants == sorted(instants)
        indexed = [
            s
            for s in State
            if redis_client.zscore(
                store.keys.leases
                if s is State.RUNNING
                else store.keys.index_type_state(job.type, s),
                job_id,
            )
        ]
        assert indexed == [job.state]
