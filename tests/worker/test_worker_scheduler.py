"""Cron schedules fired by the workers: one job per fire, however many schedulers race and
whichever of them dies, over the machine's real Redis and RabbitMQ."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from cleanup import delete_broker_objects
from cryptography.fernet import Fernet
from harness import FIXTURES, Jobs, Workers

from orchestrator_core import Job, Plugins, Settings, State, load_plugins, load_settings
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.models import format_instant
from orchestrator_core.schedules import Schedule
from orchestrator_core.sealing import Sealer
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.schedules import ScheduleStore
from worker.scheduler import Scheduler, idempotency_key

SECRETS = FIXTURES.parent / "secrets"
T0 = datetime.fromisoformat("2026-03-01T00:00:00+00:00")
MINUTE = timedelta(minutes=1)


def every_minute(
    name: str = "minutely", *, armed_at: datetime = T0 - MINUTE, **fields: Any
) -> Schedule:
    defaults: dict[str, Any] = {
        "cron": "* * * * *",
        "type": "demo.echo",
        "payload": {"message": "tick", "data": None},
        "created_at": armed_at,
        "armed_at": armed_at,
    }
    return Schedule(name=name, **{**defaults, **fields})


@pytest.fixture
def schedules(jobs: Jobs) -> ScheduleStore:
    return ScheduleStore(jobs.store.redis, jobs.store.keys)


@pytest.fixture
def make_scheduler(worker_settings: Settings, jobs: Jobs) -> Iterator[Callable[..., Scheduler]]:
    """Builds schedulers as separate workers have them: each its own connections."""
    made: list[Submitter] = []

    def make(
        now: Callable[[], datetime], *, plugins: Plugins | None = None, **kw: Any
    ) -> Scheduler:
        store = JobStore.from_settings(worker_settings)
        submitter = Submitter(store, Publisher.from_settings(worker_settings), **kw)
        made.append(submitter)
        return Scheduler(
            ScheduleStore(store.redis, store.keys),
            submitter,
            plugins or jobs.plugins,
            now=now,
        )

    yield make
    for submitter in made:
        submitter.close()
        submitter.publisher.close()


def scheduled_jobs(jobs: Jobs, name: str, job_type: str = "demo.echo") -> list[Job]:
    page = jobs.store.list_jobs(job_type=job_type, limit=500)
    return [job for job in page.items if job.schedule == name]


# --- Racing schedulers ------------------------------------------------------------


def test_racing_schedulers_make_exactly_one_job_per_fire(
    schedules: ScheduleStore, jobs: Jobs, make_scheduler: Callable[..., Scheduler]
) -> None:
    """Three schedulers look at the same instants at the same moment, ten fires long."""
    schedules.create(every_minute())
    fires = [T0 + n * MINUTE for n in range(10)]
    clock = {"now": T0}
    schedulers = [make_scheduler(lambda: clock["now"]) for _ in range(3)]
    barrier = threading.Barrier(3)
    counts: list[int] = []
    lock = threading.Lock()

    def race(scheduler: Scheduler) -> None:
        for fire in fires:
            barrier.wait()
            if scheduler is schedulers[0]:
                clock["now"] = fire + timedelta(seconds=5)
            barrier.wait()
            created = scheduler.fire_due()
            with lock:
                counts.append(created)

    threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == len(fires), counts
    made = scheduled_jobs(jobs, "minutely")
    assert len(made) == len(fires)
    assert {job.payload["message"] for job in made} == {"tick"}
    stored = schedules.get("minutely")
    assert stored.last_run_at == fires[-1]
    assert stored.last_job_id == made[0].id, "newest first: the last fire's job"
    # Each fire's job is the one its idempotency key names.
    for fire in fires:
        record = jobs.store.redis.hget(
            jobs.store.keys.idempotency(idempotency_key("minutely", fire)), "jobs"
        )
        assert record is not None
    assert idempotency_key("minutely", fires[0]) == "schedule:minutely:2026-03-01T00:00:00.000000Z"


def test_after_an_outage_only_the_most_recent_missed_fire_runs(
    schedules: ScheduleStore, jobs: Jobs, make_scheduler: Callable[..., Scheduler]
) -> None:
    schedules.create(every_minute(priority=7, concurrency_key="tenant-1"))
    clock = {"now": T0 + timedelta(seconds=5)}
    scheduler = make_scheduler(lambda: clock["now"])
    assert scheduler.fire_due() == 1
    assert scheduler.fire_due() == 0, "the same fire is not made twice"
    clock["now"] = T0 + timedelta(hours=3, seconds=30)
    assert scheduler.fire_due() == 1
    made = scheduled_jobs(jobs, "minutely")
    assert len(made) == 2
    assert schedules.get("minutely").last_run_at == T0 + timedelta(hours=3)
    newest = made[0]
    assert (newest.priority, newest.concurrency_key, newest.schedule) == (7, "tenant-1", "minutely")
    assert newest.state is State.CREATED


# --- A scheduler that dies half-way --------------------------------------------------

KILLED_SCHEDULER = """
import os, signal, sys
from datetime import datetime
from orchestrator_core import load_plugins, load_settings
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.store import JobStore
from orchestrator_core.store.connection import connect_redis
from orchestrator_core.store.schedules import ScheduleStore
from worker.scheduler import Scheduler

