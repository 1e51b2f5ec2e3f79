"""The submitter: many requests share a store call and a run of publishes, each keeps
its own outcome; against the machine's real Redis and RabbitMQ."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel
from queues import ready_messages

from orchestrator_core import (
    BrokerUnavailableError,
    CancellationToken,
    IdempotencyConflictError,
    JobType,
)
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.settings import Settings
from orchestrator_core.store import JobStore, Submitted


class Empty(BaseModel):
    n: int = 0


def noop(payload: Empty, token: CancellationToken) -> None:
    """Does nothing."""


DEMO = JobType(name="t.demo", payload=Empty, execute=noop, max_attempts=2)


def counting(calls: list[int], method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return method(*args, **kwargs)

    return wrapper


def test_concurrent_requests_share_round_trips_and_each_gets_its_own_job(
    broker_store: JobStore, publisher: Publisher, broker_settings: Settings
) -> None:
    calls: list[int] = []
    broker_store.submit = counting(calls, broker_store.submit)  # type: ignore[method-assign]
    submitter = Submitter(broker_store, publisher)
    results: list[Submitted] = []
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def client(n: int) -> None:
        barrier.wait()
        result = submitter.submit([submitter.new_job(DEMO, {"n": n})])
        with lock:
            results.append(result)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitter.close()

    jobs = [result.jobs[0] for result in results]
    assert sorted(job.payload["n"] for job in jobs) == list(range(40))
    assert len({job.id for job in jobs}) == 40
    assert all(result.created for result in results)
    assert {job.max_attempts for job in jobs} == {2}
    assert ready_messages(broker_settings, f"{broker_settings.prefix}.t.demo") == 40
    assert broker_store.redis.zcard(broker_store.keys.outbox) == 0
    assert sum(calls) == 40
    assert len(calls) < 40, "some requests shared a store call"


def test_each_request_keeps_its_own_outcome(broker_store: JobStore, publisher: Publisher) -> None:
    submitter = Submitter(broker_store, publisher)
    first = submitter.submit([submitter.new_job(DEMO, {"n": 1})], idempotency_key="k")
    futures = [
        submitter.begin([submitter.new_job(DEMO, {"n": 2})]),
        submitter.begin([submitter.new_job(DEMO, {"n": 3})], idempotency_key="k"),
        submitter.begin([submitter.new_job(DEMO, {"n": 1})], idempotency_key="k"),
        submitter.begin([submitter.new_job(DEMO, {"n": n}) for n in range(4, 9)]),
    ]
    fresh, conflict, repeat, batch = futures

    assert fresh.result().created
    with pytest.raises(IdempotencyConflictError):
        conflict.result()
    assert (repeat.result().created, repeat.result().jobs) == (False, first.jobs)
    assert [job.payload["n"] for job in batch.result().jobs] == [4, 5, 6, 7, 8]
    submitter.close()


def test_an_unreachable_broker_fails_every_request_and_leaves_no_job(
    broker_store: JobStore, unreachable_publisher: Publisher
) -> None:
    submitter = Submitter(broker_store, unreachable_publisher)
    futures = [submitter.begin([submitter.new_job(DEMO, {"n": n})]) for n in range(10)]
    for future in futures:
        with pytest.raises(BrokerUnavailableError):
            future.result(timeout=20)
    submitter.close()
    assert broker_store.list_jobs().items == ()
    assert broker_store.redis.zcard(broker_store.keys.outbox) == 0


def test_a_closed_submitter_refuses_new_requests(
    broker_store: JobStore, publisher: Publisher
) -> None:
    submitter = Submitter(broker_store, publisher)
    assert submitter.submit([submitter.new_job(DEMO, {})]).created
    submitter.close()
    with pytest.raises(BrokerUnavailableError):
        submitter.begin([submitter.new_job(DEMO, {})])
