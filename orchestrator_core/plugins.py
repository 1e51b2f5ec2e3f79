"""Plugin discovery: entry points in, a pluggy manager and validated job types out.

Nothing here runs at import time; the api, the worker and the CLI each call
:func:`load_plugins` once at start-up. A plugin that cannot be used is quarantined:
it contributes nothing, is logged, and is listed in the :class:`LoadReport`, so one
broken distribution never takes the service down.
"""

from __future__ import annotations

import logging
import reprlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from inspect import getattr_static
from types import MappingProxyType
from typing import Literal

import pluggy

from orchestrator_core import hookspecs
from orchestrator_core.exceptions import DuplicateJobTypeError, UnknownJobTypeError
from orchestrator_core.job_type import JobType
from orchestrator_core.models import Job
from orchestrator_core.states import State

if sys.version_info >= (3, 12):
    from importlib.metadata import EntryPoint, entry_points
else:
    try:
        from importlib_metadata import EntryPoint, entry_points
    except ImportError:  # the backport is a dependency, but stdlib 3.11 is good enough
        from importlib.metadata import EntryPoint, entry_points  # type: ignore[assignment]

logger = logging.getLogger(__name__)

GROUP = "orchestrator.plugins"
"""The entry-point group plugins are discovered in."""

Stage = Literal["import", "register", "hooks", "job_types", "duplicate"]

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its entry point, the distribution that ships it, what it registered."""

    name: str
    """The entry-point name (what the allow-list names)."""
    distribution: str | None
    version: str | None
    value: str
    """The entry point's target, ``module`` or ``module:attr``."""
    job_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was quarantined, or a job-type name that two plugins contest."""

    plugin: str
    distribution: str | None
    version: str | None
    stage: Stage
    """Where it failed: importing, registering with pluggy, checking its hooks,
    collecting its job types, or a name another plugin registers too."""
    error: str


@dataclass(frozen=True)
class RegisteredJobType:
    """A job type and the plugin it came from."""

    job_type: JobType
    plugin: PluginInfo

    @property
    def name(self) -> str:
        return self.job_type.name


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_plugins` did: plugins loaded, failures, plugins the allow-list left out."""

    loaded: tuple[PluginInfo, ...] = ()
    failed: tuple[PluginFailure, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed


class Plugins:
    """The loaded plugins: their pluggy manager, the job types by name, and the load report."""

    def __init__(
        self,
        manager: pluggy.PluginManager,
        job_types: Mapping[str, RegisteredJobType],
        report: LoadReport,
    ) -> None:
        self.manager = manager
        self._job_types = MappingProxyType(dict(sorted(job_types.items())))
        self.report = report

    @property
    def job_types(self) -> Mapping[str, RegisteredJobType]:
        """Read-only mapping of job-type name to registration, sorted by name."""
        return self._job_types

    def get(self, name: str) -> RegisteredJobType:
        """The job type called ``name``.

        :raises UnknownJobTypeError: listing the known names.
        """
        try:
            return self._job_types[name]
        except KeyError:
            raise UnknownJobTypeError(name, list(self._job_types)) from None

    @property
    def observes(self) -> bool:
        """True when some plugin implements ``job_transitioned``: only then does a move
        need its document read back to tell it."""
        return bool(self.manager.hook.job_transitioned.get_hookimpls())

    def notify_transitioned(self, job: Job, old_state: State, new_state: State) -> None:
        """Call every plugin's ``job_transitioned``; one plugin's exception is logged, not raised.

        Implementations are called one at a time (in pluggy's order) instead of through
        ``manager.hook``, where the first exception would skip the rest.
        """
        args = {"job": job, "old_state": old_state, "new_state": new_state}
        for impl in reversed(self.manager.hook.job_transitioned.get_hookimpls()):
            try:
                impl.function(*(args[name] for name in impl.argnames))
            except Exception:
                logger.exception(
                    "job_transitioned of plugin %r failed for job %s (%s -> %s)",
                    impl.plugin_name,
                    job.id,
                    old_state,
                    new_state,
                )


class _Quarantined(Exception):  # noqa: N818 - internal signal, never escapes this module
    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


def load_plugins(*, allow: Iterable[str] | None = None, group: str = GROUP) -> Plugins:
    """Discover, register and validate the installed plugins.

    Each call builds a fresh manager, so calling it again gives an equal result.

    :param allow: entry-point names to load; None loads every installed plugin. A
        name that no installed plugin has is reported as a failure.
    :param group: the entry-point group to scan.
    :return: the manager, the job types and the report; failures are in
        ``plugins.report.failed``, never raised.
    """
    if isinstance(allow, str):
        raise TypeError(f"allow must be a collection of entry-point names, got the str {allow!r}")
    wanted = None if allow is None else frozenset(allow)
    manager = pluggy.PluginManager(hookspecs.hookspec.project_name)
    manager.add_hookspecs(hookspecs)

    # Sorted so that every process loads in the same order whatever the file system says.
    found = sorted(((ep, *_origin(ep)) for ep in entry_points(group=group)), key=_sort_key)
    claims: list[tuple[PluginInfo, list[JobType]]] = []
    failures: list[PluginFailure] = []
    skipped: list[str] = []
    for ep, distribution, version in found:
        if wanted is not None and ep.name not in wanted:
            skipped.append(ep.name)
            continue
        try:
            owner = next((i for i, _ in claims if i.name == ep.name), None)
            if owner is not None:
                raise _Quarantined(
                    "register",
                    f"entry point name {ep.name!r} is also used by {owner.distribution!r}; "
                    "uninstall one of the two distributions",
                )
            job_types = _load_one(manager, ep)
        except _Quarantined as exc:
            failures.append(_failure(ep.name, distribution, version, exc.stage, exc.message, exc))
            continue
        claims.append((PluginInfo(ep.name, distribution, version, ep.value), job_types))
        logger.info("loaded plugin %r from %s %s", ep.name, distribution, version)

    for name in sorted((wanted or set()) - {ep.name for ep, _, _ in found}):
        message = (
            f"no installed plugin has this entry-point name (group {group!r}); "
            "install it or remove it from the allow-list"
        )
        failures.append(_failure(name, None, None, "import", message, None))

    registered, loaded, contested = _resolve(claims)
    failures.extend(contested)
    report = LoadReport(tuple(loaded), tuple(failures), tuple(skipped))
    return Plugins(manager, registered, report)


def _load_one(manager: pluggy.PluginManager, ep: EntryPoint) -> list[JobType]:
    try:
        plugin = ep.load()
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() must not stop us
        raise _Quarantined("import", _describe(exc)) from exc
    try:
        manager.register(plugin, name=ep.name)
    except (Exception, SystemExit) as exc:
        _unregister(manager, ep.name, plugin)
        raise _Quarantined("register", _describe(exc)) from exc
    try:
        _check_hooks(manager, plugin)
        return _collect_job_types(manager, plugin)
    except _Quarantined:
        _unregister(manager, ep.name, plugin)
        raise


def _check_hooks(manager: pluggy.PluginManager, plugin: object) -> None:
    hook_names = ", ".join(
        sorted(name for name, caller in vars(manager.hook).items() if caller.has_spec())
    )
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise _Quarantined("hooks", f"{exc}; the hooks are: {hook_names}") from exc
    impls = [
        impl
        for caller in manager.get_hookcallers(plugin) or []
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin
    ]
    if not _impls(manager, plugin) and _defines(plugin, "register_job_types"):
        # Without the marker pluggy ignores the function, and the types would vanish silently.
        raise _Quarantined(
            "hooks",
            "register_job_types is not decorated with @orchestrator_core.hookimpl, "
            "so its job types would be ignored; add the decorator",
        )
    if not impls:
        raise _Quarantined(
            "hooks",
            "it implements no orchestrator hook; decorate its functions with "
            f"@orchestrator_core.hookimpl (the hooks are: {hook_names})",
        )
    for impl in impls:
        if impl.wrapper or impl.hookwrapper:
            raise _Quarantined(
                "hooks",
                f"{impl.function.__name__} must be a plain hook implementation, not a wrapper",
            )


def _impls(manager: pluggy.PluginManager, plugin: object) -> list[pluggy.HookImpl]:
    """The plugin's implementations of ``register_job_types`` (one, unless it uses specname)."""
    return [i for i in manager.hook.register_job_types.get_hookimpls() if i.plugin is plugin]


def _collect_job_types(manager: pluggy.PluginManager, plugin: object) -> list[JobType]:
    job_types: list[JobType] = []
    for impl in _impls(manager, plugin):
        # Called directly, not through manager.hook, so the result is this plugin's alone.
        try:
            result = impl.function()
        except (Exception, SystemExit) as exc:
            raise _Quarantined(
                "job_types", f"register_job_types() raised {_describe(exc)}"
            ) from exc
        if not isinstance(result, list | tuple) or not all(isinstance(t, JobType) for t in result):
            raise _Quarantined(
                "job_types",
                f"register_job_types() returned {_short.repr(result)}, expected a list of JobType",
            )
        job_types.extend(result)
    names = [t.name for t in job_types]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise _Quarantined(
            "job_types", f"it registers {', '.join(map(repr, twice))} more than once"
        )
    return job_types


def _resolve(
    claims: list[tuple[PluginInfo, list[JobType]]],
) -> tuple[dict[str, RegisteredJobType], list[PluginInfo], list[PluginFailure]]:
    """Register every uncontested name; a contested one goes to nobody.

    Entry points come in no defined order, so letting one claimant win could make
    the api and a worker disagree about which code runs a type.
    """
    owners: dict[str, list[PluginInfo]] = {}
    for info, job_types in claims:
        for job_type in job_types:
            owners.setdefault(job_type.name, []).append(info)
    contested = {name for name, infos in owners.items() if len(infos) > 1}
    failures = []
    for name in sorted(contested):
        for info in owners[name]:
            others = ", ".join(str(o.distribution) for o in owners[name] if o is not info)
            error = DuplicateJobTypeError(
                name, plugin=info.name, distribution=info.distribution, other=others
            )
            failures.append(
                _failure(info.name, info.distribution, info.version, "duplicate", str(error), None)
            )
    registered: dict[str, RegisteredJobType] = {}
    loaded = []
    for info, job_types in claims:
        kept = [t for t in job_types if t.name not in contested]
        final = replace(info, job_types=tuple(sorted(t.name for t in kept)))
        loaded.append(final)
        registered.update((t.name, RegisteredJobType(t, final)) for t in kept)
    return registered, loaded, failures


def _failure(
    plugin: str,
    distribution: str | None,
    version: str | None,
    stage: Stage,
    error: str,
    exc: BaseException | None,
) -> PluginFailure:
    logger.error(
        "plugin %r (%s %s) failed at stage %s: %s",
        plugin,
        distribution,
        version,
        stage,
        error,
        exc_info=exc.__cause__ if exc is not None else None,
    )
    return PluginFailure(plugin, distribution, version, stage, error)


def _origin(ep: EntryPoint) -> tuple[str | None, str | None]:
    """Name and version of the distribution declaring ``ep`` (None where unknown)."""
    dist = ep.dist
    if dist is None:
        return None, None
    meta = dist.metadata
    # .get, not [], because a distribution with broken metadata is reported, not fatal.
    return meta.get("Name"), meta.get("Version")


def _sort_key(item: tuple[EntryPoint, str | None, str | None]) -> tuple[str, str]:
    return item[0].name, item[1] or ""


def _unregister(manager: pluggy.PluginManager, name: str, plugin: object) -> None:
    # Only our own registration: the name or the object may belong to another plugin
    # (the reason register() failed), and older pluggy leaves partial state behind.
    if manager.get_plugin(name) is plugin:
        manager.unregister(name=name)


def _defines(plugin: object, attribute: str) -> bool:
    try:
        return callable(getattr_static(plugin, attribute))
    except AttributeError:
        return False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
