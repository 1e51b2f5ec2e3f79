-- The job store's only writer of state: every write to a job goes through this script,
-- so each one is atomic and the state machine is enforced by Redis itself.
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

local ALLOWED = --[[TRANSITIONS]]
local BUCKETS = --[[BUCKETS]]

local job_key, history_key, seq_key, all_key, lease_key, dispatch_key, events_key, metrics_key =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local op, id, state_base, type_base, cancel_channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local args = cjson.decode(ARGV[6])
local blob = ARGV[7]
local events_max = ARGV[8]

-- One clock for every process: Redis TIME, as exact decimal strings (Lua numbers
-- print large integers in exponent form, and microseconds need 16 digits).
local time = redis.call('TIME')
local now_us = time[1] .. string.format('%06d', tonumber(time[2]))
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function document()
    return {'ok', redis.call('HGETALL', job_key), redis.call('LRANGE', history_key, 0, -1)}
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
-- and 'h|<name>|<type>|<label>|sum'.
local function observe(name, job_type, label, value, bounds)
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

local function move(current, target, reason, fields)
    local job_type, seq, updated_us, attempts, started_us, created_us, cancel_us = unpack(
        redis.call('HMGET', job_key, 'type', 'seq', 'updated_us', 'attempts', 'started_us',
            'created_us', 'cancel_requested_us'))
    local at = monotonic_now(updated_us)
    local attempt = tonumber(attempts)
    local terminal = next(ALLOWED[target]) == nil
    local writes = {'state', target, 'updated_us', at}
    if target == 'RUNNING' then
        attempt = attempt + 1
        table.insert(writes, 'attempts'); table.insert(writes, attempt)
        if not started_us then
            table.insert(writes, 'started_us'); table.insert(writes, at)
        end
    elseif current == 'RUNNING' then
        redis.call('HDEL', job_key, 'lease_owner', 'lease_expires_ms')
        redis.call('ZREM', lease_key, id)
    end
    if target == 'RETRYING' then
        -- Every retrying job is on the schedule, so none can wait forever.
        redis.call('ZADD', dispatch_key, now_ms + (args.retry_ms or 0), id)
    else
        redis.call('ZREM', dispatch_key, id)
    end
    if terminal then
        table.insert(writes, 'finished_us'); table.insert(writes, at)
    end
    if target == 'COMPLETED' then
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
    if target == 'RUNNING' and not started_us then
        observe('queue_wait', job_type, '', seconds_between(created_us, at), BUCKETS.seconds)
    end
    if terminal then
        if started_us then
            observe('duration', job_type, target, seconds_between(started_us, at), BUCKETS.seconds)
        end
        observe('attempts', job_type, target, attempt, BUCKETS.attempts)
    end
    if target == 'CANCELLED' then
        observe('cancel_latency', job_type, current, seconds_between(cancel_us or at, at),
            BUCKETS.seconds)
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

if op == 'create' then
    if args.idem then
        -- One job per idempotency key: a repeat with the same body gets the first job.
        local earlier, fingerprint = unpack(redis.call('HMGET', args.idem, 'job', 'fingerprint'))
        if earlier then
            if fingerprint ~= args.fingerprint then
                return {'err', 'idempotency_conflict', earlier}
            end
            local key = args.job_stem .. '{' .. earlier .. '}'
            return {'ok', 'existing', earlier,
                {'ok', redis.call('HGETALL', key), redis.call('LRANGE', key .. ':history', 0, -1)}, 0}
        end
        redis.call('HSET', args.idem, 'job', id, 'fingerprint', args.fingerprint)
        redis.call('PEXPIRE', args.idem, args.idem_ttl_ms)
    end
    if redis.call('EXISTS', job_key) == 1 then
        return {'err', 'exists'}
    end
    local seq = redis.call('INCR', seq_key)
    redis.call('HSET', job_key,
        'id', id, 'type', args.type, 'queue', args.queue, 'state', 'CREATED', 'payload', blob,
        'attempts', 0, 'max_attempts', args.max_attempts, 'cancel_requested', 0,
        'created_us', now_us, 'updated_us', now_us, 'seq', seq, 'idem', args.idem or '')
    redis.call('RPUSH', history_key, cjson.encode({state = 'CREATED', at = now_us, attempt = 0}))
    redis.call('HSET', job_key, 'created_event', emit(args.type, nil, 'CREATED', now_us, 0, 1, nil))
    redis.call('ZADD', all_key, seq, id)
    redis.call('ZADD', state_base .. 'CREATED', seq, id)
    redis.call('ZADD', type_base .. args.type, seq, id)
    redis.call('ZADD', type_base .. args.type .. ':CREATED', seq, id)
    redis.call('ZADD', dispatch_key, now_ms + args.dispatch_ms, id)
    return {'ok', 'created', id, document(), 0}
