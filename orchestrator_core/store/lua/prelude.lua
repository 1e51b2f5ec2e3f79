-- The job store's only writer of state: every write to a job goes through this script,
-- so each one is atomic and the state machine is enforced by Redis itself. The script
-- is this file and the per-operation files after it (see store/script.py), each adding
-- its operations to `ops`; main.lua dispatches.
--
-- KEYS[1] job hash, KEYS[2] history list, KEYS[3] sequence counter,
-- KEYS[4] index of all jobs, KEYS[5] lease index (job id scored by lease expiry, ms),
-- KEYS[6] dispatch schedule (job id scored by when it must be published, ms): the
-- outbox of new jobs until their message is confirmed, and the backoff of retries.
-- KEYS[7] event stream (one entry per transition), KEYS[8] metrics hash.
-- ARGV[1] operation, ARGV[2] job id, ARGV[3] stem of the state indexes,
-- ARGV[4] stem of the type indexes, ARGV[5] cancel channel,
-- ARGV[6] JSON object of small arguments, ARGV[7] a JSON document (payload or result),
-- ARGV[8] the event stream's approximate length cap.
--
-- Replies: {"ok", ...} or {"err", code, ...}; the Python side maps codes to exceptions.
--
-- State names are never written here: S names each state, ALLOWED is the transition
-- table, and the sets below are the named sets of states.py, all filled in from Python.

local S = --[[STATES]]
local ALLOWED = --[[TRANSITIONS]]
local STARTABLE = --[[STARTABLE]]
local TERMINAL = --[[TERMINAL]]
local BUCKETS = --[[BUCKETS]]

local job_key, history_key, seq_key, all_key, lease_key, dispatch_key, events_key, metrics_key =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local op, id, state_base, type_base, cancel_channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local args = cjson.decode(ARGV[6])
local blob = ARGV[7]
local events_max = ARGV[8]

-- Each operation is ops[name](current): `current` is the job's state, read and checked
-- before the call, except for the operations in JOBLESS, which are called with nothing.
local ops, JOBLESS = {}, {}

-- One clock for every process: Redis TIME, as exact decimal strings (Lua numbers
-- print large integers in exponent form, and microseconds need 16 digits).
local time = redis.call('TIME')
local now_us = time[1] .. string.format('%06d', tonumber(time[2]))
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function document_of(key)
    return {'ok', redis.call('HGETALL', key), redis.call('LRANGE', key .. ':history', 0, -1)}
end

local function document()
    return document_of(job_key)
end

-- History never goes backwards, even if the Redis host's clock is stepped back.
local function monotonic_now(updated_us)
    if updated_us and (#updated_us > #now_us or (#updated_us == #now_us and updated_us > now_us)) then
        return updated_us
    end
    return now_us
end

-- Metrics live in one hash, written here with the transition they measure, so every
-- process's moves count exactly once. Counters: 't|<type>|<state>'. Histograms:
-- 'h|<name>|<type>|<label>|<bucket>' (bucket 1..n, n + 1 for +Inf; not cumulative)
-- and 'h|<name>|<type>|<label>|sum'; BUCKETS[name] holds each one's bounds.
local function observe(name, job_type, label, value)
    local bounds = BUCKETS[name]
    local stem = 'h|' .. name .. '|' .. job_type .. '|' .. label .. '|'
    local slot = #bounds + 1
    for i, bound in ipairs(bounds) do
        if value <= bound then slot = i; break end
    end
    redis.call('HINCRBY', metrics_key, stem .. slot, 1)
    redis.call('HINCRBYFLOAT', metrics_key, stem .. 'sum', value)
end

local function seconds_between(from_us, to_us)
    return math.max(0, tonumber(to_us) - tonumber(from_us)) / 1000000
end

-- Every persisted transition is also an entry of the event stream, written in the same
-- script, so a reader of the stream misses none and sees none that did not happen.
local function emit(job_type, previous, target, at, attempt, seq, reason)
    local fields = {'job_id', id, 'type', job_type, 'state', target, 'at', at,
        'attempt', attempt, 'seq', seq}
    if previous then table.insert(fields, 'from'); table.insert(fields, previous) end
    if reason then table.insert(fields, 'reason'); table.insert(fields, reason) end
    redis.call('HINCRBY', metrics_key, 't|' .. job_type .. '|' .. target, 1)
    return redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*', unpack(fields))
end

-- The one transition: state, times, lease, schedule, history, event, metrics, indexes.
local function move(current, target, reason, fields)
    local job_type, seq, updated_us, attempts, started_us, created_us, cancel_us = unpack(
        redis.call('HMGET', job_key, 'type', 'seq', 'updated_us', 'attempts', 'started_us',
            'created_us', 'cancel_requested_us'))
    local at = monotonic_now(updated_us)
    local attempt = tonumber(attempts)
    local terminal = TERMINAL[target]
    local writes = {'state', target, 'updated_us', at}
    if target == S.RUNNING then
        attempt = attempt + 1
        table.insert(writes, 'attempts'); table.insert(writes, attempt)
        if not started_us then
            table.insert(writes, 'started_us'); table.insert(writes, at)
        end
    elseif current == S.RUNNING then
        redis.call('HDEL', job_key, 'lease_owner', 'lease_expires_ms')
        redis.call('ZREM', lease_key, id)
    end
    if target == S.RETRYING then
        -- Every retrying job is on the schedule, so none can wait forever.
        redis.call('ZADD', dispatch_key, now_ms + (args.retry_ms or 0), id)
    else
        redis.call('ZREM', dispatch_key, id)
    end
    if terminal then
        table.insert(writes, 'finished_us'); table.insert(writes, at)
    end
    if target == S.COMPLETED then
        redis.call('HDEL', job_key, 'error')  -- an earlier attempt's error is history now
    end
    for name, value in pairs(fields) do
        table.insert(writes, name); table.insert(writes, value)
    end
    redis.call('HSET', job_key, unpack(writes))
    local entry = {state = target, at = at, attempt = attempt}
    if reason then entry.reason = reason end
    local position = redis.call('RPUSH', history_key, cjson.encode(entry))
    emit(job_type, current, target, at, attempt, position, reason)
    if target == S.RUNNING and not started_us then
        observe('queue_wait', job_type, '', seconds_between(created_us, at))
    end
    if terminal then
        if started_us then
            observe('duration', job_type, target, seconds_between(started_us, at))
        end
        observe('attempts', job_type, target, attempt)
    end
    if target == S.CANCELLED then
        observe('cancel_latency', job_type, current, seconds_between(cancel_us or at, at))
    end
    redis.call('ZREM', state_base .. current, id)
    redis.call('ZADD', state_base .. target, seq, id)
    redis.call('ZREM', type_base .. job_type .. ':' .. current, id)
    redis.call('ZADD', type_base .. job_type .. ':' .. target, seq, id)
end

local function grant_lease(owner, lease_ms)
    local expires = now_ms + lease_ms
    redis.call('HSET', job_key, 'lease_owner', owner, 'lease_expires_ms', string.format('%d', expires))
    redis.call('ZADD', lease_key, expires, id)
    return expires
end

-- The fencing check: whoever presents a lease must hold the live one, before any write.
local function check_fence(current, fence)
    local holder = redis.call('HGET', job_key, 'lease_owner')
    if current ~= S.RUNNING or holder ~= fence then
        return {'err', 'stale', holder or false, current}
    end
    return nil
end
