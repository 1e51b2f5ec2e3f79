-- The job store's only writer of state: every write to a job goes through this script,
-- so each one is atomic and the state machine is enforced by Redis itself. The script
-- is this file and the per-operation files after it (see store/script.py), each adding
-- its operations to `ops`; main.lua dispatches.
--
-- KEYS[1] job hash, KEYS[2] its history list of an earlier layout (read once, then
-- moved into the hash), KEYS[3] sequence counter, KEYS[4] lease index (running job ids
-- by lease expiry, ms), KEYS[5] retry schedule (retrying job ids by when their next
-- attempt is due, ms), KEYS[6] outbox (new job ids by when the sweep publishes them
-- unless their first message is confirmed first, ms), KEYS[7] event stream, KEYS[8]
-- metrics hash, KEYS[9] set of job types seen, KEYS[10] the one schedule of outbox and
-- retries of an earlier layout (drained by the sweep), KEYS[11] expiries (finished job
-- ids by when they are deleted, ms), KEYS[12] the state of the walk that gives finished
-- jobs without an expiry entry one (retention.lua).
-- ARGV[1] operation, ARGV[2] job id, ARGV[3] stem of job keys, ARGV[4] stem of the
-- per-type indexes, ARGV[5] cancel channel, ARGV[6] JSON object of small arguments,
-- ARGV[7] a JSON document (payload, result or progress), ARGV[8] the event stream's cap.
-- Every call's small arguments carry the retention in effect (ms; 0 keeps): keep_ms,
-- and keep_types for the job types whose own retention differs.
--
-- Replies: {"ok", ...} or {"err", code, ...}; the Python side maps codes to exceptions.
--
-- State names are never written here: S names each state, ALLOWED is the transition
-- table, and the sets below are the named sets of states.py, all filled in from Python.
--
-- Every transition is one XADD to the event stream, and its entry id is the clock of
-- the move (Redis keeps stream ids increasing, so no move is dated before the last);
-- the metrics are folded from the stream afterwards (metrics.lua), not counted here.

local S = --[[STATES]]
local ALLOWED = --[[TRANSITIONS]]
local STARTABLE = --[[STARTABLE]]
local TERMINAL = --[[TERMINAL]]
local BUCKETS = --[[BUCKETS]]

-- At most this many entries are folded into the metrics before a listing or a count.
local FOLD_FIRST = 10000

local job_key, legacy_history_key, seq_key = KEYS[1], KEYS[2], KEYS[3]
local lease_key, retry_key, outbox_key = KEYS[4], KEYS[5], KEYS[6]
local events_key, metrics_key, types_key = KEYS[7], KEYS[8], KEYS[9]
local legacy_dispatch_key, expiry_key, expiry_walk_key = KEYS[10], KEYS[11], KEYS[12]
local op, id, job_stem, type_base, cancel_channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local args = cjson.decode(ARGV[6])
local blob = ARGV[7]
local events_max = ARGV[8]

-- The flow control's keys (flow.lua) share the prefix that the job keys start with.
local prefix = string.sub(job_stem, 1, -6)
local deferred_key, flow_key, wake_channel = prefix .. ':deferred', prefix .. ':flow', prefix .. ':wake'
-- flow.lua's functions, which move calls: a job that waited stops waiting, a job that
-- held a concurrency slot gives it back.
local flow = {}

-- Each operation is ops[name](job): `job` holds the job hash's fields, read and
-- checked before the call, except for the operations in JOBLESS, called with nothing.
local ops, JOBLESS = {}, {}

-- Redis TIME, read at most once per call and only by what has no event to date it.
local clock_ms
local function now_ms()
    if not clock_ms then
        local time = redis.call('TIME')
        clock_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    end
    return clock_ms
end

-- Instants are integer microseconds as decimal strings (Lua numbers print large
-- integers in exponent form).
local function micros(ms)
    return string.format('%d000', ms)
end

local function entry_ms(entry_id)
    return tonumber(string.match(entry_id, '^(%d+)'))
end

-- Whether stream id a comes at or before stream id b.
local function entry_le(a, b)
    local a_ms, a_n = string.match(a, '^(%d+)-(%d+)$')
    local b_ms, b_n = string.match(b, '^(%d+)-(%d+)$')
    a_ms, a_n, b_ms, b_n = tonumber(a_ms), tonumber(a_n), tonumber(b_ms), tonumber(b_n)
    return a_ms < b_ms or (a_ms == b_ms and a_n <= b_n)
end

