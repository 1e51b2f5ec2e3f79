-- Dispatch: what the sweep must publish, and the retry entries confirmed messages clear.

-- The sweep: new jobs whose first message was never confirmed, retries whose backoff is
-- over, and running jobs whose lease expired. Each claimed entry is pushed back by the
-- visibility window, so concurrent sweepers do not publish it twice and a sweeper that
-- dies before publishing is covered. An entry whose job moved on is dropped.
JOBLESS.claim = true
function ops.claim()
    local now = now_ms()
    local claimed = {}
    local function scan(index, wanted, next_attempt_offset)
        local due = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, args.limit)
        for _, job_id in ipairs(due) do
            local key = job_stem .. '{' .. job_id .. '}'
            local state, queue, attempts, priority = unpack(redis.call('HMGET', key, 'state',
                'queue', 'attempts', 'priority'))
            if state and wanted[state] then
                redis.call('ZADD', index, now + args.visibility_ms, job_id)
                table.insert(claimed, {job_id, queue, tonumber(attempts) + next_attempt_offset,
                    tonumber(priority) or 0})
            else
                redis.call('ZREM', index, job_id)
            end
        end
    end
    scan(outbox_key, {[S.CREATED] = true}, 1)
    scan(retry_key, {[S.RETRYING] = true}, 1)
    scan(lease_key, {[S.RUNNING] = true}, 0)
    -- An earlier layout kept the outbox and the retries in one schedule: what is left in
    -- it is published as it falls due, and the schedule empties itself.
    scan(legacy_dispatch_key, STARTABLE, 1)
    -- Jobs whose time came: delayed ones, ones their rate limit spaced out, woken waiters.
    scan(deferred_key, STARTABLE, 1)
    -- How long (ms) until the next retry or deferred job falls due (-1: none is waiting),
    -- so that the sweep sleeps until then rather than a whole interval.
    local due_in = -1
    for _, schedule in ipairs({retry_key, deferred_key}) do
        local head = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')[2]
        if head then
            local wait = math.max(0, tonumber(head) - now)
            if due_in < 0 or wait < due_in then due_in = wait end
        end
    end
    return {'ok', claimed, due_in}
end

-- The message for retry attempt args.attempt is confirmed by the broker: leave the
-- schedule, unless the entry already stands for a later attempt. (A first message's
-- outbox entry is cleared with a plain ZREM: nothing else ever puts the job there.)
function ops.dispatched(job)
    if job.state == S.RETRYING and tonumber(job.attempts) == args.attempt - 1 then
        redis.call('ZREM', retry_key, id)
    end
    return {'ok'}
end
