-- Reading: one job's document, pages of the listing indexes, and how many jobs each
-- type has in each state.

function ops.get(job)
    return document_of(job)
end

-- The types given, and every type with a job: the fold first counts what it has not
-- yet, so a type whose first job is a moment old is known too.
local function known_types()
    fold(FOLD_FIRST)
    local seen, types = {}, {}
    for _, name in ipairs(args.types or {}) do
        if not seen[name] then seen[name] = true; types[#types + 1] = name end
    end
    for _, name in ipairs(redis.call('SMEMBERS', types_key)) do
        if not seen[name] then seen[name] = true; types[#types + 1] = name end
    end
    table.sort(types)
    return types
end

-- Running jobs, from the lease index, as {id, seq, type} of those of `job_type` (any if nil)
-- listed before `below` (a sequence number, or nil for no bound).
local function running(job_type, below)
    local found = {}
    for _, job_id in ipairs(redis.call('ZRANGE', lease_key, 0, -1)) do
        local seq, kind = unpack(redis.call('HMGET', job_stem .. '{' .. job_id .. '}', 'seq', 'type'))
        seq = tonumber(seq)
        if seq and (not job_type or kind == job_type) and (not below or seq < below) then
            found[#found + 1] = {job_id, seq, kind}
        end
    end
    return found
end

-- Up to `limit` {id, seq} of the index `key` listed before `below`, newest first.
local function indexed(key, below, limit)
    local bound = below and ('(' .. below) or '+inf'
    local flat = redis.call('ZREVRANGEBYSCORE', key, bound, '-inf', 'WITHSCORES', 'LIMIT', 0, limit)
    local found = {}
    for i = 1, #flat, 2 do found[#found + 1] = {flat[i], tonumber(flat[i + 1])} end
    return found
end

JOBLESS.list = true
function ops.list()
    local below = args.cursor and tonumber(args.cursor) or nil
    local want = args.limit + 1
    local candidates = {}
    local function add(found)
        for _, item in ipairs(found) do candidates[#candidates + 1] = item end
    end
    local function of_type(job_type, state)
        if state == S.RUNNING then
            add(running(job_type, below))
        else
            add(indexed(type_base .. job_type .. ':' .. state, below, want))
        end
    end
    if not args.type and not args.state then
        -- Every job is in the index of its type and state, or running: merged, newest first.
        for _, job_type in ipairs(known_types()) do
            for state in pairs(ALLOWED) do
                if state ~= S.RUNNING then of_type(job_type, state) end
            end
        end
        add(running(nil, below))
    elseif args.type and args.state then
        of_type(args.type, args.state)
    elseif args.type then
        for state in pairs(ALLOWED) do of_type(args.type, state) end
    elseif args.state == S.RUNNING then
        add(running(nil, below))
    else
        for _, job_type in ipairs(known_types()) do of_type(job_type, args.state) end
    end
    table.sort(candidates, function(a, b) return a[2] > b[2] end)
    local items, next_cursor = {}, false
    for i = 1, math.min(#candidates, args.limit) do
        local key = job_stem .. '{' .. candidates[i][1] .. '}'
        local job = job_at(key, key .. ':history')
        items[i] = {candidates[i][1], job and document_of(job)[2] or {}}
    end
    if #candidates > args.limit then
        next_cursor = string.format('%d', candidates[args.limit][2])
    end
    return {'ok', next_cursor, items}
end

-- For each known type (those given, and every type the metrics fold has seen), how
-- many jobs are in each state: {types, {type, state, count, ...}}.
JOBLESS.counts = true
function ops.counts()
    local types = known_types()
    local counts = {}
    for _, job_type in ipairs(types) do
        for state in pairs(ALLOWED) do
            if state ~= S.RUNNING then
                counts[#counts + 1] = job_type
                counts[#counts + 1] = state
                counts[#counts + 1] = redis.call('ZCARD', type_base .. job_type .. ':' .. state)
            end
        end
    end
    local running_by_type = {}
    for _, item in ipairs(running(nil, nil)) do
        running_by_type[item[3]] = (running_by_type[item[3]] or 0) + 1
    end
    for _, job_type in ipairs(types) do
        counts[#counts + 1] = job_type
        counts[#counts + 1] = S.RUNNING
        counts[#counts + 1] = running_by_type[job_type] or 0
        running_by_type[job_type] = nil
    end
    for job_type, count in pairs(running_by_type) do
        counts[#counts + 1] = job_type
        counts[#counts + 1] = S.RUNNING
        counts[#counts + 1] = count
    end
    return {'ok', types, counts}
end
