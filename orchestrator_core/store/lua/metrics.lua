-- Metrics: the counters and histograms, folded from the event stream.
--
-- A transition costs the hot path one XADD and no metric write; this operation reads the
-- entries after the fold's cursor, adds them up and moves the cursor, in one atomic
-- step, so each entry counts exactly once whichever process folds it. Counters:
-- 't|<type>|<state>'. Histograms: 'h|<name>|<type>|<label>|<bucket>' (bucket 1..n, n + 1
-- for +Inf; not cumulative) and 'h|<name>|<type>|<label>|sum'; BUCKETS[name] holds
-- each one's bounds.

-- Folds up to `limit` entries; returns how many it folded.
local function fold(limit)
    local cursor = redis.call('HGET', metrics_key, 'cursor')
    if not cursor then
        cursor = '0-0'
        -- Counters written by an earlier layout, with each transition: they hold every
        -- entry kept so far, so folding starts after the newest, with their types known.
        local fields = redis.call('HKEYS', metrics_key)
        if #fields > 0 then
            local newest = redis.call('XREVRANGE', events_key, '+', '-', 'COUNT', 1)
            if #newest > 0 then cursor = newest[1][1] end
            for _, field in ipairs(fields) do
                local job_type = string.match(field, '^t|(.+)|[^|]+$')
                if job_type then redis.call('SADD', types_key, job_type) end
            end
            redis.call('HSET', metrics_key, 'cursor', cursor)
        end
    end
    local entries = redis.call('XRANGE', events_key, '(' .. cursor, '+', 'COUNT', limit)
    if #entries == 0 then return 0 end
    local counts, sums, types = {}, {}, {}
    local function count(field, n) counts[field] = (counts[field] or 0) + n end
    local function observe(name, job_type, label, value)
        local bounds = BUCKETS[name]
        local stem = 'h|' .. name .. '|' .. job_type .. '|' .. label .. '|'
        local slot = #bounds + 1
        for i, bound in ipairs(bounds) do
            if value <= bound then slot = i; break end
        end
        count(stem .. slot, 1)
        sums[stem .. 'sum'] = (sums[stem .. 'sum'] or 0) + value
    end
    for _, entry in ipairs(entries) do
        local event = fields_of(entry[2])
        local at_us = entry_ms(entry[1]) * 1000
        local function since(from) return math.max(0, at_us - tonumber(from)) / 1000000 end
        local job_type, state = event.type, event.state
        types[job_type] = true
        count('t|' .. job_type .. '|' .. state, 1)
        if event.wait_from then observe('queue_wait', job_type, '', since(event.wait_from)) end
        if TERMINAL[state] then
            if event.ran_from then observe('duration', job_type, state, since(event.ran_from)) end
            observe('attempts', job_type, state, tonumber(event.attempt))
        end
        if state == S.CANCELLED then
            observe('cancel_latency', job_type, event['from'],
                event.cancel_from and since(event.cancel_from) or 0)
        end
    end
    for field, n in pairs(counts) do redis.call('HINCRBY', metrics_key, field, n) end
    for field, value in pairs(sums) do redis.call('HINCRBYFLOAT', metrics_key, field, value) end
    local names = {}
    for job_type in pairs(types) do names[#names + 1] = job_type end
    redis.call('SADD', types_key, unpack(names))
    redis.call('HSET', metrics_key, 'cursor', entries[#entries][1])
    return #entries
end

JOBLESS.fold = true
function ops.fold()
    return {'ok', fold(args.limit)}
end
