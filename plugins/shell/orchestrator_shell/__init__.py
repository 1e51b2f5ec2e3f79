"""The ``shell.run`` job type for the orchestrator: run a command in its own process group.

Registered through the ``shell`` entry point (``orchestrator_shell.plugin``);
importing this package registers nothing.
"""

from orchestrator_shell.exceptions import CommandError, CommandFailed, CommandTimeout
from orchestrator_shell.payload import ShellPayload
from orchestrator_shell.plugin import ShellResult

__all__ = ["CommandError", "CommandFailed", "CommandTimeout", "ShellPayload", "ShellResult"]
