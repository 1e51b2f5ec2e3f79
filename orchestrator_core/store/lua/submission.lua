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
            return {'ok', 'existing', earlier, document_of(args.job_stem .. '{' .. earlier .. '}'), 0}
        end
        redis.call('HSET', args.idem, 'job', id, 'fingerprint', args.fingerprint)
        redis.call('PEXPIRE', args.idem, args.idem_ttl_ms)
    end
    if redis.call('EXISTS', job_key) == 1 then
        return {'err', 'exists'}
    end
    local seq = redis.call('INCR', seq_key)
    redis.call('HSET', job_key,
        'id', id, 'type', args.type, 'queue', args.queue, 'state', S.CREATED, 'payload', blob,
        'attempts', 0, 'max_attempts', args.max_attempts, 'cancel_requested', 0,
        'created_us', now_us, 'updated_us', now_us, 'seq', seq, 'idem', args.idem or '')
    redis.call('RPUSH', history_key, cjson.encode({state = S.CREATED, at = now_us, attempt = 0}))
    redis.call('HSET', job_key, 'created_event', emit(args.type, nil, S.CREATED, now_us, 0, 1, nil))
    redis.call('ZADD', all_key, seq, id)
    redis.call('ZADD', state_base .. S.CREATED, seq, id)
    redis.call('ZADD', type_base .. args.type, seq, id)
    redis.call('ZADD', type_base .. args.type .. ':' .. S.CREATED, seq, id)
    redis.call('ZADD', dispatch_key, now_ms + args.dispatch_ms, id)
    return {'ok', 'created', id, document(), 0}
end

-- Undo a submission whose message could not be queued: only a job nobody has seen
-- start, so to clients it never existed.
function ops.discard(current)
    local attempts, job_type, idem, created_event = unpack(
        redis.call('HMGET', job_key, 'attempts', 'type', 'idem', 'created_event'))
    if current ~= S.CREATED or tonumber(attempts) ~= 0 then
        return {'err', 'illegal', current, 'only a job that never started can be discarded'}
    end
    -- Neither its event nor its count stays: the job never existed.
    if created_event then redis.call('XDEL', events_key, created_event) end
    redis.call('HINCRBY', metrics_key, 't|' .. job_type .. '|' .. S.CREATED, -1)
    redis.call('DEL', job_key, history_key)
    redis.call('ZREM', all_key, id)
    redis.call('ZREM', state_base .. S.CREATED, id)
    redis.call('ZREM', type_base .. job_type, id)
    redis.call('ZREM', type_base .. job_type .. ':' .. S.CREATED, id)
    redis.call('ZREM', dispatch_key, id)
    if idem and idem ~= '' and redis.call('HGET', idem, 'job') == id then
        redis.call('DEL', idem)
    end
    return {'ok'}
end
