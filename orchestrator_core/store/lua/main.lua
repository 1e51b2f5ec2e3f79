-- The dispatch of one call to its operation.

local handler = ops[op]
if not handler then
    return redis.error_reply('unknown operation ' .. tostring(op))
end
if JOBLESS[op] then
    return handler()
end
local job = job_at(job_key, legacy_history_key)
if not job then
    return {'err', 'not_found'}
end
if not job.state or not ALLOWED[job.state] then
    return {'err', 'corrupt', 'unknown state ' .. tostring(job.state)}
end
return handler(job)