end

if op == 'list' then
    local cursor = args.cursor and ('(' .. args.cursor) or '+inf'
    local ids = redis.call('ZREVRANGEBYSCORE', args.index, cursor, '-inf',
        'WITHSCORES', 'LIMIT', 0, args.limit + 1)
    local items, next_cursor = {}, false
    local count = #ids / 2
    for i = 1, math.min(count, args.limit) do
        local item_id = ids[2 * i - 1]
        local key = args.job_stem .. '{' .. item_id .. '}'
        items[i] = {item_id, redis.call('HGETALL', key), redis.call('LRANGE', key .. ':history', 0, -1)}
    end
    if count > args.limit then
        next_cursor = ids[2 * args.limit]
    end
    return {'ok', next_cursor, items}
end

if op == 'claim' then
    -- The sweep: jobs due for publishing, and running jobs whose lease expired. Each
    -- claimed entry is pushed back by the visibility window, so concurrent sweepers do
    -- not publish it twice and a sweeper that dies before publishing is covered.
    local claimed = {}
    local function scan(index, wanted_state, next_attempt_offset)
        local due = redis.call('ZRANGEBYSCORE', index, '-inf', now_ms, 'LIMIT', 0, args.limit)
        for _, job_id in ipairs(due) do
            local key = args.job_stem .. '{' .. job_id .. '}'
            local state, queue, attempts = unpack(redis.call('HMGET', key, 'state', 'queue', 'attempts'))
            if state and wanted_state[state] then
                redis.call('ZADD', index, now_ms + args.visibility_ms, job_id)
                table.insert(claimed, {job_id, queue, tonumber(attempts) + next_attempt_offset})
            else
                redis.call('ZREM', index, job_id)
            end
        end
    end
    scan(dispatch_key, {CREATED = true, RETRYING = true}, 1)
    scan(lease_key, {RUNNING = true}, 0)
    return {'ok', claimed}
end

local current = redis.call('HGET', job_key, 'state')
if not current then
    return {'err', 'not_found'}
end
if not ALLOWED[current] then
    return {'err', 'corrupt', 'unknown state ' .. current}
end

if op == 'get' then
    return document()
end

-- The fencing check: whoever presents a lease must hold the live one, before any write.
local function check_fence(fence)
    local holder = redis.call('HGET', job_key, 'lease_owner')
    if current ~= 'RUNNING' or holder ~= fence then
        return {'err', 'stale', holder or false, current}
    end
    return nil
end

if op == 'start' then
    -- A worker received the message for attempt args.attempt.
    local function drop(why) return {'ok', 'drop', why, document(), 0} end
    local attempts, max_attempts, expires = unpack(
        redis.call('HMGET', job_key, 'attempts', 'max_attempts', 'lease_expires_ms'))
    attempts = tonumber(attempts)
    local moves = 0
    if next(ALLOWED[current]) == nil then
        return drop('finished')
    end
    if current == 'RUNNING' then
        if attempts ~= args.attempt then return drop('stale message') end
        if (tonumber(expires) or 0) > now_ms then return drop('duplicate') end
        -- Redelivered after its worker died: that attempt failed, take the job over.
        move(current, 'RETRYING', 'worker lost', {error = args.lost_error})
        current, moves = 'RETRYING', 1
    elseif attempts ~= args.attempt - 1 then
        return drop('stale message')
    end
    if attempts >= tonumber(max_attempts) then
        move(current, 'FAILED', 'attempts exhausted', {})
        return {'ok', 'drop', 'attempts exhausted', document(), moves + 1}
    end
    move(current, 'RUNNING', nil, {})
    grant_lease(args.owner, args.lease_ms)
    return {'ok', 'started', '', document(), moves + 1}
end

