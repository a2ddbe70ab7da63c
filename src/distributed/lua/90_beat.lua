-- The beat's lease and its ticks.

-- beat_lease: keys = {leader key}; args = {beat, lease ms}. Takes or renews
-- the beat leader's lease; returns 1 for the leader, 0 for the others. A
-- lease of 0 ms gives it up (if it is ours).
redis.register_function('atask_beat_lease', function(keys, args)
  local cur = redis.call('GET', keys[1])
  if args[2] == '0' then
    if cur == args[1] then redis.call('DEL', keys[1]) end
    return 0
  end
  if not cur or cur == args[1] then
    redis.call('SET', keys[1], args[1], 'PX', args[2])
    return 1
  end
  return 0
end)

-- beat_fire: keys = {beat hash, task hash, stream, delayed set}; args =
-- {schedule, tick (Unix ms), 'fire' or 'mark', then enqueue's args}. A tick
-- fires once, whatever the number of beats: only a tick later than the
-- schedule's last one (atask:beat) moves it on and enqueues the task (whose
-- id is made of the schedule and the tick). 'mark' moves it on without a
-- task (missed ticks skipped). Returns 'skip', 'marked' or enqueue's reply.
redis.register_function('atask_beat_fire', function(keys, args)
  local last = tonumber(redis.call('HGET', keys[1], args[1]) or '')
  if last and last >= tonumber(args[2]) then return 'skip' end
  redis.call('HSET', keys[1], args[1], args[2])
  if args[3] == 'mark' then return 'marked' end
  local ea = {}
  for i = 4, #args do table.insert(ea, args[i]) end
  return enqueue_task({keys[2], keys[3], keys[4]}, ea)
end)
