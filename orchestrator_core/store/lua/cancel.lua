-- Cancel: at once while the job waits; a request its worker hears while it runs.

function ops.cancel(current)
    if STARTABLE[current] then
        move(current, S.CANCELLED, 'cancel requested', {cancel_requested = 1})
        return {'ok', 'cancelled', '', document(), 1}
    end
    if current == S.RUNNING then
        if redis.call('HGET', job_key, 'cancel_requested') ~= '1' then
            redis.call('HSET', job_key, 'cancel_requested', 1, 'cancel_requested_us', now_us)
        end
        redis.call('PUBLISH', cancel_channel, id)
        return {'ok', 'requested', '', document(), 0}
    end
    if current == S.CANCELLED then
        return {'ok', 'already_cancelled', '', document(), 0}
    end
    return {'ok', 'finished', '', document(), 0}
end
