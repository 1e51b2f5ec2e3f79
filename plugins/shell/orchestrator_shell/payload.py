"""``ShellPayload``: the command a ``shell.run`` job runs, and how."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

MAX_TIMEOUT = 86_400.0
"""The longest payload ``timeout``, in seconds (a day)."""

MAX_TAIL_BYTES = 1_048_576
"""The most of each output stream a job may keep (1 MiB); the result is stored on the job."""

MAX_KILL_GRACE = 300.0
"""The longest wait between SIGTERM and SIGKILL, in seconds."""


class ShellPayload(BaseModel):
    """Payload of ``shell.run``."""

    # Forbidden extras turn a misspelt field (or a hopeful "shell": true) into an error.
    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(
        min_length=1,
        description=(
            "The program and its arguments, run directly and never through a shell, so "
            "nothing in them is expanded. For shell syntax, ask for a shell explicitly: "
            '["sh", "-c", "make && make install"]. A program without a slash is looked '
            "up in PATH (/usr/local/bin:/usr/bin:/bin unless env sets one); a relative "
            "path is relative to cwd."
        ),
        examples=[["python3", "-c", "print('hi')"], ["sh", "-c", "ls -l | wc -l"]],
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Environment variables of the command. It never sees the worker's own: it "
            "starts with PATH=/usr/local/bin:/usr/bin:/bin, LANG=C.UTF-8, LC_ALL=C.UTF-8 "
            "and HOME (a new empty directory), which these may replace."
        ),
    )
    secret_env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "Environment variables whose values are secret (tokens, passwords): given to "
            "the command like env, but never shown by the API, events or logs, and "
            "encrypted at rest when a payload key is set. A name may not also be in env."
        ),
    )
    cwd: str | None = Field(
        default=None,
        description=(
            "Working directory of the command; it must exist on the worker when the job "
            "runs, else the job fails without retry. None runs in the worker's directory."
        ),
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT,
        allow_inf_nan=False,
        description=(
            "Seconds the command may run; then it is stopped like a cancelled one and "
            "the attempt fails with CommandTimeout. None sets no limit of its own."
        ),
    )
    tail_bytes: int = Field(
        default=4096,
        ge=0,
        le=MAX_TAIL_BYTES,
        description=(
            "How many bytes of the end of stdout and of stderr to keep in the result; "
            "earlier output is read and dropped."
        ),
    )
    kill_grace: float = Field(
        default=5.0,
        ge=0,
        le=MAX_KILL_GRACE,
        allow_inf_nan=False,
        description=(
            "Seconds the command's process group gets between SIGTERM and SIGKILL when "
            "it is cancelled or times out."
        ),
    )
    stdin: str | None = Field(
        default=None,
        description=(
            "Text written to the command's standard input (UTF-8), which is then closed. "
            "None gives it an empty standard input."
        ),
    )

    @field_validator("argv")
    @classmethod
    def _check_argv(cls, argv: list[str]) -> list[str]:
        if not argv[0]:
            raise ValueError("the program (the first item) must not be empty")
        if any("\0" in arg for arg in argv):
            raise ValueError("arguments must not contain a NUL character")
        return argv

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            _check_variable(name, value)
        return env

    @field_validator("secret_env")
    @classmethod
    def _check_secret_env(cls, env: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in env.items():
            _check_variable(name, value.get_secret_value())
        return env

    @model_validator(mode="after")
    def _each_variable_once(self) -> ShellPayload:
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"variable {both[0]!r} is in both env and secret_env; give it once")
        return self

    @field_validator("cwd")
    @classmethod
    def _check_cwd(cls, cwd: str | None) -> str | None:
        if cwd is not None and (not cwd or "\0" in cwd):
            raise ValueError("cwd must be a non-empty path without NUL characters")
        return cwd


def _check_variable(name: str, value: str) -> None:
    """The message names the variable, never the value (it may be a secret)."""
    if not name or "=" in name or "\0" in name:
        raise ValueError(f"invalid variable name {name!r}: non-empty, without '=' or NUL")
    if "\0" in value:
        raise ValueError(f"the value of {name!r} must not contain a NUL character")
