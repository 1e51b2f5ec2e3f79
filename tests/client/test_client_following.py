"""The bookkeeping both clients' ``wait`` and ``events`` share, on a clock the test moves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator_client import ApiError, ServerEvent, WaitTimeoutError
from orchestrator_client.following import Following
from orchestrator_client.outage import MAX_PAUSE, Outage
from orchestrator_client.subscription import Subscription

Document = dict[str, Any]


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def away(status: int | None = None) -> ApiError:
    return ApiError("the API is away", status=status)


def job(state: str, history: int, **fields: Any) -> Document:
    return {"id": "j", "state": state, "attempts": 1, "history": [{}] * history, **fields}


def following(clock: Clock, *, timeout: float | None = None) -> tuple[Following, list[Document]]:
    shown: list[Document] = []
    follow = Following(
        "j", shown.append, poll_seconds=0.2, timeout=timeout, outage_seconds=10.0, clock=clock
    )
    return follow, shown


def transition(seq: int) -> ServerEvent:
    return ServerEvent("transition", id=str(seq), data=json.dumps({"seq": seq, "job_id": "j"}))


# --- Outages --------------------------------------------------------------------------


def test_pauses_double_up_to_the_cap_and_start_again_after_an_answer() -> None:
    outage = Outage(first_pause=0.5, limit=60.0, clock=Clock())
    pauses = [outage.failed(away(503)) for _ in range(6)]
    assert pauses == [0.5, 1.0, 2.0, 4.0, MAX_PAUSE, MAX_PAUSE]
    outage.answered()
    assert outage.since is None
    assert outage.failed(away(None)) == 0.5


def test_an_error_that_will_not_pass_is_raised_at_once() -> None:
    outage = Outage(first_pause=0.2, limit=60.0, clock=Clock())
    for status in (400, 401, 404, 409, 422, 500):
        with pytest.raises(ApiError) as caught:
            outage.failed(away(status))
        assert caught.value.status == status
    assert outage.since is None


def test_an_outage_longer_than_the_limit_raises_the_last_failure() -> None:
    clock = Clock()
    outage = Outage(first_pause=0.2, limit=10.0, clock=clock)
    outage.failed(away(502))
    clock.now += 10.0
    outage.failed(away(504))  # exactly at the limit: one more try
    clock.now += 0.1
    last = away(None)
    with pytest.raises(ApiError) as caught:
        outage.failed(last)
    assert caught.value is last


def test_an_answer_ends_the_outage_so_its_time_starts_again() -> None:
    clock = Clock()
    outage = Outage(first_pause=0.2, limit=10.0, clock=clock)
    outage.failed(away())
    clock.now += 9.0
    outage.answered()
    clock.now += 9.0
    assert outage.failed(away()) == 0.2


# --- One wait -------------------------------------------------------------------------


def test_on_update_hears_of_each_change_a_person_follows_and_only_those() -> None:
    follow, shown = following(Clock())
    follow.update(job("RUNNING", 2))
    follow.update(job("RUNNING", 2, result=None))  # nothing a person follows changed
    follow.update(job("RUNNING", 2, cancel_requested=True))
    assert [(doc["state"], doc.get("cancel_requested")) for doc in shown] == [
        ("RUNNING", None),
        ("RUNNING", True),
    ]
    assert follow.job == job("RUNNING", 2, cancel_requested=True)


def test_a_transition_asks_for_the_document_only_when_it_is_news() -> None:
    follow, shown = following(Clock())
    follow.update(job("RUNNING", 2))
    assert follow.receive(transition(2)) is False  # already in the history read
    assert follow.receive(transition(3)) is True
    assert follow.receive(ServerEvent(comment="keepalive")) is False
    assert len(shown) == 1


def test_progress_changes_the_job_as_known_without_a_read() -> None:
    follow, shown = following(Clock())
    follow.update(job("RUNNING", 2))
    status = {"job_id": "j", "progress": {"fraction": 0.5}, "cancel_requested": False}
    assert follow.receive(ServerEvent("progress", data=json.dumps(status))) is False
    assert shown[-1]["progress"] == {"fraction": 0.5}
    assert shown[-1]["history"] == [{}, {}]


def test_the_stream_resumes_after_the_history_known_and_reads_until_the_deadline() -> None:
    clock = Clock()
    follow, _ = following(clock, timeout=12.0)
    follow.update(job("RETRYING", 3))
    call = follow.stream_call()
    assert (call.path, call.params) == ("/jobs/j/events", {"progress": "true"})
    assert (call.headers, call.read_timeout) == ({"Last-Event-ID": "3"}, 12.0)
    clock.now += 11.99
    assert follow.stream_call().read_timeout == 0.05  # never zero: httpx would not wait
    assert following(clock)[0].stream_call().read_timeout == 30.0


def test_the_wait_ends_when_the_job_is_finished_or_times_out() -> None:
    clock = Clock()
    follow, _ = following(clock, timeout=5.0)
    follow.update(job("RUNNING", 2))
    assert follow.done() is False
    clock.now += 5.0
    with pytest.raises(WaitTimeoutError) as caught:
        follow.done()
    assert caught.value.job == job("RUNNING", 2)
    follow.update(job("COMPLETED", 3))
    assert follow.done() is True
    assert follow.ended() == 0.0


def test_an_outage_past_the_deadline_is_a_timeout_and_other_errors_stay_themselves() -> None:
    clock = Clock()
    follow, _ = following(clock, timeout=5.0)
    assert follow.failed(away(503)) == 0.2
    assert follow.ended() == 0.4  # the stream ended early: a failed try like any other
    gone = away(404)
    with pytest.raises(ApiError) as caught:
        follow.failed(gone)
    assert caught.value is gone
    clock.now += 5.0
    outage = away(None)
    with pytest.raises(WaitTimeoutError) as timed_out:
        follow.failed(outage)
    assert timed_out.value.__cause__ is outage


def test_only_fastapis_own_404_means_there_is_no_event_route() -> None:
    assert Following.lacks_stream(ApiError("404 Not Found", status=404, detail="Not Found"))
    assert not Following.lacks_stream(ApiError("404", status=404, detail="no job with id 'j'"))
    assert not Following.lacks_stream(ApiError("503", status=503, detail="Not Found"))


# --- Every job's transitions ---------------------------------------------------------------


def test_a_subscription_resumes_after_the_last_transition_and_reports_gaps() -> None:
    gaps: list[str] = []
    feed = Subscription(
        type="demo.echo",
        state=None,
        last_event_id="5-0",
        outage_seconds=1.0,
        on_gap=gaps.append,
        clock=Clock(),
    )
    assert feed.stream_call().headers == {"Last-Event-ID": "5-0"}
    assert feed.receive(ServerEvent(comment="trimmed: events after 5-0 and before 9-0")) is None
    assert feed.receive(ServerEvent(comment="keepalive")) is None
    event = {"id": "9-0", "job_id": "j", "state": "RUNNING"}
    assert feed.receive(ServerEvent("transition", id="9-0", data=json.dumps(event))) == event
    assert feed.receive(ServerEvent("transition", data=json.dumps(event))) == event
    call = feed.stream_call()
    assert (call.path, call.params, call.headers) == (
        "/events",
        {"type": "demo.echo"},
        {"Last-Event-ID": "9-0"},
    )
    assert gaps == ["trimmed: events after 5-0 and before 9-0"]


def test_a_subscription_gives_up_on_a_bad_filter_at_once_and_on_an_outage_at_its_limit() -> None:
    clock = Clock()
    feed = Subscription(
        type=None, state="NOPE", last_event_id=None, outage_seconds=1.0, on_gap=None, clock=clock
    )
    with pytest.raises(ApiError):
        feed.failed(away(422))
    assert feed.ended() == 0.2
    assert feed.failed(away(None)) == 0.4
    feed.receive(ServerEvent(comment="keepalive"))
    clock.now += 5.0
    assert feed.failed(away(None)) == 0.2  # the keepalive was an answer: a new outage
    clock.now += 1.5
    with pytest.raises(ApiError, match="ended early"):
        feed.ended()
