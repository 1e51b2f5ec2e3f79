-- Dispatch: what the sweep must publish, and the outbox entries confirmed messages clear.

-- The sweep: jobs due for publishing, and running jobs whose lease expired. Each
-- claimed entry is pushed back by the visibility window, so concurrent sweepers do
-- not publish it twice and a sweeper that dies before publishing is covered.
JOBLESS.claim = true
function ops.claim()
    local claimed = {}
    local function scan(index, wanted, next_attempt_offset)
        local due = redis.call('ZRANGEBYSCORE', index, '-inf', now_ms, 'LIMIT', 0, args.limit)
        for _, job_id in ipairs(due) do
            local key = args.job_stem .. '{' .. job_id .. '}'
            local state, queue, attempts = unpack(redis.call('HMGET', key, 'state', 'queue', 'attempts'))
            if state and wanted[state] then
                redis.call('ZADD', index, now_ms + args.visibility_ms, job_id)
                table.insert(claimed, {job_id, queue, tonumber(attempts) + next_attempt_offset})
            else
                redis.call('ZREM', index, job_id)
            end
        end
    end
    scan(dispatch_key, STARTABLE, 1)
    scan(lease_key, {[S.RUNNING] = true}, 0)
    return {'ok', claimed}
end

-- The message for attempt args.attempt is confirmed by the broker: leave the outbox,
-- unless the entry already stands for a later attempt.
function ops.dispatched(current)
    local attempts = tonumber(redis.call('HGET', job_key, 'attempts'))
    if STARTABLE[current] and attempts == args.attempt - 1 then
        redis.call('ZREM', dispatch_key, id)
    end
    return {'ok'}
end
