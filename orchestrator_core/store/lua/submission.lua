-- Submission: a new job, and the undoing of one whose message could not be queued.

JOBLESS.create = true
function ops.create()
    if args.idem then
        -- One job per idempotency key: a repeat with the same body gets the first job.
        local earlier, fingerprint = unpack(redis.call('HMGET', args.idem, 'job', 'fingerprint'))
        if earlier then
            if fingerprint ~= args.fingerprint then
                return {'err', 'idempotency_conflict', earlier}
            end
            local key = job_stem .. '{' .. earlier .. '}'
            return {'ok', 'existing', earlier, document_of(job_at(key, key .. ':history'))}
        end
        redis.call('HSET', args.idem, 'job', id, 'fingerprint', args.fingerprint)
        redis.call('PEXPIRE', args.idem, args.idem_ttl_ms)
    end
    -- Ids the store makes itself are fresh UUIDs; only a caller's own id is checked.
    if args.check_id and redis.call('EXISTS', job_key) == 1 then
        return {'err', 'exists'}
    end
    local seq = redis.call('INCR', seq_key)
    local event = redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*',
        'job_id', id, 'type', args.type, 'state', S.CREATED, 'attempt', 0, 'seq', 1)
    local at_ms = entry_ms(event)
    local at = micros(at_ms)
    local job = {
        id = id, type = args.type, queue = args.queue, state = S.CREATED, payload = blob,
        attempts = '0', max_attempts = tostring(args.max_attempts), cancel_requested = '0',
        created_us = at, updated_us = at, seq = tostring(seq), idem = args.idem or '',
        created_event = event, transitions = '1',
        history = '[' .. cjson.encode({state = S.CREATED, at = at, attempt = 0}) .. ']',
    }
    redis.call('HSET', job_key, unpack(flatten(job)))
    redis.call('ZADD', type_base .. args.type .. ':' .. S.CREATED, seq, id)
    redis.call('ZADD', outbox_key, at_ms + args.dispatch_ms, id)
    return {'ok', 'created', id, document_of(job)}
end

-- Undo a submission whose message could not be queued: only a job nobody has seen
-- start, so to clients it never existed.
function ops.discard(job)
    if job.state ~= S.CREATED or tonumber(job.attempts) ~= 0 then
        return {'err', 'illegal', job.state, 'only a job that never started can be discarded'}
    end
    -- Neither its event nor its count stays: the job never existed.
    if job.created_event then
        redis.call('XDEL', events_key, job.created_event)
        local folded = redis.call('HGET', metrics_key, 'cursor')
        if folded and entry_le(job.created_event, folded) then
            redis.call('HINCRBY', metrics_key, 't|' .. job.type .. '|' .. S.CREATED, -1)
        end
    end
    redis.call('DEL', job_key, legacy_history_key)
    redis.call('ZREM', type_base .. job.type .. ':' .. S.CREATED, id)
    redis.call('ZREM', outbox_key, id)
    if job.idem and job.idem ~= '' and redis.call('HGET', job.idem, 'job') == id then
        redis.call('DEL', job.idem)
    end
    return {'ok'}
end
