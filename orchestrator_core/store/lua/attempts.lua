-- Attempts: starting one under a lease, moving a job, and what a running attempt writes.

-- A worker received the message for attempt args.attempt.
function ops.start(current)
    local function drop(why) return {'ok', 'drop', why, document(), 0} end
    local attempts, max_attempts, expires = unpack(
        redis.call('HMGET', job_key, 'attempts', 'max_attempts', 'lease_expires_ms'))
    attempts = tonumber(attempts)
    local moves = 0
    if TERMINAL[current] then
        return drop('finished')
    end
    if current == S.RUNNING then
        if attempts ~= args.attempt then return drop('stale message') end
        if (tonumber(expires) or 0) > now_ms then return drop('duplicate') end
        -- Redelivered after its worker died: that attempt failed, take the job over.
        move(current, S.RETRYING, 'worker lost', {error = args.lost_error})
        current, moves = S.RETRYING, 1
    elseif attempts ~= args.attempt - 1 then
        return drop('stale message')
    end
    if attempts >= tonumber(max_attempts) then
        move(current, S.FAILED, 'attempts exhausted', {})
        return {'ok', 'drop', 'attempts exhausted', document(), moves + 1}
    end
    move(current, S.RUNNING, nil, {})
    grant_lease(args.owner, args.lease_ms)
    return {'ok', 'started', '', document(), moves + 1}
end

function ops.transition(current)
    local target = args.to
    if args.fence then
        local refused = check_fence(current, args.fence)
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
    if target == S.RUNNING then
        local attempts, max_attempts = unpack(redis.call('HMGET', job_key, 'attempts', 'max_attempts'))
        if tonumber(attempts) >= tonumber(max_attempts) then
            return {'err', 'exhausted', tonumber(attempts), tonumber(max_attempts)}
        end
    end
    if args.error then fields.error = args.error end
    if blob and blob ~= '' then fields.result = blob end
    move(current, target, args.reason, fields)
    if target == S.RUNNING then
        grant_lease(args.owner, args.lease_ms)
    end
    return {'ok', '', '', document(), 1}
end

-- The running attempt keeps its lease, and learns on the same trip of a cancel request.
function ops.renew(current)
    local refused = check_fence(current, args.owner)
    if refused then return refused end
    local expires = grant_lease(args.owner, args.lease_ms)
    return {'ok', string.format('%d', expires), redis.call('HGET', job_key, 'cancel_requested')}
end

function ops.progress(current)
    local refused = check_fence(current, args.owner)
    if refused then return refused end
    redis.call('HSET', job_key, 'progress', blob)
    return {'ok'}
end