if op == 'discard' then
    -- Undo a submission whose message could not be queued: only a job nobody has
    -- seen start, so to clients it never existed.
    local attempts, job_type, idem, created_event = unpack(
        redis.call('HMGET', job_key, 'attempts', 'type', 'idem', 'created_event'))
    if current ~= 'CREATED' or tonumber(attempts) ~= 0 then
        return {'err', 'illegal', current, 'only a job that never started can be discarded'}
    end
    -- Neither its event nor its count stays: the job never existed.
    if created_event then redis.call('XDEL', events_key, created_event) end
    redis.call('HINCRBY', metrics_key, 't|' .. job_type .. '|CREATED', -1)
    redis.call('DEL', job_key, history_key)
    redis.call('ZREM', all_key, id)
    redis.call('ZREM', state_base .. 'CREATED', id)
    redis.call('ZREM', type_base .. job_type, id)
    redis.call('ZREM', type_base .. job_type .. ':CREATED', id)
    redis.call('ZREM', dispatch_key, id)
    if idem and idem ~= '' and redis.call('HGET', idem, 'job') == id then
        redis.call('DEL', idem)
    end
    return {'ok'}
end

if op == 'dispatched' then
    -- The message for attempt args.attempt is confirmed by the broker: leave the outbox,
    -- unless the entry already stands for a later attempt.
    local attempts = tonumber(redis.call('HGET', job_key, 'attempts'))
    if (current == 'CREATED' or current == 'RETRYING') and attempts == args.attempt - 1 then
        redis.call('ZREM', dispatch_key, id)
    end
    return {'ok'}
end

if op == 'transition' then
    local target = args.to
    if args.fence then
        local refused = check_fence(args.fence)
        if refused then return refused end
    end
    if args.expected then
        local believed = false
        for _, state in ipairs(args.expected) do
            if state == current then believed = true end
        end
        if not believed then
            return {'err', 'illegal', current, 'expected ' .. table.concat(args.expected, ' or ')}
        end
    end
    if not ALLOWED[current][target] then
        return {'err', 'illegal', current, ''}
    end
    if current == 'RUNNING' and not args.fence then
        -- Only the lease holder moves a running job, or a taker once the lease has expired.
        local holder, expires = unpack(redis.call('HMGET', job_key, 'lease_owner', 'lease_expires_ms'))
        local remaining = (tonumber(expires) or 0) - now_ms
        if not args.takeover then
            return {'err', 'stale', holder or false, current}
        end
        if remaining > 0 then
            return {'err', 'lease_active', holder or false, remaining}
        end
    end
    local fields = {}
    if target == 'RUNNING' then
        local attempts, max_attempts = unpack(redis.call('HMGET', job_key, 'attempts', 'max_attempts'))
        if tonumber(attempts) >= tonumber(max_attempts) then
            return {'err', 'exhausted', tonumber(attempts), tonumber(max_attempts)}
        end
    end
    if args.error then fields.error = args.error end
    if blob and blob ~= '' then fields.result = blob end
    move(current, target, args.reason, fields)
    if target == 'RUNNING' then
        grant_lease(args.owner, args.lease_ms)
    end
    return {'ok', '', '', document(), 1}
end

if op == 'cancel' then
    if current == 'CREATED' or current == 'RETRYING' then
        move(current, 'CANCELLED', 'cancel requested', {cancel_requested = 1})
        return {'ok', 'cancelled', '', document(), 1}
    end
    if current == 'RUNNING' then
        if redis.call('HGET', job_key, 'cancel_requested') ~= '1' then
            redis.call('HSET', job_key, 'cancel_requested', 1, 'cancel_requested_us', now_us)
        end
        redis.call('PUBLISH', cancel_channel, id)
        return {'ok', 'requested', '', document(), 0}
    end
    if current == 'CANCELLED' then
        return {'ok', 'already_cancelled', '', document(), 0}
    end
    return {'ok', 'finished', '', document(), 0}
end

if op == 'renew' or op == 'progress' then
    local refused = check_fence(args.owner)
    if refused then return refused end
    if op == 'progress' then
        redis.call('HSET', job_key, 'progress', blob)
        return {'ok'}
    end
    local expires = grant_lease(args.owner, args.lease_ms)
    return {'ok', string.format('%d', expires), redis.call('HGET', job_key, 'cancel_requested')}
end

return redis.error_reply('unknown operation ' .. tostring(op))
