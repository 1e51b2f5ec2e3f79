"""The hooks a plugin implements: these docstrings are the plugin author's reference.

A plugin is a module (or any object) named by an entry point in the
``orchestrator.plugins`` group of its distribution::

    [project.entry-points."orchestrator.plugins"]
    acme = "acme_jobs.plugin"

Its functions decorated with :data:`hookimpl` and named after a spec below are
called by the orchestrator. An implementation may accept fewer arguments than
its spec lists (pluggy passes only the ones it names), never other ones; a
decorated function whose name matches no spec stops the plugin from loading.
"""

from __future__ import annotations

import pluggy

from orchestrator_core.job_type import JobType
from orchestrator_core.models import Job
from orchestrator_core.states import State

hookspec = pluggy.HookspecMarker("orchestrator")
"""Marks the functions below as hook specifications."""

hookimpl = pluggy.HookimplMarker("orchestrator")
"""Marks a plugin's function as the implementation of the hook of the same name."""


@hookspec
def register_job_types() -> list[JobType]:  # type: ignore[empty-body]
    """Return the job types this plugin provides.

    Every plugin that provides job types implements this hook; a plugin that only
    observes jobs (implements just :func:`job_transitioned`) may leave it out.

    :return: a list (or tuple) of :class:`~orchestrator_core.JobType`, possibly
        empty. Each name must be unique across all installed plugins; prefix it
        with the plugin's name (``"acme.count"``) to stay clear of others.

    Called once each time the plugins are loaded: at start-up of the api, of each
    worker and of ``orchestrator plugins``, before any job runs, in every one of
    these processes. Keep it cheap and free of side effects. Each plugin's
    implementation is called on its own, so what it returns is attributed to it.

    The plugin is quarantined (it contributes nothing, and the error is logged
    and shown by ``orchestrator plugins``) when the implementation raises,
    including :class:`~orchestrator_core.InvalidJobTypeError` from a malformed
    ``JobType``, returns anything but a list or tuple of ``JobType``, or returns
    one name twice. A name that two plugins register is registered by neither,
    with an error naming both distributions; their other types still load.

    Example::

        @hookimpl
        def register_job_types() -> list[JobType]:
            return [JobType(name="acme.count", payload=CountPayload, execute=count)]
    """


@hookspec
def job_transitioned(job: Job, old_state: State, new_state: State) -> None:
    """Observe a job moving from one state to another (webhooks, audit logs, metrics).

    :param job: the job document as persisted by the transition, so ``job.state``
        is ``new_state``. It is frozen: change nothing, keep it if you like.
    :param old_state: the state the job left.
    :param new_state: the state the job entered; ``new_state.terminal`` is True
        for COMPLETED, FAILED and CANCELLED.
    :return: nothing; a returned value is ignored.

    Called after the transition has been persisted in Redis, synchronously in the
    process that made it (the api when it cancels a job that has not started, a
    worker for the transitions of a job it runs), so implement it in a plugin
    installed wherever those processes run. Never called for a transition that
    Redis refused. Each plugin's implementation is
    called on its own: an exception it raises is logged with the plugin's name
    and the job id, never changes the job's outcome, and does not stop the other
    plugins' implementations.

    The caller waits for the call to return, so hand anything slow (an HTTP
    request) to a thread or queue of your own. Delivery is at most once: a
    process that dies between persisting and notifying does not call it, so an
    audit that must see every transition reads the job's ``history``.
    """
