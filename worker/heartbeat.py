"""The worker's heartbeat: its record in the workers hash, refreshed until it stops.

A worker publishes its figures through Redis rather than on a port of its own.
Containers scaled with ``--scale worker=N`` publish no ports and come and go under
names nobody configures; through Redis, the API stays the one scrape target and
sees every worker that can reach the store, which a worker must anyway. The job
figures need no heartbeat at all: the store script counts each transition where it
happens, whichever process made it. The heartbeat adds what only the worker knows:
that it is alive, what it serves, how many plugins it failed to load.

The main process beats, not the pool's: it is the one that lives as long as the
worker, and Celery replaces a pool process that dies.
"""

from __future__ import annotations

import logging
import threading

import redis

from orchestrator_core.exceptions import StoreUnavailableError
from orchestrator_core.store.connection import redis_errors
from orchestrator_core.store.keys import Keys
from orchestrator_core.telemetry.heartbeats import STALE_HEARTBEATS, WorkerBeat

logger = logging.getLogger(__name__)

# KEYS[1] the workers hash; ARGV[1] this worker's field, ARGV[2] its record without
# times, ARGV[3] after how many of its intervals a record is stale.
# Stamps the record with Redis TIME (keeping the first beat's as started_at), deletes
# every stale or unreadable record, and lets the hash expire if every worker goes quiet.
BEAT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local factor = tonumber(ARGV[3])
local record = cjson.decode(ARGV[2])
record.started_at = now
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous then
    local ok, old = pcall(cjson.decode, previous)
    if ok and type(old) == 'table' and tonumber(old.started_at) then
        record.started_at = tonumber(old.started_at)
    end
end
record.last_seen = now
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
local pruned = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
    local ok, other = pcall(cjson.decode, all[i + 1])
    local readable = ok and type(other) == 'table'
        and tonumber(other.last_seen) and tonumber(other.interval)
    if not readable or now - tonumber(other.last_seen) > factor * tonumber(other.interval) then
        redis.call('HDEL', KEYS[1], all[i])
        pruned = pruned + 1
    end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(2000 * factor * record.interval))
return pruned
"""


class Heartbeat:
    """Keeps one worker's record in ``Keys.workers`` fresh while :meth:`run` runs, and
    deletes it when :meth:`run` returns, so a clean stop drops the worker from the
    count at once; a crashed worker drops out once its record is stale."""

    def __init__(self, client: redis.Redis, keys: Keys, beat: WorkerBeat) -> None:
        self.redis = client
        self.keys = keys
        self.beat = beat
        self._script = client.register_script(BEAT_SCRIPT)

    def beat_once(self) -> int:
        """Refresh this worker's record; returns how many stale records were deleted.

        :raises StoreUnavailableError: Redis did not answer.
        """
        with redis_errors("sending the worker heartbeat"):
            pruned = self._script(
                keys=[self.keys.workers],
                args=[self.beat.worker, self.beat.encode(), STALE_HEARTBEATS],
            )
        if pruned:
            logger.info("heartbeat: removed %d stale worker record(s)", pruned)
        return int(pruned)

    def remove(self) -> None:
        """Delete this worker's record.

        :raises StoreUnavailableError: Redis did not answer.
        """
        with redis_errors("removing the worker heartbeat"):
            self.redis.hdel(self.keys.workers, self.beat.worker)

    def run(self, stop: threading.Event) -> None:
        """Beat every interval until ``stop`` is set, then remove the record."""
        while not stop.is_set():
            try:
                self.beat_once()
            except StoreUnavailableError:
                logger.warning(
                    "heartbeat failed; trying again in %.1f s", self.beat.interval, exc_info=True
                )
            except Exception:
                logger.exception(
                    "heartbeat failed unexpectedly; trying again in %.1f s", self.beat.interval
                )
            stop.wait(self.beat.interval)
        try:
            self.remove()
        except StoreUnavailableError:
            logger.warning("could not remove the worker heartbeat; it will go stale", exc_info=True)
