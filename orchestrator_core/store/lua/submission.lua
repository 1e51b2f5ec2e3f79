-- Submission: new jobs, in tickets (one request each: one job, or a batch), and the
-- undoing of jobs whose messages could not be queued.

-- The job hash a ticket's job gets; `payload` is its JSON document. Returns the instant
-- it was created at: the caller knows the rest of the new document already.
local function new_job(spec, payload)
    local key = job_stem .. '{' .. spec.id .. '}'
    local seq = redis.call('INCR', seq_key)
    local event = redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*',
        'job_id', spec.id, 'type', spec.type, 'state', S.CREATED, 'attempt', 0, 'seq', 1)
    local at_ms = entry_ms(event)
    local at = micros(at_ms)
    local job = {
        id = spec.id, type = spec.type, queue = spec.queue, state = S.CREATED,
        payload = payload, attempts = '0', max_attempts = tostring(spec.max_attempts),
        cancel_requested = '0', created_us = at, updated_us = at, seq = tostring(seq),
        idem = spec.idem or '', created_event = event, transitions = '1',
        history = '[' .. cjson.encode({state = S.CREATED, at = at, attempt = 0}) .. ']',
        sealed = spec.sealed,  -- the payload with its secrets, for the worker only
    }
    -- What flow control reads (flow.lua): left out when unset, as most jobs have none.
    if spec.priority then job.priority = tostring(spec.priority) end
    for _, name in ipairs({'ckey', 'rerun_of', 'schedule'}) do
        if spec[name] and spec[name] ~= '' then job[name] = spec[name] end
    end
    if spec.not_before_us then
        -- It waits for its time: no outbox entry, as no message is sent before then.
        job.not_before_us = string.format('%d', spec.not_before_us)
        job.wait, job.wait_in = 'time', deferred_key
    end
    redis.call('HSET', key, unpack(flatten(job)))
    redis.call('ZADD', type_base .. spec.type .. ':' .. S.CREATED, seq, spec.id)
    if spec.not_before_us then
        flow.defer(spec.id, math.ceil(spec.not_before_us / 1000))
        redis.call('HINCRBY', flow_key, 'w|' .. spec.type .. '|time', 1)
    else
        redis.call('ZADD', outbox_key, at_ms + args.dispatch_ms, spec.id)
    end
    return at
end

-- A new job like a finished one: the same type, payload (and sealed copy), attempts,
-- priority and key, with rerun_of naming it; args.new_id, args.dispatch_ms. The caller
-- publishes its message (or the sweep does, from the outbox). Replies {'ok', document}.
function ops.rerun(job)
    if not TERMINAL[job.state] then
        return {'err', 'illegal', job.state, 'only a finished job can be re-run'}
    end
    local spec = {id = args.new_id, type = job.type, queue = job.queue,
        max_attempts = job.max_attempts, sealed = job.sealed, priority = job.priority,
        ckey = job.ckey, rerun_of = id}
    new_job(spec, job.payload)
    local key = job_stem .. '{' .. args.new_id .. '}'
    return {'ok', document_of(job_at(key, key .. ':history'))[2], job.queue}
end

-- The jobs an idempotency record names (an earlier layout named one, as `job`).
local function recorded_jobs(idem)
    local jobs, job, fingerprint = unpack(redis.call('HMGET', idem, 'jobs', 'job', 'fingerprint'))
    if jobs then return cjson.decode(jobs), fingerprint end
    if job then return {job}, fingerprint end
    return nil, nil
end

-- args.tickets: {idem?, fingerprint?, jobs = {{id, type, queue, max_attempts, check_id?, sealed?}}};
-- the payloads follow ARGV[8], one per job in ticket order. One reply per ticket:
-- {'created', instants} (each new job's creation), {'existing', documents} (a repeat
-- of an idempotent request) or {'err', code, ...}.
JOBLESS.create = true
function ops.create()
    local results, next_payload = {}, 9
    for t, ticket in ipairs(args.tickets) do
        local first_payload = next_payload
        next_payload = next_payload + #ticket.jobs
        local result
        if ticket.idem then
            -- One set of jobs per key: a repeat with the same body gets the first ones.
            local earlier, fingerprint = recorded_jobs(ticket.idem)
            if earlier then
                if fingerprint ~= ticket.fingerprint then
                    result = {'err', 'idempotency_conflict', earlier[1]}
                else
                    local documents = {}
                    for i, job_id in ipairs(earlier) do
                        local key = job_stem .. '{' .. job_id .. '}'
                        local job = job_at(key, key .. ':history')
                        documents[i] = job and document_of(job)[2] or {}
                    end
                    result = {'existing', documents}
                end
            end
        end
        if not result then
            for _, spec in ipairs(ticket.jobs) do
                -- Ids the store makes itself are fresh UUIDs; only a caller's own is checked.
                if spec.check_id and redis.call('EXISTS', job_stem .. '{' .. spec.id .. '}') == 1 then
                    result = {'err', 'exists', spec.id}
                end
            end
        end
        if not result then
            local documents, ids = {}, {}
            for i, spec in ipairs(ticket.jobs) do
                spec.idem = ticket.idem
                documents[i] = new_job(spec, ARGV[first_payload + i - 1])
                ids[i] = spec.id
            end
            if ticket.idem then
                redis.call('HSET', ticket.idem, 'jobs', cjson.encode(ids),
                    'fingerprint', ticket.fingerprint)
                redis.call('PEXPIRE', ticket.idem, args.idem_ttl_ms)
            end
            result = {'created', documents}
        end
        results[t] = result
    end
    return {'ok', results}
end

-- Undo submissions whose messages could not be queued: only jobs nobody has seen
-- start, so to clients they never existed. args.groups: lists of job ids (one request's
-- each), each discarded whole or not at all. Replies {'ok', kept}: the positions of the
-- groups kept because one of their jobs has started (or is gone).
JOBLESS.discard = true
function ops.discard()
    local kept = {}
    local folded = redis.call('HGET', metrics_key, 'cursor')
    for position, ids in ipairs(args.groups) do
        local jobs = {}
        for i, job_id in ipairs(ids) do
            local key = job_stem .. '{' .. job_id .. '}'
            local job = job_at(key, key .. ':history')
            if not job or job.state ~= S.CREATED or tonumber(job.attempts) ~= 0 then
                jobs = nil
                break
            end
            jobs[i] = job
        end
        if not jobs then
            kept[#kept + 1] = position
        else
            for _, job in ipairs(jobs) do
                local key = job_stem .. '{' .. job.id .. '}'
                -- Neither its event nor its count stays: the job never existed.
                if job.created_event then
                    redis.call('XDEL', events_key, job.created_event)
                    if folded and entry_le(job.created_event, folded) then
                        redis.call('HINCRBY', metrics_key, 't|' .. job.type .. '|' .. S.CREATED, -1)
                    end
                end
                redis.call('DEL', key, key .. ':history')
                redis.call('ZREM', type_base .. job.type .. ':' .. S.CREATED, job.id)
                redis.call('ZREM', outbox_key, job.id)
                if job.wait == 'time' then  -- a delayed job of the request
                    redis.call('ZREM', deferred_key, job.id)
                    redis.call('HINCRBY', flow_key, 'w|' .. job.type .. '|time', -1)
                end
                if job.idem and job.idem ~= '' then
                    local names = redis.call('HMGET', job.idem, 'jobs', 'job')
                    local record = names[1] or names[2]
                    if record and string.find(record, job.id, 1, true) then
                        redis.call('DEL', job.idem)
                    end
                end
            end
        end
    end
    return {'ok', kept}
end
