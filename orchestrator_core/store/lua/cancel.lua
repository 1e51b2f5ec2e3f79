-- Cancel: at once while the job waits; a request its worker hears while it runs.

function ops.cancel(job)
    if STARTABLE[job.state] then
        move(job, S.CANCELLED, 'cancel requested', {cancel_requested = '1'})
        return {'ok', 'cancelled', document_of(job)[2], 1}
    end
    if job.state == S.RUNNING then
        if job.cancel_requested ~= '1' then
            local at = micros(now_ms())
            redis.call('HSET', job_key, 'cancel_requested', '1', 'cancel_requested_us', at)
            job.cancel_requested, job.cancel_requested_us = '1', at
        end
        redis.call('PUBLISH', cancel_channel, id)
        return {'ok', 'requested', document_of(job)[2], 0}
    end
    if job.state == S.CANCELLED then
        return {'ok', 'already_cancelled', document_of(job)[2], 0}
    end
    return {'ok', 'finished', document_of(job)[2], 0}
end
