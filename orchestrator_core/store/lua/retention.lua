-- Retention: a finished job is deleted, with every key and index entry it owns, once its
-- expiry entry falls due (move scores it by finished_at plus the retention in effect).
-- The metrics counters are left as they are: they count what happened, not what is
-- kept; so are the job's entries of the event stream, which its cap trims.

-- Deletes the job `job_id` if it is finished; returns whether it did.
local function delete_finished(job_id)
    local key = job_stem .. '{' .. job_id .. '}'
    local state, job_type, idem = unpack(redis.call('HMGET', key, 'state', 'type', 'idem'))
    if not (state and TERMINAL[state]) then return false end
    redis.call('DEL', key, key .. ':history')
    redis.call('ZREM', type_base .. job_type .. ':' .. state, job_id)
    -- A started job stays in the outbox until its confirm or the sweep clears it, and the
    -- schedule of an earlier layout may still name it. (move took it off the lease index
    -- and the retry schedule when it finished.)
    redis.call('ZREM', outbox_key, job_id)
    redis.call('ZREM', legacy_dispatch_key, job_id)
    if idem and idem ~= '' then
        -- Unless the record expired and the key now names another request's jobs.
        local names = redis.call('HMGET', idem, 'jobs', 'job')
        local record = names[1] or names[2]
        if record and string.find(record, job_id, 1, true) then
            redis.call('DEL', idem)
        end
    end
    return true
end

-- The due expiry entries, oldest first, at most args.limit: each finished job is deleted,
-- and each entry taken off (one whose job is gone, or not finished, deletes nothing: a
-- job gets a new entry when it finishes). One call deletes its jobs all at once, so no
-- reader ever sees part of a job; concurrent sweepers each take entries the other has
-- not. Replies {'ok', deleted, entries taken}.
JOBLESS.expire = true
function ops.expire()
    local due = redis.call('ZRANGEBYSCORE', expiry_key, '-inf', now_ms(), 'LIMIT', 0, args.limit)
    local deleted = 0
    for _, job_id in ipairs(due) do
        if delete_finished(job_id) then deleted = deleted + 1 end
    end
    if #due > 0 then redis.call('ZREM', expiry_key, unpack(due)) end
    return {'ok', deleted, #due}
end

-- Jobs that finished without an expiry entry (under an earlier layout, or while
-- retention was off) get one from the retention in effect now, scored from their
-- finished_at. The job hashes are walked once, args.limit SCAN slots a call, from a
-- cursor in the walk's hash that every sweeper shares; a job that finishes meanwhile
-- gets its entry from move. Replies {'ok', entries added, 1 when the walk is over}.
JOBLESS.adopt = true
function ops.adopt()
    local cursor, done = unpack(redis.call('HMGET', expiry_walk_key, 'cursor', 'done'))
    if done then return {'ok', 0, 1} end
    local step = redis.call('SCAN', cursor or '0', 'MATCH', job_stem .. '{*}', 'COUNT', args.limit)
    local added = 0
    for _, key in ipairs(step[2]) do
        local job_id = string.match(key, '{([^{}]+)}$')  -- a job hash, not its history list
        if job_id then
            local state, job_type, finished_us = unpack(redis.call('HMGET', key, 'state', 'type',
                'finished_us'))
            local keep = state and TERMINAL[state] and finished_us and retention_of(job_type) or 0
            if keep > 0 and not redis.call('ZSCORE', expiry_key, job_id) then
                local finished_ms = math.floor(tonumber(finished_us) / 1000)
                redis.call('ZADD', expiry_key, finished_ms + keep, job_id)
                added = added + 1
            end
        end
    end
    if step[1] == '0' then
        redis.call('HSET', expiry_walk_key, 'cursor', '0', 'done', '1')
        return {'ok', added, 1}
    end
    redis.call('HSET', expiry_walk_key, 'cursor', step[1])
    return {'ok', added, 0}
end