def die(*args, **kwargs):
    print("job made, dying before the fire is recorded", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

ScheduleStore.record_fire = die
settings = load_settings()
store = JobStore.from_settings(settings)
now = datetime.fromisoformat(sys.argv[1])
scheduler = Scheduler(
    ScheduleStore(store.redis, store.keys),
    Submitter(store, Publisher.from_settings(settings)),
    load_plugins(allow=["demo"]),
    now=lambda: now,
)
scheduler.fire_due()
print("not killed", flush=True)
"""


def test_a_scheduler_killed_between_the_job_and_its_record_neither_misses_nor_doubles(
    schedules: ScheduleStore,
    jobs: Jobs,
    workers: Workers,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    schedules.create(every_minute())
    now = T0 + timedelta(seconds=5)
    done = subprocess.run(
        [sys.executable, "-c", KILLED_SCHEDULER, now.isoformat()],
        env=workers.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    assert "dying before the fire is recorded" in done.stdout
    [orphan] = scheduled_jobs(jobs, "minutely")
    assert schedules.get("minutely").last_run_at is None, "killed before recording"

    # Another scheduler sees the fire still due, and gets the dead one's job for it.
    survivor = make_scheduler(lambda: now)
    assert survivor.fire_due() == 0
    assert scheduled_jobs(jobs, "minutely") == [orphan]
    stored = schedules.get("minutely")
    assert (stored.last_run_at, stored.last_job_id) == (T0, orphan.id)
    # And the next fire is a job of its own.
    later = make_scheduler(lambda: T0 + MINUTE)
    assert later.fire_due() == 1
    assert len(scheduled_jobs(jobs, "minutely")) == 2


# --- Fires this process cannot make --------------------------------------------------


def test_a_fire_this_worker_cannot_make_is_skipped_logged_once_and_left_due(
    schedules: ScheduleStore,
    jobs: Jobs,
    make_scheduler: Callable[..., Scheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedules.create(every_minute("elsewhere", type="acme.missing", payload={}))
    schedules.create(every_minute("stale", payload={"message": 5}))
    schedules.create(every_minute("fine"))
    clock = {"now": T0 + timedelta(seconds=5)}
    scheduler = make_scheduler(lambda: clock["now"])
    with caplog.at_level(logging.WARNING, logger="worker.scheduler"):
        assert scheduler.fire_due() == 1
        assert scheduler.fire_due() == 0
        assert scheduler.fire_due() == 0
    skipped = [r.getMessage() for r in caplog.records if "not fired" in r.getMessage()]
    assert len(skipped) == 2, skipped
    assert any(
        "elsewhere" in line and "unknown job type 'acme.missing'" in line for line in skipped
    )
    assert any("stale" in line and "no longer validates" in line for line in skipped)
    for name in ("elsewhere", "stale"):
        assert schedules.get(name).last_run_at is None, "left for a worker that can"
    assert schedules.get("fine").last_run_at == T0
    # The next fire is logged again, once.
    caplog.clear()
    clock["now"] += MINUTE
    with caplog.at_level(logging.WARNING, logger="worker.scheduler"):
        assert scheduler.fire_due() == 1
        assert scheduler.fire_due() == 0
    assert len([r for r in caplog.records if "not fired" in r.getMessage()]) == 2


def test_the_loop_survives_an_unreachable_redis(
    closed_port: int, worker_settings: Settings, jobs: Jobs, caplog: pytest.LogCaptureFixture
) -> None:
    away = load_settings(
        **{**worker_settings.model_dump(), "redis_url": f"redis://127.0.0.1:{closed_port}/0"}
    )
    store = JobStore.from_settings(away)
    submitter = Submitter(store, Publisher.from_settings(away))
    scheduler = Scheduler(
        ScheduleStore(connect_redis(away), store.keys), submitter, jobs.plugins, interval=0.05
    )
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    with caplog.at_level(logging.WARNING, logger="worker.scheduler"):
        thread.start()
        time.sleep(0.5)
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    failures = [r for r in caplog.records if "firing schedules failed" in r.getMessage()]
    assert len(failures) >= 2, "it kept trying"
    submitter.close()
    submitter.publisher.close()


def test_the_loop_wakes_for_a_fire_sooner_than_its_interval(
    schedules: ScheduleStore, jobs: Jobs, make_scheduler: Callable[..., Scheduler]
) -> None:
    schedules.create(every_minute(armed_at=schedules.now()))
    # A clock that reaches the next minute boundary 0.3 s from now.
    real = schedules.now()
    boundary = real.replace(second=0, microsecond=0) + MINUTE
    offset = boundary - real - timedelta(seconds=0.3)
    scheduler = make_scheduler(lambda: schedules.now() + offset)
    scheduler.interval = 60.0
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    started = time.monotonic()
    thread.start()
    try:
        deadline = started + 20
        while not scheduled_jobs(jobs, "minutely"):
            assert time.monotonic() < deadline, "the fire never came"
            time.sleep(0.02)
        assert time.monotonic() - started < 20, "well before the 60 s interval"
    finally:
        stop.set()
        thread.join(10)
    assert schedules.get("minutely").last_run_at == boundary


# --- Secret payload fields ---------------------------------------------------------------


@pytest.fixture
def secret_plugins(monkeypatch: pytest.MonkeyPatch, worker_settings: Settings) -> Iterator[Plugins]:
    monkeypatch.syspath_prepend(str(SECRETS))
    yield load_plugins(allow=["secrettest"])
    delete_broker_objects(
        worker_settings.broker_url, worker_settings.prefix, [f"{worker_settings.prefix}.st.login"]
    )


def test_a_secret_payload_reaches_the_job_sealed_and_is_never_stored_in_clear(
    schedules: ScheduleStore,
    jobs: Jobs,
    secret_plugins: Plugins,
    make_scheduler: Callable[..., Scheduler],
) -> None:
    key = Fernet.generate_key().decode()
    sealer = Sealer([key])
    login = secret_plugins.get("st.login").job_type
    model = login.validate_payload(
        {
            "url": "https://login.invalid/",
            "token": "tok-123-secret",
            "credentials": {"user": "ann", "password": "pw-456-secret"},
        }
    )
    schedules.create(
        every_minute(
            "login",
            type="st.login",
            payload=login.dump_payload(model),
            sealed=sealer.seal(login.reveal_payload(model)).text,
        )
    )
    record = jobs.store.redis.hget(schedules.keys.schedules, "login")
    assert "secret" not in record
    scheduler = make_scheduler(
        lambda: T0 + timedelta(seconds=1), plugins=secret_plugins, sealer=sealer
    )
    assert scheduler.fire_due() == 1
    [job] = scheduled_jobs(jobs, "login", "st.login")
    assert job.payload["token"] == "**********"
    sealed = jobs.store.redis.hget(jobs.store.keys.job(job.id), "sealed")
    assert "secret" not in sealed
    opened = sealer.unseal(sealed, job_id=job.id)
    assert (opened["token"], opened["credentials"]["password"]) == (
        "tok-123-secret",
        "pw-456-secret",
    )

    # A worker without the key cannot open it: it leaves the fire to one that can.
    keyless = make_scheduler(lambda: T0 + MINUTE + timedelta(seconds=1), plugins=secret_plugins)
    assert keyless.fire_due() == 0
    assert schedules.get("login").last_run_at == T0


# --- Real worker processes ------------------------------------------------------------


@pytest.mark.timeout(240)
def test_three_workers_fire_each_minute_once(
    schedules: ScheduleStore, jobs: Jobs, workers: Workers
) -> None:
    """Real ``orchestrator worker`` processes on the real clock: the fire missed before
    they started, then the next minute's, each one job, however many workers see it."""
    schedules.create(every_minute(armed_at=schedules.now() - 5 * MINUTE))
    starting = [threading.Thread(target=workers.start) for _ in range(3)]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join(90)
    assert len(workers.started) == 3
    deadline = time.monotonic() + 90
    while (first := schedules.get("minutely").last_run_at) is None:
        assert time.monotonic() < deadline, "the missed fire never ran"
        time.sleep(0.1)
    while (last := schedules.get("minutely").last_run_at) == first:
        assert time.monotonic() < deadline, "the next minute never fired"
        time.sleep(0.1)
    assert last is not None
    time.sleep(1.0)  # any duplicate of the racing workers would be made by now
    made = scheduled_jobs(jobs, "minutely")
    fired = round((last - first) / MINUTE) + 1
    assert fired >= 2
    assert len(made) == fired, [format_instant(job.created_at) for job in made]
    assert schedules.get("minutely").last_job_id == made[0].id
    for job in made:
        done = jobs.wait(job.id, State.COMPLETED)
        assert done.result == {"message": "tick", "data": None}
