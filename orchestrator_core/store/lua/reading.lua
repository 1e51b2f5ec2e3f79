-- Reading: one job's document, and a page of a listing index, newest first.

function ops.get()
    return document()
end

JOBLESS.list = true
function ops.list()
    local cursor = args.cursor and ('(' .. args.cursor) or '+inf'
    local ids = redis.call('ZREVRANGEBYSCORE', args.index, cursor, '-inf',
        'WITHSCORES', 'LIMIT', 0, args.limit + 1)
    local items, next_cursor = {}, false
    local count = #ids / 2
    for i = 1, math.min(count, args.limit) do
        local item_id = ids[2 * i - 1]
        local key = args.job_stem .. '{' .. item_id .. '}'
        items[i] = {item_id, redis.call('HGETALL', key), redis.call('LRANGE', key .. ':history', 0, -1)}
    end
    if count > args.limit then
        next_cursor = ids[2 * args.limit]
    end
    return {'ok', next_cursor, items}
end
