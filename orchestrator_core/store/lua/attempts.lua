-- Attempts: starting one under a lease, moving a job, and what a running attempt writes.

-- How many moves a reply reports, so the Python side tells observers of each.
local function moved(job, moves)
    return {'ok', document_of(job)[2], moves}
end

-- A worker received the message for attempt args.attempt.
function ops.start(job)
    local function drop(why) return {'ok', 'drop', why, document_of(job)[2], 0} end
    local attempts = tonumber(job.attempts)
    local lease = {owner = args.owner, ms = args.lease_ms}
    local moves = 0
    if TERMINAL[job.state] then
        return drop('finished')
    end
    if job.state == S.RUNNING then
        if attempts ~= args.attempt then return drop('stale message') end
        if (tonumber(job.lease_expires_ms) or 0) > now_ms() then return drop('duplicate') end
        -- Redelivered after its worker died: that attempt failed, take the job over.
        move(job, S.RETRYING, 'worker lost', {error = args.lost_error})
        moves = 1
    elseif attempts ~= args.attempt - 1 then
        return drop('stale message')
    end
    if attempts >= tonumber(job.max_attempts) then
        move(job, S.FAILED, 'attempts exhausted', {})
        return {'ok', 'drop', 'attempts exhausted', document_of(job)[2], moves + 1}
    end
    local writes, waits = flow.admit(job)
    if not writes then
        return {'ok', 'drop', 'waiting: ' .. waits, document_of(job)[2], moves}
    end
    move(job, S.RUNNING, nil, writes, lease)
    return {'ok', 'started', '', document_of(job)[2], moves + 1, job.sealed or ''}
end

function ops.transition(job)
    local current, target = job.state, args.to
    if args.fence then
        local refused = check_fence(job, args.fence)
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
    if current == S.RUNNING and not args.fence then
        -- Only the lease holder moves a running job, or a taker once the lease has expired.
        local holder = job.lease_owner
        if holder == '' then holder = false end
        if not args.takeover then
            return {'err', 'stale', holder or false, current}
        end
        local remaining = (tonumber(job.lease_expires_ms) or 0) - now_ms()
        if remaining > 0 then
            return {'err', 'lease_active', holder or false, remaining}
        end
    end
    if target == S.RUNNING and tonumber(job.attempts) >= tonumber(job.max_attempts) then
        return {'err', 'exhausted', tonumber(job.attempts), tonumber(job.max_attempts)}
    end
    local writes = {}
    if args.error then writes.error = args.error end
    if blob and blob ~= '' then writes.result = blob end
    local lease = target == S.RUNNING and {owner = args.owner, ms = args.lease_ms} or nil
    move(job, target, args.reason, writes, lease)
    if args.quiet then
        return {'ok'}  -- the caller needs no document (no observer is told of the move)
    end
    return moved(job, 1)
end

-- The running attempt keeps its lease, and learns on the same trip of a cancel request.
function ops.renew(job)
    local refused = check_fence(job, args.owner)
    if refused then return refused end
    local expires = now_ms() + args.lease_ms
    redis.call('HSET', job_key, 'lease_expires_ms', string.format('%d', expires))
    redis.call('ZADD', lease_key, expires, id)
    return {'ok', string.format('%d', expires), job.cancel_requested}
end

function ops.progress(job)
    local refused = check_fence(job, args.owner)
    if refused then return refused end
    redis.call('HSET', job_key, 'progress', blob)
    return {'ok'}
end
