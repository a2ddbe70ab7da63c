-- Operators: purge a queue, requeue or purge the dead letters.

-- purge: keys = {the queue's four streams, its delayed set}; args = {queue,
-- at most this many}. Cancels tasks that have not started: first the
-- entries no worker has read yet (after the group's last-delivered id),
-- then the delayed ones; each ends canceled ("purged") as a cancel would end
-- it, and its handle hears so. Entries delivered to a worker are left to
-- that worker. Returns how many were purged (call again until 0).
redis.register_function('atask_purge', function(keys, args)
  local queue, budget = args[1], tonumber(args[2]) or 1000
  local now, n = now_ms(), 0
  local why = 'purged from queue ' .. queue
  for i = 1, 4 do
    if budget <= 0 then break end
    local stream = keys[i]
    if redis.call('EXISTS', stream) == 1 then
      local from = '-'
      for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local m = to_map(g)
        if m.name == GROUP then from = '(' .. m['last-delivered-id'] end
      end
      for _, e in ipairs(redis.call('XRANGE', stream, from, '+', 'COUNT', budget)) do
        local f = to_map(e[2])
        redis.call('XDEL', stream, e[1])
        if f.id then
          local hash = 'atask:t:' .. f.id
          if redis.call('HGET', hash, 'state') == 'queued' then
            finish(hash, f.id, 'canceled', now, '', 'atask::TaskCanceled', why)
          end
        end
        n = n + 1
        budget = budget - 1
      end
    end
  end
  if budget > 0 then
    for _, id in ipairs(redis.call('ZRANGE', keys[5], 0, budget - 1)) do
      redis.call('ZREM', keys[5], id)
      redis.call('ZREM', retrying_of_delayed(keys[5]), id)
      local hash = 'atask:t:' .. id
      if redis.call('HGET', hash, 'state') == 'delayed' then
        finish(hash, id, 'canceled', now, '', 'atask::TaskCanceled', why)
      end
      n = n + 1
    end
  end
  return n
end)

-- requeue_dead: keys = {dead stream}; args = {dead entry id}. Puts a dead
-- letter back into its queue as a fresh task with the same id (attempt 0).
-- Returns the task id, or an error for a malformed or missing entry.
redis.register_function('atask_requeue_dead', function(keys, args)
  local dead = keys[1]
  local r = redis.call('XRANGE', dead, args[1], args[1])
  if #r == 0 then return redis.error_reply('ERR atask: no dead letter ' .. args[1]) end
  local f = to_map(r[1][2])
  if not f.id or not f.name or f.name == '' or not f.queue or not f.prio then
    return redis.error_reply('ERR atask: dead letter ' .. args[1] .. ' is a malformed message; it cannot be requeued')
  end
  local hash = 'atask:t:' .. f.id
  redis.call('DEL', hash)
  local entry = redis.call('XADD', stream_of(f.queue, f.prio), '*', 'id', f.id)
  redis.call('HSET', hash, 'name', f.name, 'args', f.args, 'queue', f.queue, 'prio', f.prio,
    'reply', f.reply or '', 'ttl', f.ttl, 'maxd', f.maxd, 'tl', f.tl, 'state', 'queued',
    'attempt', 0, 'lost', 0, 'created', now_ms(), 'entry', entry, 'history', f.history or '[]')
  if f.retry and f.retry ~= '' then redis.call('HSET', hash, 'retry', f.retry) end
  if f.idem and f.idem ~= '' then
    redis.call('HSET', hash, 'idem', f.idem)
    redis.call('SET', f.idem, f.id)
  end
  redis.call('XDEL', dead, args[1])
  hand_off(f.queue, stream_of(f.queue, f.prio), now_ms())
  return f.id
end)

-- purge_dead: keys = {dead stream}. Removes every dead letter; returns how
-- many there were.
redis.register_function('atask_purge_dead', function(keys, args)
  local n = redis.call('XLEN', keys[1])
  redis.call('DEL', keys[1])
  return n
end)

