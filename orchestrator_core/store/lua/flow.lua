-- Flow control (DESIGN section 9): when a startable job may start. A job that
-- may not start yet waits in its state, holding no worker slot and no message: in the
-- deferred schedule until a time (its not_before, or the start its rate limit gave it),
-- among the waiters of a concurrency limit, or among the jobs of a paused type. Its hash
-- says where: `wait` (time, rate, concurrency, paused, or woken: a waiter that a freed
-- slot sent to the deferred schedule), `wait_in` (that sorted set's key), and for a
-- woken job `woken_from` (the waiters it left). A running job that counts against its
-- type's concurrency limits has `slot` set and is a member of the type's slot set (and
-- of its key's). Every move out of the running state gives the slot back (move calls
-- flow.release), so no slot outlives its job, whatever happened to the worker.
--
-- The type's own limits come with each start call (args.limits, from its JobType); an
-- operator's override lives in the flow hash (o|<type> as shown, s|<type> as used here).

local WAIT_COUNTED = {time = 'time', rate = 'rate', concurrency = 'concurrency',
    paused = 'paused', woken = 'concurrency'}

local function flow_name(kind, job_type, key)
    local name = prefix .. ':flow:' .. kind .. ':' .. job_type
    if key and key ~= '' then name = name .. ':' .. redis.sha1hex(key) end
    return name
end

local function count_waiting(job_type, wait, by)
    redis.call('HINCRBY', flow_key, 'w|' .. job_type .. '|' .. WAIT_COUNTED[wait], by)
end

-- Where a waiting job stands among others: higher priority first, then older first.
local function rank(job)
    return (9 - (tonumber(job.priority) or 0)) * 1e13 + tonumber(job.seq)
end

-- Puts `job_id` in the deferred schedule at `at` (ms); the sweepers, which sleep until
-- the schedule's first entry, are woken when it comes before that.
local function defer(job_id, at)
    local head = redis.call('ZRANGE', deferred_key, 0, 0, 'WITHSCORES')
    redis.call('ZADD', deferred_key, at, job_id)
    if not head[2] or tonumber(head[2]) > at then
        redis.call('PUBLISH', wake_channel, string.format('%d', at))
    end
end
flow.defer = defer

-- The best waiter of `place` goes to the deferred schedule, due now: its message is
-- published, and its start takes the freed slot (or it waits again, if another took it).
local function wake(place)
    local best = redis.call('ZRANGE', place, 0, 0)[1]
    if not best then return false end
    redis.call('ZREM', place, best)
    redis.call('HSET', job_stem .. '{' .. best .. '}', 'wait', 'woken', 'wait_in', deferred_key,
        'woken_from', place)
    defer(best, now_ms())
    return true
end

local function wake_all(place)
    while wake(place) do end
end

-- The job stops waiting where it waited: it moves (to `target`), or waits elsewhere
-- (`next_place`, for `next_wait`). A woken job that does not take the slot it was woken
-- for passes the wake on, unless it now waits for its rate (its start comes back to the
-- slot) or among the same waiters (another job took the slot).
function flow.unpark(job, waited, target, next_place, next_wait)
    local place = job.wait_in
    if place and place ~= '' and place ~= next_place then redis.call('ZREM', place, id) end
    count_waiting(job.type, waited, -1)
    local from = job.woken_from
    if from and from ~= '' then
        local keeps = next_wait == 'rate'
        if target ~= S.RUNNING and not keeps and next_place ~= from then wake(from) end
        if not keeps then
            redis.call('HSET', job_key, 'woken_from', '')
            job.woken_from = ''
        end
    end
end

-- The job waits for `wait` in `place` (the deferred schedule, scored by when, or a
-- sorted set of waiters, scored by rank).
local function park(job, wait, place, score)
    local before = job.wait
    if before and before ~= '' then flow.unpark(job, before, nil, place, wait) end
    if place == deferred_key then
        defer(id, score)
    else
        redis.call('ZADD', place, score, id)
    end
    redis.call('HSET', job_key, 'wait', wait, 'wait_in', place)
    job.wait, job.wait_in = wait, place
    count_waiting(job.type, wait, 1)
    return wait
end

-- The running job gives its slots back, and the next waiter of each is woken.
function flow.release(job)
    redis.call('SREM', flow_name('slots', job.type), id)
    wake(flow_name('waiters', job.type))
    local key = job.ckey
    if key and key ~= '' then
        redis.call('SREM', flow_name('slots', job.type, key), id)
        local waiters = flow_name('waiters', job.type, key)
        if not wake(waiters) then
            redis.call('SREM', flow_name('waiting-keys', job.type), waiters)
        end
    end
end

-- A type's limits begin to be counted while jobs of it run already: they join its slot
-- sets, so a limit set by an override counts them too.
local function count_running(job_type)
    local type_slots = flow_name('slots', job_type)
    for _, running in ipairs(redis.call('ZRANGE', lease_key, 0, -1)) do
        local key = job_stem .. '{' .. running .. '}'
        local of_type, ckey, slot = unpack(redis.call('HMGET', key, 'type', 'ckey', 'slot'))
        if of_type == job_type and (not slot or slot == '') then
            redis.call('SADD', type_slots, running)
            if ckey and ckey ~= '' then
                redis.call('SADD', flow_name('slots', job_type, ckey), running)
            end
            redis.call('HSET', key, 'slot', '1')
        end
    end
    redis.call('HSET', flow_key, 't|' .. job_type, '1')
end

-- Whether `job` may start now. Returns the writes its start adds (its slot), or nil and
-- why it waits (it is parked already). The checks, in order: its time, its type paused,
-- the concurrency limits (read only), the rate limits (a start too soon reserves the
-- next free one and waits for it), and then the slots are taken.
function flow.admit(job)
    local job_type = job.type
    local override, counted = unpack(redis.call('HMGET', flow_key, 's|' .. job_type,
        't|' .. job_type))
    local limits = {}
    for name, value in pairs(args.limits and args.limits[job_type] or {}) do limits[name] = value end
    if override then
        for name, value in pairs(cjson.decode(override)) do limits[name] = value end
    end
    local not_before = tonumber(job.not_before_us)
    if not_before and not_before > now_ms() * 1000 then
        return nil, park(job, 'time', deferred_key, math.ceil(not_before / 1000))
    end
    if limits.paused then
        return nil, park(job, 'paused', flow_name('paused', job_type), rank(job))
    end

    local key = job.ckey
    if key == '' then key = nil end
    local counting = limits.concurrency or limits.concurrency_per_key
    if counting and not counted then count_running(job_type) end
    if not counting and counted then redis.call('HDEL', flow_key, 't|' .. job_type) end
    local type_slots = flow_name('slots', job_type)
    if limits.concurrency and redis.call('SCARD', type_slots) >= limits.concurrency then
        return nil, park(job, 'concurrency', flow_name('waiters', job_type), rank(job))
    end
    local per_key = key and limits.concurrency_per_key
    local key_slots = per_key and flow_name('slots', job_type, key)
    if per_key and redis.call('SCARD', key_slots) >= per_key then
        local waiters = flow_name('waiters', job_type, key)
        redis.call('SADD', flow_name('waiting-keys', job_type), waiters)
        return nil, park(job, 'concurrency', waiters, rank(job))
    end

    local writes = {}
    local every, every_key = limits.rate_limit, key and limits.rate_limit_per_key
    if every or every_key then
        -- GCRA with no burst: starts at least `every` ms apart. A start that came too soon
        -- is given the next free instant, and waits for it; it keeps that reservation if
        -- it comes back within half an interval of it (later, it asks anew), so no window
        -- of a period ever holds more than the limit and one.
        local now = now_ms()
        local reserved = tonumber(job.rate_at)
        local grace = math.min(every or math.huge, every_key or math.huge) / 2
        if not (reserved and now >= reserved and now <= reserved + grace) then
            local rate_field = 'r|' .. job_type
            local key_rate = every_key and flow_name('rate', job_type, key)
            local free = every and tonumber(redis.call('HGET', flow_key, rate_field)) or 0
            local key_free = key_rate and tonumber(redis.call('GET', key_rate)) or 0
            local at = math.max(now, free, key_free)
            if every then redis.call('HSET', flow_key, rate_field, tostring(at + every)) end
            if key_rate then
                redis.call('SET', key_rate, tostring(at + every_key), 'PX',
                    math.ceil(at + every_key - now) + 1000)
            end
            if at > now then
                redis.call('HSET', job_key, 'rate_at', tostring(at))
                job.rate_at = tostring(at)
                return nil, park(job, 'rate', deferred_key, math.ceil(at))
            end
        end
        if job.rate_at and job.rate_at ~= '' then writes.rate_at = '' end
    end
    if counting then
        redis.call('SADD', type_slots, id)
        if key then redis.call('SADD', flow_name('slots', job_type, key), id) end
        writes.slot = '1'
    end
    return writes
end

-- An operator's override of a type's limits (PATCH /job-types/{name}): args.type,
-- args.shown (the fields as the API shows them) and args.used (as admit reads them),
-- null removing a field. Waiters are woken when a limit is raised or removed, or the
-- type unpaused: each starts, or waits again. Replies {'ok', the override as shown}.
JOBLESS.override = true
function ops.override()
    local job_type = args.type
    local shown_field, used_field = 'o|' .. job_type, 's|' .. job_type
    local shown_json, used_json = unpack(redis.call('HMGET', flow_key, shown_field, used_field))
    local shown = shown_json and cjson.decode(shown_json) or {}
    local used = used_json and cjson.decode(used_json) or {}
    for name, value in pairs(args.shown) do
        if value == cjson.null then shown[name] = nil else shown[name] = value end
    end
    for name, value in pairs(args.used) do
        if value == cjson.null then used[name] = nil else used[name] = value end
    end
    if next(shown) then
        redis.call('HSET', flow_key, shown_field, cjson.encode(shown), used_field, cjson.encode(used))
    else
        redis.call('HDEL', flow_key, shown_field, used_field)
    end
    if not used.paused then
        local paused = flow_name('paused', job_type)
        local waiting = redis.call('ZRANGE', paused, 0, -1)
        for _, job_id in ipairs(waiting) do
            redis.call('HSET', job_stem .. '{' .. job_id .. '}', 'wait', 'time', 'wait_in', deferred_key)
            defer(job_id, now_ms())
        end
        if #waiting > 0 then
            count_waiting(job_type, 'paused', -#waiting)
            count_waiting(job_type, 'time', #waiting)
            redis.call('DEL', paused)
        end
    end
    if args.wake then  -- a concurrency limit changed: the waiters see whether it admits them
        wake_all(flow_name('waiters', job_type))
        local keys_set = flow_name('waiting-keys', job_type)
        for _, waiters in ipairs(redis.call('SMEMBERS', keys_set)) do wake_all(waiters) end
        redis.call('DEL', keys_set)
    end
    return {'ok', next(shown) and cjson.encode(shown) or '{}'}
end

-- What the metrics show of the flow control: the flow hash, and the running jobs that
-- hold slots of each type whose limits are counted. Replies {'ok', flat hash, {type, n}...}.
JOBLESS.flow = true
function ops.flow()
    local flat = redis.call('HGETALL', flow_key)
    local used = {}
    for i = 1, #flat, 2 do
        local job_type = string.match(flat[i], '^t|(.+)$')
        if job_type then
            used[#used + 1] = {job_type, redis.call('SCARD', flow_name('slots', job_type))}
        end
    end
    return {'ok', flat, used}
end
