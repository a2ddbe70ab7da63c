-- Workers: register, limits, heartbeats, the reaper, leaving.

-- register: keys = {workers zset, worker hash}; args = {consumer, then
-- field/value pairs, among them streams = space-separated stream keys}.
-- Adds started = now (server ms).
redis.register_function('atask_register', function(keys, args)
  -- One reading of the clock: Redis 7.0 lets time pass inside a function,
  -- and the first heartbeat score must never be older than `started`.
  local now = now_ms()
  redis.call('ZADD', keys[1], now, args[1])
  redis.call('DEL', keys[2])
  -- Its inbox (hand-off; a worker reaped while alive registers again here).
  pcall(redis.call, 'XGROUP', 'CREATE', 'atask:in:' .. args[1], GROUP, '0', 'MKSTREAM')
  local fv = {'started', now}
  for i = 2, #args do table.insert(fv, args[i]) end
  if #fv > 0 then redis.call('HSET', keys[2], unpack(fv)) end
  return 'ok'
end)

-- limits: keys = {limits hash}; args = {scope, "n per k", ...}. A worker
-- publishes the limits it knows (its tasks', its queues'); the last writer
-- wins. "0 0 0" lifts a limit.
redis.register_function('atask_limits', function(keys, args)
  for i = 1, #args, 2 do
    if args[i + 1] == '0 0 0' then
      redis.call('HDEL', keys[1], args[i])
    else
      redis.call('HSET', keys[1], args[i], args[i + 1])
    end
  end
  return 'ok'
end)

-- Liveness is Redis's clock (TIME, the wall clock of its machine), and a
-- step of that clock (an NTP step, a virtual machine paused and set right)
-- makes every heartbeat look old at once. A heartbeat says how long the
-- worker's own monotonic clock ran since its last one; when Redis's clock
-- ran ahead of it by more than half of dead_after, no sweep reaps anyone
-- for dead_after (REAP_HOLD): by then every live worker has sent a
-- heartbeat by the new clock, and only the silent ones look dead.
local REAP_HOLD = 'atask:reap:hold'

-- heartbeat: keys = {workers zset, worker hash, then the hashes of the
-- tasks running here}; args = {consumer, succeeded, failed, retried,
-- reaped, ms since this worker's last heartbeat by its monotonic clock (-1:
-- none), dead after ms}. Records the running task ids and the counters in
-- the worker hash (for Client::workers()). Returns {1 if this worker was
-- missing (presumed dead and reaped, or Redis lost its data), the ids of
-- the running tasks that were asked to cancel, how far Redis's clock ran
-- ahead of the worker's since its last heartbeat (ms; 0 when not more than
-- half of dead after)}. (A step back is not looked for: it delays a dead
-- worker's sweep by as much, and a worker registered again since its last
-- heartbeat looks the same.)
redis.register_function('atask_heartbeat', function(keys, args)
  local missing = 0
  local prev = redis.call('ZSCORE', keys[1], args[1])
  if prev == false or redis.call('EXISTS', keys[2]) == 0 then
    missing = 1
  end
  local now = now_ms()
  local step = 0
  local mono, dead_after = tonumber(args[6] or '') or -1, tonumber(args[7] or '') or 0
  if prev and mono >= 0 and dead_after > 0 then
    local ahead = now - tonumber(prev) - mono
    if ahead > dead_after / 2 then
      step = math.floor(ahead)
      redis.call('SET', REAP_HOLD, step, 'PX', dead_after)
    end
  end
  redis.call('ZADD', keys[1], now, args[1])
  local canceled, running = {}, {}
  for i = 3, #keys do
    local id = string.sub(keys[i], 9)
    table.insert(running, id)
    if redis.call('HGET', keys[i], 'cancel') == '1' then
      table.insert(canceled, id)
    end
  end
  if missing == 0 and args[2] then
    redis.call('HSET', keys[2], 'running', table.concat(running, ' '), 'succeeded', args[2],
               'failed', args[3] or '0', 'retried', args[4] or '0', 'reaped', args[5] or '0')
  end
  return {missing, canceled, step}
end)

-- reap: keys = {workers zset, sweep lock}; args = {dead after ms, lock ms,
-- reaper}. Under the lock (one sweep per period across the cluster), every
-- worker silent for longer than `dead after` has its pending entries moved
-- to the tail of their streams and is forgotten; none while a clock step
-- holds the sweeps (above). Returns {consumer, count, ...}.
redis.register_function('atask_reap', function(keys, args)
  local workers, lock = keys[1], keys[2]
  if redis.call('EXISTS', REAP_HOLD) == 1 then return {} end
  if not redis.call('SET', lock, args[3], 'NX', 'PX', args[2]) then return {} end
  local dead = redis.call('ZRANGEBYSCORE', workers, '-inf', now_ms() - tonumber(args[1]), 'LIMIT', 0, 16)
  local out = {}
  for _, c in ipairs(dead) do
    local info = 'atask:w:' .. c
    local streams = redis.call('HGET', info, 'streams')
    local n = forget_worker_waits(c)
    if streams then
      for s in string.gmatch(streams, '%S+') do n = n + requeue_pending(s, c) end
    end
    redis.call('ZREM', workers, c)
    redis.call('DEL', info)
    table.insert(out, c)
    table.insert(out, n)
  end
  return out
end)

-- unregister: keys = {workers zset, worker hash}; args = {consumer}. A
-- worker that stops: whatever it still holds goes back to its streams.
-- Returns the number of entries requeued.
redis.register_function('atask_unregister', function(keys, args)
  local streams = redis.call('HGET', keys[2], 'streams')
  local n = forget_worker_waits(args[1])
  if streams then
    for s in string.gmatch(streams, '%S+') do n = n + requeue_pending(s, args[1]) end
  end
  redis.call('ZREM', keys[1], args[1])
  redis.call('DEL', keys[2])
  return n
end)