local function later(a, b)
    if b and (#b > #a or (#b == #a and b > a)) then return b end
    return a
end

local function fields_of(flat)
    local fields = {}
    for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
    return fields
end

local function flatten(fields)
    local flat = {}
    for name, value in pairs(fields) do
        flat[#flat + 1] = name
        flat[#flat + 1] = value
    end
    return flat
end

-- A job's fields with its history as one JSON array: jobs written by an earlier layout
-- keep their history in a list of their own.
local function job_at(key, history_key)
    local flat = redis.call('HGETALL', key)
    if #flat == 0 then return nil end
    local job = fields_of(flat)
    if not job.history then
        local entries = redis.call('LRANGE', history_key, 0, -1)
        job.history = '[' .. table.concat(entries, ',') .. ']'
        job.transitions = tostring(#entries)
        job.legacy_history = history_key
    end
    return job
end

-- How long (ms) a job of `job_type` that finishes now is kept; 0 keeps it for good.
local function retention_of(job_type)
    local by_type = args.keep_types
    return tonumber(by_type and by_type[job_type] or args.keep_ms) or 0
end

-- The sealed payload (secret fields in clear, or encrypted) is for the worker's start only.
local function document_of(job)
    local copy = {}
    for name, value in pairs(job) do
        if name ~= 'legacy_history' and name ~= 'sealed' then copy[name] = value end
    end
    return {'ok', flatten(copy)}
end

-- The one transition. `writes` are the fields the caller sets besides the state's own;
-- `lease` ({owner, ms}) is granted when the target is S.RUNNING. Updates `job` in place,
-- so that a reply built from it is the stored document. Returns the move's instant (ms).
local function move(job, target, reason, writes, lease)
    local current = job.state
    local attempt = tonumber(job.attempts)
    if target == S.RUNNING then attempt = attempt + 1 end
    local position = tonumber(job.transitions) + 1
    local event = {'job_id', id, 'type', job.type, 'state', target, 'from', current,
        'attempt', attempt, 'seq', position}
    if reason then event[#event + 1] = 'reason'; event[#event + 1] = reason end
    -- What the metrics fold needs to time the move, which it dates by the entry id.
    if target == S.RUNNING and not job.started_us then
        event[#event + 1] = 'wait_from'; event[#event + 1] = job.created_us
    end
    if TERMINAL[target] and job.started_us then
        event[#event + 1] = 'ran_from'; event[#event + 1] = job.started_us
    end
    if target == S.CANCELLED and job.cancel_requested_us then
        event[#event + 1] = 'cancel_from'; event[#event + 1] = job.cancel_requested_us
    end
    local at_ms = entry_ms(redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*',
        unpack(event)))
    local at = later(micros(at_ms), job.updated_us)

    local entry = {state = target, at = at, attempt = attempt}
    if reason then entry.reason = reason end
    writes.state = target
    writes.updated_us = at
    writes.history = string.sub(job.history, 1, -2)
        .. (position > 1 and ',' or '') .. cjson.encode(entry) .. ']'
    writes.transitions = tostring(position)
    if target == S.RUNNING then
        writes.attempts = tostring(attempt)
        if not job.started_us then writes.started_us = at end
        writes.lease_owner = lease.owner
        writes.lease_expires_ms = string.format('%d', at_ms + lease.ms)
    elseif current == S.RUNNING then
        -- Emptied, not deleted: one write, and no fence matches an empty owner.
        writes.lease_owner = ''
        writes.lease_expires_ms = ''
    end
    if TERMINAL[target] then writes.finished_us = at end
    local waited, held = job.wait, job.slot
    if waited and waited ~= '' then writes.wait = '' end
    if current == S.RUNNING and held and held ~= '' then writes.slot = '' end
    if target == S.COMPLETED and job.error then
        writes.error = ''  -- an earlier attempt's error is history now
    end
    local flat = {}
    for name, value in pairs(writes) do
        flat[#flat + 1] = name
        flat[#flat + 1] = value
        job[name] = value
    end
    redis.call('HSET', job_key, unpack(flat))
    if job.legacy_history then
        redis.call('DEL', job.legacy_history)
        job.legacy_history = nil
    end

    -- Running jobs are listed from the lease index; every other state has its index.
    if current ~= S.RUNNING then
        redis.call('ZREM', type_base .. job.type .. ':' .. current, id)
    end
    if target ~= S.RUNNING then
        redis.call('ZADD', type_base .. job.type .. ':' .. target, job.seq, id)
    end
    if target == S.RUNNING then
        redis.call('ZADD', lease_key, at_ms + lease.ms, id)
    elseif current == S.RUNNING then
        redis.call('ZREM', lease_key, id)
    end
    if current == S.RETRYING then
        redis.call('ZREM', retry_key, id)
    elseif current == S.CREATED and target ~= S.RUNNING then
        -- A started job's outbox entry is cleared by its confirm, or dropped by the sweep.
        redis.call('ZREM', outbox_key, id)
    end
    if target == S.RETRYING then
        -- Every retrying job is on the schedule, so none can wait forever.
        redis.call('ZADD', retry_key, at_ms + (args.retry_ms or 0), id)
    end
    if waited and waited ~= '' then flow.unpark(job, waited, target) end
    if current == S.RUNNING and held and held ~= '' then flow.release(job) end
    if TERMINAL[target] then
        -- The sweep deletes the job once its retention after finished_at is over.
        local keep = retention_of(job.type)
        if keep > 0 then redis.call('ZADD', expiry_key, at_ms + keep, id) end
    end
    return at_ms
end

-- The fencing check: whoever presents a lease must hold the live one, before any write.
local function check_fence(job, fence)
    local holder = job.lease_owner
    if job.state ~= S.RUNNING or holder ~= fence then
        return {'err', 'stale', holder or false, job.state}
    end
    return nil
end
