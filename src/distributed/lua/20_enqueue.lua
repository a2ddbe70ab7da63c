-- Queuing: atask_enqueue and atask_promote (the delayed set's due tasks).

-- enqueue: keys = {task hash, stream, delayed set[, idempotency key]};
-- args = {id, name, args json, queue, priority, reply channel, ttl s, max
-- deliveries, time limit ms, countdown ms, eta (Unix ms, 0: none), retry
-- policy json ('' : the worker's default)}. Returns the entry id, '' for a
-- task that waits in the delayed set, or 'dup:<id>' when the idempotency key
-- names a task that Redis still has (its outcome will be published to this
-- sender's channel too).
local function enqueue_task(keys, args)
  local hash, stream, delayed = keys[1], keys[2], keys[3]
  if redis.call('EXISTS', hash) == 1 then
    return redis.error_reply('ERR atask: a task with id ' .. args[1] .. ' exists already')
  end
  local idem = keys[4]
  if idem then
    local prev = redis.call('GET', idem)
    if prev and redis.call('EXISTS', 'atask:t:' .. prev) == 1 then
      local ph = 'atask:t:' .. prev
      local reply = redis.call('HGET', ph, 'reply') or ''
      if args[6] ~= '' and not string.find(' ' .. reply .. ' ', ' ' .. args[6] .. ' ', 1, true) then
        redis.call('HSET', ph, 'reply', (reply == '' and '' or reply .. ' ') .. args[6])
      end
      return 'dup:' .. prev
    end
    redis.call('SET', idem, args[1])
  end
  local now = now_ms()
  local due = tonumber(args[11]) or 0
  if due <= 0 then due = now + (tonumber(args[10]) or 0) end
  redis.call('SADD', QUEUES, args[4])
  local fields = {'name', args[2], 'args', args[3], 'queue', args[4], 'prio', args[5],
    'reply', args[6], 'ttl', args[7], 'maxd', args[8], 'tl', args[9], 'attempt', 0, 'lost', 0,
    'created', now}
  if args[12] and args[12] ~= '' then table.insert(fields, 'retry'); table.insert(fields, args[12]) end
  if idem then table.insert(fields, 'idem'); table.insert(fields, idem) end
  if due > now then
    redis.call('HSET', hash, unpack(fields))
    redis.call('HSET', hash, 'state', 'delayed', 'due', due)
    redis.call('ZADD', delayed, due, args[1])
    redis.call('PUBLISH', 'atask:{' .. args[4] .. '}:due', due)
    return ''
  end
  local entry = redis.call('XADD', stream, '*', 'id', args[1])
  table.insert(fields, 'state'); table.insert(fields, 'queued')
  table.insert(fields, 'entry'); table.insert(fields, entry)
  redis.call('HSET', hash, unpack(fields))
  hand_off(args[4], stream, now)
  return entry
end
redis.register_function('atask_enqueue', enqueue_task)

-- promote: keys = the delayed sets of some queues; args = {limit}. Moves
-- the tasks that are due (at most `limit`) to the tail of their streams.
-- Returns {moved, the earliest due time left (-1: none), now}.
redis.register_function('atask_promote', function(keys, args)
  local now = now_ms()
  local limit = tonumber(args[1]) or 100
  local moved, next_due = 0, -1
  for _, z in ipairs(keys) do
    if moved < limit then
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, limit - moved)) do
        local hash = 'atask:t:' .. id
        local h = redis.call('HMGET', hash, 'state', 'queue', 'prio')
        redis.call('ZREM', z, id)
        redis.call('ZREM', retrying_of_delayed(z), id)
        if h[1] == 'delayed' then  -- (a canceled or expired task is dropped)
          local entry = redis.call('XADD', stream_of(h[2], h[3]), '*', 'id', id)
          redis.call('HSET', hash, 'state', 'queued', 'entry', entry)
          hand_off(h[2], stream_of(h[2], h[3]), now)
          moved = moved + 1
        end
      end
    end
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    if #first == 2 then
      local d = tonumber(first[2])
      if next_due < 0 or d < next_due then next_due = d end
    end
  end
  return {moved, next_due, now}
end)

