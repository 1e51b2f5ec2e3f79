"""Plugin discovery through real entry points of the distributions in tests/fixtures/."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator_core import (
    CancellationToken,
    Job,
    JobCancelled,
    PluginFailure,
    PluginInfo,
    Plugins,
    State,
    UnknownJobTypeError,
    hookimpl,
    load_plugins,
)

FIXTURES = Path(__file__).parent / "fixtures"
OURS = frozenset(
    {
        "badobserver",
        "badtype",
        "brokenimport",
        "dupa",
        "dupb",
        "garbage",
        "misspelt",
        "nohooks",
        "testplugin",
        "twice",
        "unmarked",
        "wrapper",
    }
)
TESTPLUGIN = PluginInfo(
    name="testplugin",
    distribution="orchestrator-testplugin",
    version="1.0.0",
    value="orchestrator_testplugin.plugin",
    job_types=("testplugin.echo", "testplugin.sleep"),
)


def _forget_fixture_modules(before: set[str]) -> None:
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(FIXTURES)):
            del sys.modules[name]


@pytest.fixture
def dists(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put the fixture distributions on sys.path, where the entry-point scan finds them."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(FIXTURES / "dists"))
    importlib.invalidate_caches()
    yield
    _forget_fixture_modules(before)


def failures(plugins: Plugins) -> list[PluginFailure]:
    return [f for f in plugins.report.failed if f.plugin in OURS]


def loaded(plugins: Plugins) -> dict[str, PluginInfo]:
    return {i.name: i for i in plugins.report.loaded if i.name in OURS}


def make_job(job_id: str = "6f1c2d3e-0000-4000-8000-000000000001") -> Job:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Job(
        id=job_id,
        type="testplugin.echo",
        state=State.COMPLETED,
        payload={"message": "hi"},
        attempts=1,
        max_attempts=3,
        created_at=now,
        updated_at=now,
    )


def plugin_module(name: str) -> ModuleType:
    return sys.modules[name]


@pytest.mark.usefixtures("dists")
def test_good_plugin_loads_with_its_types() -> None:
    plugins = load_plugins(allow=["testplugin"])
    assert plugins.report.loaded == (TESTPLUGIN,)
    assert plugins.report.failed == ()
    assert plugins.report.ok
    assert OURS - {"testplugin"} <= set(plugins.report.skipped)
    assert list(plugins.job_types) == ["testplugin.echo", "testplugin.sleep"]
    sleep = plugins.get("testplugin.sleep")
    assert sleep.name == "testplugin.sleep"
    assert sleep.plugin == TESTPLUGIN
    assert (sleep.job_type.max_attempts, sleep.job_type.timeout) == (5, 30.0)
    assert sleep.job_type.queue == "slow"
    assert plugins.get("testplugin.echo").job_type.description == "Return the payload unchanged."


@pytest.mark.usefixtures("dists")
def test_registered_execute_functions_work() -> None:
    plugins = load_plugins(allow=["testplugin"])
    echo = plugins.get("testplugin.echo").job_type
    payload = echo.validate_payload({"message": "hello", "repeat": 2})
    assert echo.execute(payload, CancellationToken()) is payload

    sleep = plugins.get("testplugin.sleep").job_type
    token = CancellationToken()
    timer = threading.Timer(0.05, token.cancel)
    timer.start()
    with pytest.raises(JobCancelled):
        sleep.execute(sleep.validate_payload({"seconds": 30}), token)
    timer.join()
    assert token.progress is not None
    assert token.progress.message == "sleeping"
    done = CancellationToken()
    assert sleep.execute(sleep.validate_payload({"seconds": 0.01}), done) == {"slept": 0.01}


@pytest.mark.usefixtures("dists")
def test_every_broken_plugin_is_reported_with_its_stage() -> None:
    plugins = load_plugins()
    got = {(f.plugin, f.distribution, f.version, f.stage) for f in failures(plugins)}
    assert got == {
        ("brokenimport", "orchestrator-brokenimport", "0.1.0", "import"),
        ("garbage", "orchestrator-garbage", "0.2.0", "job_types"),
        ("misspelt", "orchestrator-misspelt", "0.3.0", "hooks"),
        ("badtype", "orchestrator-badtype", "0.4.0", "job_types"),
        ("unmarked", "orchestrator-unmarked", "0.6.0", "hooks"),
        ("wrapper", "orchestrator-wrapper", "0.7.0", "hooks"),
        ("nohooks", "orchestrator-nohooks", "0.8.0", "hooks"),
        ("twice", "orchestrator-twice", "0.9.0", "job_types"),
        ("dupa", "orchestrator-dupa", "1.1.0", "duplicate"),
        ("dupb", "orchestrator-dupb", "2.2.0", "duplicate"),
    }
    assert not plugins.report.ok
    errors = {f.plugin: f.error for f in failures(plugins) if f.stage != "duplicate"}
    assert errors["brokenimport"] == "RuntimeError: brokenimport cannot start: missing ACME_TOKEN"
    assert errors["garbage"] == (
        "register_job_types() returned {'garbage.type': 'not a JobType'}, "
        "expected a list of JobType"
    )
    assert "unknown hook 'job_transitionned'" in errors["misspelt"]
    assert errors["badtype"].startswith("register_job_types() raised InvalidJobTypeError: ")
    assert "'BadType Upper'" in errors["badtype"]
    assert "not decorated with @orchestrator_core.hookimpl" in errors["unmarked"]
    assert "not a wrapper" in errors["wrapper"]
    assert "implements no orchestrator hook" in errors["nohooks"]
    assert errors["twice"] == "it registers 'twice.noop' more than once"


@pytest.mark.usefixtures("dists")
def test_quarantined_plugins_contribute_nothing() -> None:
    plugins = load_plugins()
    quarantined = {
        "badtype",
        "brokenimport",
        "garbage",
        "misspelt",
        "nohooks",
        "twice",
        "unmarked",
        "wrapper",
    }
    assert set(loaded(plugins)) == OURS - quarantined
    # Each of these declared a valid type next to its mistake: it must not leak through.
    assert {"misspelt.noop", "badtype.ok", "unmarked.noop", "twice.noop"}.isdisjoint(
        plugins.job_types
    )
    for name in quarantined:
        assert plugins.manager.get_plugin(name) is None, name
    for name in OURS - quarantined:
        assert plugins.manager.get_plugin(name) is not None, name
    impls = {i.plugin_name for i in plugins.manager.hook.job_transitioned.get_hookimpls()}
    assert "misspelt" not in impls


@pytest.mark.usefixtures("dists")
def test_broken_plugins_are_logged_with_distribution_and_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="orchestrator_core.plugins"):
        load_plugins(allow=["brokenimport"])
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "'brokenimport'" in record.getMessage()
    assert "orchestrator-brokenimport 0.1.0" in record.getMessage()
    assert "missing ACME_TOKEN" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is RuntimeError


@pytest.mark.usefixtures("dists")
def test_contested_type_goes_to_neither_plugin_and_names_both_distributions() -> None:
    plugins = load_plugins(allow=["dupa", "dupb"])
    assert "shared.thing" not in plugins.job_types
    assert plugins.get("dupa.own").plugin.distribution == "orchestrator-dupa"
    assert plugins.get("dupb.own").plugin.distribution == "orchestrator-dupb"
    assert loaded(plugins)["dupa"].job_types == ("dupa.own",)
    assert loaded(plugins)["dupb"].job_types == ("dupb.own",)
    duplicates = [f for f in plugins.report.failed if f.stage == "duplicate"]
    assert [(f.plugin, f.distribution, f.version) for f in duplicates] == [
        ("dupa", "orchestrator-dupa", "1.1.0"),
        ("dupb", "orchestrator-dupb", "2.2.0"),
    ]
    for failure in duplicates:
        assert "'shared.thing'" in failure.error
        assert "'orchestrator-dupa'" in failure.error
        assert "'orchestrator-dupb'" in failure.error


@pytest.mark.usefixtures("dists")
def test_allow_list_decides_who_competes_for_a_name() -> None:
    plugins = load_plugins(allow=["dupa"])
    assert plugins.report.ok
    assert plugins.get("shared.thing").plugin.name == "dupa"
    assert "dupb" in plugins.report.skipped
    assert plugins.manager.get_plugin("dupb") is None


@pytest.mark.usefixtures("dists")
def test_allow_list_entry_that_is_not_installed_is_a_failure() -> None:
    plugins = load_plugins(allow=["testplugin", "nosuchplugin"])
    assert plugins.report.loaded == (TESTPLUGIN,)
    [failure] = plugins.report.failed
    assert (failure.plugin, failure.distribution, failure.version) == ("nosuchplugin", None, None)
    assert failure.stage == "import"
    assert "allow-list" in failure.error


def test_allow_list_given_as_a_string_is_refused() -> None:
    with pytest.raises(TypeError, match="collection of entry-point names"):
        load_plugins(allow="testplugin")


@pytest.mark.usefixtures("dists")
def test_empty_allow_list_loads_nothing() -> None:
    plugins = load_plugins(allow=[])
    assert plugins.report.loaded == ()
    assert plugins.report.failed == ()
    assert set(plugins.report.skipped) >= OURS
    assert not plugins.job_types


@pytest.mark.usefixtures("dists")
def test_loading_twice_gives_equal_results() -> None:
    first = load_plugins()
    second = load_plugins()
    assert first.report == second.report
    assert first.job_types == second.job_types
    assert first.manager is not second.manager
    assert second.manager.get_plugin("testplugin") is plugin_module(
        "orchestrator_testplugin.plugin"
    )


@pytest.mark.usefixtures("dists")
def test_job_types_mapping_is_sorted_and_read_only() -> None:
    plugins = load_plugins()
    names = [n for n in plugins.job_types if n in {"testplugin.echo", "dupb.own", "dupa.own"}]
    assert names == ["dupa.own", "dupb.own", "testplugin.echo"]
    with pytest.raises(TypeError):
        plugins.job_types["x"] = plugins.get("dupa.own")  # type: ignore[index]


@pytest.mark.usefixtures("dists")
def test_get_unknown_type_lists_the_known_ones() -> None:
    plugins = load_plugins(allow=["testplugin"])
    with pytest.raises(UnknownJobTypeError) as info:
        plugins.get("testplugin.nope")
    assert info.value.known == ["testplugin.echo", "testplugin.sleep"]
    assert "testplugin.echo, testplugin.sleep" in str(info.value)


@pytest.mark.usefixtures("dists")
def test_observer_exception_is_logged_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins = load_plugins(allow=["testplugin", "badobserver"])
    # An observer-only plugin (no register_job_types) is a plugin like any other.
    assert loaded(plugins)["badobserver"].job_types == ()
    calls: list[str] = []

    class Failing:
        @hookimpl(tryfirst=True)
        def job_transitioned(self, job: Job) -> None:
            calls.append("failing")
            raise ValueError("boom")

    class Recording:
        @hookimpl(trylast=True)
        def job_transitioned(self, new_state: State) -> None:
            calls.append(f"recording {new_state}")

    plugins.manager.register(Failing(), name="failing")
    plugins.manager.register(Recording(), name="recording")
    transitions = plugin_module("orchestrator_testplugin.plugin").transitions
    transitions.clear()
    job = make_job()

    with caplog.at_level(logging.ERROR, logger="orchestrator_core.plugins"):
        plugins.notify_transitioned(job, State.RUNNING, State.COMPLETED)

    assert calls == ["failing", "recording COMPLETED"]
    assert transitions == [(job.id, State.RUNNING, State.COMPLETED)]
    failed = {r.getMessage().split("'")[1]: r for r in caplog.records if r.levelno == logging.ERROR}
    assert set(failed) == {"failing", "badobserver"}
    assert job.id in failed["badobserver"].getMessage()
    assert failed["badobserver"].exc_info is not None
    assert failed["badobserver"].exc_info[0] is RuntimeError


@pytest.mark.usefixtures("dists")
def test_entry_point_name_used_by_two_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES / "clash"))
    importlib.invalidate_caches()
    plugins = load_plugins(allow=["testplugin"])
    assert plugins.report.loaded == (TESTPLUGIN,)
    [failure] = plugins.report.failed
    assert (failure.plugin, failure.distribution, failure.version, failure.stage) == (
        "testplugin",
        "orchestrator-testplugin-fork",
        "9.9.0",
        "register",
    )
    assert "'orchestrator-testplugin'" in failure.error
    assert "fork.noop" not in plugins.job_types
    # The first plugin keeps its registration: the failed one must not unregister it.
    assert plugins.manager.get_plugin("testplugin") is plugin_module(
        "orchestrator_testplugin.plugin"
    )
