from __future__ import annotations

import asyncio
import threading
import time

import pytest

from orchestrator_core import CancellationToken, JobCancelled, Progress

# Generous bound on how late a waiter may wake after cancel(): it catches a wait
# that sleeps out its whole duration (30 s here), not scheduler jitter.
PROMPT = 1.0


def test_fresh_token() -> None:
    token = CancellationToken("job-1", 2)
    assert (token.job_id, token.attempt) == ("job-1", 2)
    assert token.cancelled is False
    assert token.reason is None
    assert token.progress is None
    token.raise_if_cancelled()  # does not raise


def test_cancel_fires_once_and_first_reason_wins() -> None:
    token = CancellationToken()
    assert token.cancel("timeout") is True
    assert token.cancel("cancelled") is False
    assert token.cancelled is True
    assert token.reason == "timeout"
    with pytest.raises(JobCancelled) as info:
        token.raise_if_cancelled()
    assert info.value.reason == "timeout"


def test_cancel_defaults_to_cancelled() -> None:
    token = CancellationToken()
    token.cancel()
    assert token.reason == "cancelled"


def test_unknown_reason_is_refused_and_does_not_fire() -> None:
    token = CancellationToken()
    with pytest.raises(ValueError, match="'shutdown'"):
        token.cancel("shutdown")
    assert token.cancelled is False


def test_wait_times_out_with_false() -> None:
    assert CancellationToken().wait(0.01) is False


def test_wait_after_cancel_returns_true_at_once() -> None:
    token = CancellationToken()
    token.cancel()
    assert token.wait(30) is True


@pytest.mark.parametrize("seconds", [-0.001, float("nan")])
def test_wait_rejects_negative_or_nan(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        CancellationToken().wait(seconds)


def test_wait_wakes_when_another_thread_cancels() -> None:
    token = CancellationToken()
    outcome: list[tuple[bool, float]] = []
    waiting = threading.Thread(target=lambda: outcome.append((token.wait(30), time.monotonic())))
    waiting.start()
    time.sleep(0.05)  # let it block first
    cancelled_at = time.monotonic()
    token.cancel()
    waiting.join(timeout=5)
    assert not waiting.is_alive()
    result, woke_at = outcome[0]
    assert result is True
    assert woke_at - cancelled_at < PROMPT


def race_once(threads: int) -> tuple[CancellationToken, list[tuple[str, bool]]]:
    """Fire one token from ``threads`` threads at once, half with each reason."""
    token = CancellationToken()
    start = threading.Barrier(threads)
    results: list[tuple[str, bool]] = []  # list.append is atomic

    def fire(reason: str) -> None:
        start.wait()
        results.append((reason, token.cancel(reason)))

    workers = [
        threading.Thread(target=fire, args=("cancelled" if i % 2 else "timeout",))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=5)
    return token, results


@pytest.mark.parametrize("round_", range(20))
def test_first_reason_wins_under_racing_threads(round_: int) -> None:
    token, results = race_once(20)
    assert len(results) == 20
    winners = [reason for reason, fired in results if fired]
    assert winners == [token.reason]


def test_wait_async_wakes_when_another_thread_cancels() -> None:
    token = CancellationToken()

    async def scenario() -> tuple[bool, float]:
        timer = threading.Timer(0.05, token.cancel)
        timer.start()
        result = await token.wait_async(30)
        woke_at = time.monotonic()
        timer.join()
        return result, woke_at

    started = time.monotonic()
    result, woke_at = asyncio.run(scenario())
    assert result is True
    assert woke_at - (started + 0.05) < PROMPT


def test_wait_async_does_not_block_the_event_loop() -> None:
    token = CancellationToken()

    async def scenario() -> tuple[bool, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        result = await token.wait_async(0.2)
        ticker.cancel()
        return result, ticks

    result, ticks = asyncio.run(scenario())
    assert result is False
    assert ticks >= 5


def test_wait_async_after_cancel_returns_true_at_once() -> None:
    token = CancellationToken()
    token.cancel("timeout")
    assert asyncio.run(token.wait_async(30)) is True


def test_wait_async_rejects_negative() -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        asyncio.run(CancellationToken().wait_async(-1))


def test_cancel_after_an_async_waiter_went_away_is_harmless() -> None:
    token = CancellationToken()

    async def abandon() -> None:
        task = asyncio.create_task(token.wait_async(30))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(abandon())
    assert token.cancel() is True


def test_report_progress_forwards_and_keeps_the_last_value() -> None:
    seen: list[tuple[float | None, str | None]] = []
    token = CancellationToken(
        on_progress=lambda fraction, message: seen.append((fraction, message))
    )
    token.report_progress(0.25, "a quarter")
    token.report_progress(message="still going")
    token.report_progress(1)
    assert seen == [(0.25, "a quarter"), (None, "still going"), (1.0, None)]
    assert token.progress == Progress(fraction=1.0, message=None)
    assert isinstance(seen[-1][0], float)


def test_report_progress_without_callback_keeps_the_value() -> None:
    token = CancellationToken()
    token.report_progress(0.5, "half")
    assert token.progress == Progress(fraction=0.5, message="half")


def test_progress_message_is_capped() -> None:
    token = CancellationToken()
    token.report_progress(message="x" * 5000)
    assert token.progress is not None
    assert token.progress.message == "x" * 1000


@pytest.mark.parametrize("fraction", [-0.01, 1.01, float("nan")])
def test_progress_fraction_out_of_range_is_refused(fraction: float) -> None:
    seen: list[object] = []
    token = CancellationToken(on_progress=lambda *args: seen.append(args))
    with pytest.raises(ValueError, match="between 0 and 1"):
        token.report_progress(fraction)
    assert seen == []
    assert token.progress is None


def test_progress_fraction_must_be_a_number() -> None:
    with pytest.raises(TypeError):
        CancellationToken().report_progress(True)
