"""A worker starts the waiting jobs of its queue highest priority first, and consumes a
queue of an earlier release (without priorities) as it is."""

from __future__ import annotations

from harness import Jobs, Workers
from kombu import Connection

from orchestrator_core import State
from orchestrator_core.dispatch.broker import UPGRADE_COMMAND, job_queue, queue_name
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.settings import Settings
from orchestrator_core.store.keys import Keys


def test_high_priority_jobs_start_before_a_backlog_of_low_ones(
    workers: Workers, jobs: Jobs, worker_settings: Settings
) -> None:
    echo = jobs.plugins.get("demo.echo").job_type
    submitter = Submitter(jobs.store, jobs.publisher)
    low = submitter.submit_here(
        [submitter.new_job(echo, {"message": f"low {n}"}) for n in range(20)]
    ).jobs
    high = submitter.submit_here(
        [submitter.new_job(echo, {"message": f"high {n}"}, priority=9) for n in range(5)]
    ).jobs

    workers.start(concurrency=1, types="demo.echo")

    done = {job.id: jobs.wait(job.id, State.COMPLETED) for job in (*low, *high)}
    last_high = max(done[job.id].started_at for job in high)  # type: ignore[type-var]
    ahead = [job for job in low if done[job.id].started_at < last_high]  # type: ignore[operator]
    # At most the messages the worker had reserved before the high ones came first.
    prefetched = worker_settings.prefetch_multiplier * 1
    assert len(ahead) <= prefetched < len(low)


def test_a_worker_consumes_a_queue_without_priorities_and_says_how_to_upgrade_it(
    workers: Workers, jobs: Jobs, worker_settings: Settings
) -> None:
    keys = Keys(worker_settings.prefix)
    name = queue_name(keys, jobs.plugins.get("demo.echo").job_type)
    with Connection(worker_settings.broker_url) as connection:
        job_queue(keys, name, priorities=False)(connection.channel()).declare()
    waiting = jobs.submit("demo.echo", {"message": "queued before the worker"})

    worker = workers.start(concurrency=1, types="demo.echo")

    jobs.wait(waiting.id, State.COMPLETED)
    later = jobs.submit("demo.echo", {"message": "queued after"})
    jobs.wait(later.id, State.COMPLETED)
    assert name in worker.text()
    assert UPGRADE_COMMAND in worker.text()
