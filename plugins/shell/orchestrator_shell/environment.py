"""The environment a ``shell.run`` command starts with: a minimal one, never the worker's.

The worker's own environment holds its settings and secrets (``ORCHESTRATOR_*``, the
broker's and Redis's credentials, API keys, cloud credentials); any command a client
submits could print it. So the command gets only what programs commonly need, set to
fixed values, and what the payload asks for.
"""

from __future__ import annotations

from orchestrator_shell.payload import ShellPayload

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
"""The ``PATH`` of a command whose payload sets none: the system's programs only, not the
worker's virtual environment or its user's own directories."""

LOCALE = "C.UTF-8"
"""``LANG`` and ``LC_ALL``: UTF-8 that every glibc and musl system has."""


def command_environment(payload: ShellPayload, *, home: str) -> dict[str, str]:
    """The complete environment of the command: ``PATH``, ``HOME``, ``LANG`` and
    ``LC_ALL``, then the payload's ``env`` and ``secret_env``, which may replace them.

    :param home: the ``HOME`` of the command (a fresh directory of its own).
    """
    environment = {"PATH": SAFE_PATH, "HOME": home, "LANG": LOCALE, "LC_ALL": LOCALE}
    environment.update(payload.env)
    environment.update(
        {name: value.get_secret_value() for name, value in payload.secret_env.items()}
    )
    return environment
