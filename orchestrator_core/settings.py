"""Settings from ``ORCHESTRATOR_*`` environment variables, each with a working local default."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator_core.exceptions import ConfigurationError

CommaList = Annotated[tuple[str, ...], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Every setting of the api, the worker and the CLI.

    ``prefix`` starts every Redis key and every queue name, so two deployments (or
    two test runs) can share one Redis and one RabbitMQ without seeing each other.
    """

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", frozen=True, extra="ignore")

    redis_url: str = "redis://localhost:6379/0"
    broker_url: str = "amqp://guest:guest@localhost:5672//"
    api_url: str = "http://localhost:8000"
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    api_key: SecretStr | None = None
    """The key the command-line client sends as `Authorization: Bearer <key>`."""
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    prefix: str = Field(default="orch", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

    redis_sentinels: CommaList = ()
    """Redis Sentinels (``host:port``, comma-separated) that say which Redis is the
    primary; set, ``redis_url`` gives only the database, password and TLS to use there."""
    redis_sentinel_master: str | None = None
    """The name the Sentinels know the primary by (needed with ``redis_sentinels``)."""
    redis_sentinel_password: SecretStr | None = None
    """The Sentinels' own password, when they have one (the primary's is ``redis_url``'s)."""
    redis_wait_replicas: int = Field(default=0, ge=0)
    """With more than 0, every write of the store waits (``WAIT``) until this many replicas
    have it, so an acknowledged write survives the loss of the primary alone; past
    ``redis_wait_timeout_seconds`` the caller gets a Redis error (the write may be kept)."""
    redis_wait_timeout_seconds: float = Field(default=0.1, gt=0)
    """How long a write waits for its replicas (``redis_wait_replicas``)."""
    queue_type: Literal["classic", "quorum"] = "classic"
    """How job queues are declared: ``quorum`` replicates them across a RabbitMQ cluster
    (a queue keeps the type it was first declared with)."""
    queue_delivery_limit: int = Field(default=20, ge=1)
    """For quorum queues: deliveries of one message before the broker dead-letters it."""

    redis_socket_timeout: float = Field(default=2.0, gt=0)
    """Seconds to wait for a Redis reply before giving up with StoreUnavailableError."""
    redis_connect_timeout: float = Field(default=1.0, gt=0)
    """Seconds to wait for a TCP connection to Redis."""
    tls_ca_file: str | None = None
    """A PEM file of the certificate authorities that ``rediss://`` and ``amqps://``
    connections trust; unset: the system's."""

    plugins: CommaList | None = None
    """Allow-list of plugin entry-point names; unset loads every installed plugin."""

    lease_seconds: float = Field(default=30.0, gt=0)
    """Lease a running attempt renews (every third of it); a worker silent this long is lost."""
    cancel_grace_seconds: float = Field(default=10.0, ge=0)
    """How long execute may ignore a fired token before the worker stops the attempt."""
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    """How often each worker publishes due retries and looks for lost jobs."""
    prefetch_multiplier: int = Field(default=4, ge=1, le=100)
    """Messages each worker process reserves ahead (late acks keep them safe: a worker that
    dies gives them back). More keeps a busy worker fed; 1 suits long jobs, which would
    hold the messages reserved behind them while other workers idle."""
    early_ack_seconds: float = Field(default=300.0, ge=0)
    """How long a worker holds a message unacknowledged. Past it, the message of a job that
    has started is acknowledged (the job's lease guards it from then on) and one still
    waiting for a free process goes back to the queue. Keep it well below the broker's
    ``consumer_timeout`` (RabbitMQ: 30 minutes), past which the broker closes the worker's
    channel and delivers its messages again; 0 holds every message until its job ends."""
    outbox_seconds: float = Field(default=10.0, gt=0)
    """How long a new job waits for its publish to be confirmed before the sweep publishes it."""
    idempotency_seconds: float = Field(default=86400.0, gt=0)
    """How long an Idempotency-Key keeps naming the job it created."""
    publish_timeout_seconds: float = Field(default=2.0, gt=0)
    """Seconds to connect to the broker and to wait for its publish confirm."""
    api_threads: int = Field(default=8, ge=1, le=1000)
    """Threads an API process runs its blocking calls on (Redis, the broker). Few beat
    many: the calls are short, and every extra thread only contends for the GIL."""
    events_max_length: int = Field(default=100_000, ge=1000)
    """About how many transitions the event stream keeps for late readers to resume from."""

    retention_seconds: float = Field(default=7 * 24 * 3600.0, ge=0)
    """How long a finished job is kept after ``finished_at`` before it is deleted with every
    key and index entry it owns; 0 keeps jobs forever. A type's ``retention`` overrides it."""

    allow_anonymous: bool = False
    """Serve with no API keys on an address other than loopback (an open API, on purpose)."""
    readonly_api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    """Keys that may only read: GET routes, event streams and metrics; a write is 403."""
    payload_key: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    """Fernet keys (newest first) that encrypt payload fields typed ``SecretStr`` at rest;
    the first encrypts, every one decrypts, so a key is rotated by putting a new one first."""
    max_json_depth: int = Field(default=64, ge=1, le=1000)
    """How deeply a request's JSON may nest; deeper is a 400, never a RecursionError."""
    max_streams_per_key: int = Field(default=16, ge=1)
    """Event streams one API key (or, with no keys, one client address) may hold open at
    once in one API process; past it a new stream is 429."""
    max_streams: int = Field(default=512, ge=1)
    """Event streams one API process serves at once; past it a new stream is 429."""
    readiness_cache_seconds: float = Field(default=1.0, ge=0)
    """``/readyz`` answers from a probe at most this old: one probe per interval per process."""

    log_format: Literal["text", "json"] = "text"
    """How every process logs to stderr: readable lines with timestamps, or ``json``, one
    object per line (time, level, logger, message, and a job's ``job_id``, ``type``,
    ``attempt``)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    """The logging threshold when ``--log-level`` is not given (unset: WARNING)."""

    http_allow_networks: CommaList = ()
    """Networks (CIDR, e.g. ``10.0.0.0/8``) that outgoing HTTP from jobs and webhooks may
    reach although they are loopback, private, link-local or metadata addresses."""
    container_allow_host_network: bool = False
    """Let ``container.run`` jobs ask for ``network_mode: host``."""
    container_allow_privileged: bool = False
    """Let ``container.run`` jobs ask for privileged mode and added capabilities."""

    @field_validator(
        "plugins",
        "redis_sentinels",
        "api_keys",
        "readonly_api_keys",
        "payload_key",
        "http_allow_networks",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not a Sentinel address such as 10.0.0.5:26379")
        return value

    @model_validator(mode="after")
    def _sentinel_master(self) -> Settings:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError(
                "ORCHESTRATOR_REDIS_SENTINEL_MASTER must name the primary that "
                "ORCHESTRATOR_REDIS_SENTINELS watch"
            )
        if (
            self.redis_wait_replicas
            and self.redis_wait_timeout_seconds >= self.redis_socket_timeout
        ):
            raise ValueError(
                "ORCHESTRATOR_REDIS_WAIT_TIMEOUT_SECONDS must be shorter than "
                "ORCHESTRATOR_REDIS_SOCKET_TIMEOUT, or a write's wait reads as Redis hanging"
            )
        return self

    @field_validator("http_allow_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Checked here so a typo stops every process at start, not a job at its request.
        for network in value:
            try:
                ipaddress.ip_network(network, strict=True)
            except ValueError as exc:
                problem = f"{network!r} is not a network such as 10.0.0.0/8 ({exc})"
                raise ValueError(problem) from None
        return value


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with ``overrides`` taking precedence.

    :raises ConfigurationError: naming each bad variable, instead of pydantic's trace.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"ORCHESTRATOR_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
