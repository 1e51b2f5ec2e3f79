-- The dispatch of one call to its operation.

local handler = ops[op]
if not handler then
    return redis.error_reply('unknown operation ' .. tostring(op))
end
if JOBLESS[op] then
    return handler()
end
local current = redis.call('HGET', job_key, 'state')
if not current then
    return {'err', 'not_found'}
end
if not ALLOWED[current] then
    return {'err', 'corrupt', 'unknown state ' .. current}
end
return handler(current)
