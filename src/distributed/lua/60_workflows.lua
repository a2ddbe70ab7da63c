-- Chains and groups, written at once.

-- chain: keys = {}; args = {chain id, reply channel, steps, then per step:
-- name, args json, queue, priority, ttl s, max deliveries, time limit ms,
-- retry json}. Step k is the task <chain id>:<k>; all are written now, the
-- first one queued and the others waiting (state delayed, due 'chain')
-- for the step before (continue_chain()). The last step's outcome goes to
-- the reply channel. Returns the first step's entry id.
redis.register_function('atask_chain', function(keys, args)
  local chain, reply, n = args[1], args[2], tonumber(args[3])
  local now = now_ms()
  local entry = ''
  for k = 0, n - 1 do
    local b = 3 + k * 8
    local id = chain .. ':' .. k
    local hash = 'atask:t:' .. id
    if redis.call('EXISTS', hash) == 1 then
      return redis.error_reply('ERR atask: a task with id ' .. id .. ' exists already')
    end
    local fields = {'name', args[b + 1], 'args', args[b + 2], 'queue', args[b + 3], 'prio', args[b + 4],
      'reply', (k == n - 1) and reply or '', 'ttl', args[b + 5], 'maxd', args[b + 6], 'tl', args[b + 7],
      'attempt', 0, 'lost', 0, 'created', now, 'chain', chain, 'step', k, 'steps', n}
    if args[b + 8] ~= '' then table.insert(fields, 'retry'); table.insert(fields, args[b + 8]) end
    if k == 0 then
      entry = redis.call('XADD', stream_of(args[b + 3], args[b + 4]), '*', 'id', id)
      table.insert(fields, 'state'); table.insert(fields, 'queued')
      table.insert(fields, 'entry'); table.insert(fields, entry)
    else
      table.insert(fields, 'state'); table.insert(fields, 'delayed')
      table.insert(fields, 'due'); table.insert(fields, 'chain')
    end
    redis.call('HSET', hash, unpack(fields))
  end
  hand_off(args[6], stream_of(args[6], args[7]), now)
  return entry
end)

-- group: keys = {}; args = {group id, reply channel, members, callback
-- ('1' or '0'), then per task (the members, then the callback if any):
-- name, args json, queue, priority, ttl s, max deliveries, time limit ms,
-- retry json}. Member k is the task <group>:<k>, queued now; the callback
-- is <group>:cb, waiting (state delayed, due 'chord') until every member
-- has ended. atask:g:<group> counts the members still pending. Members'
-- outcomes go to the reply channel, and the callback's.
redis.register_function('atask_group', function(keys, args)
  local group, reply, n, with_cb = args[1], args[2], tonumber(args[3]), args[4] == '1'
  local gkey = 'atask:g:' .. group
  if redis.call('EXISTS', gkey) == 1 then
    return redis.error_reply('ERR atask: a task with id ' .. group .. ' exists already')
  end
  local now = now_ms()
  local total = n + (with_cb and 1 or 0)
  local ttl = 86400
  for k = 0, total - 1 do
    local b = 4 + k * 8
    local is_cb = k == n
    local id = is_cb and (group .. ':cb') or (group .. ':' .. k)
    local fields = {'name', args[b + 1], 'args', args[b + 2], 'queue', args[b + 3], 'prio', args[b + 4],
      'reply', reply, 'ttl', args[b + 5], 'maxd', args[b + 6], 'tl', args[b + 7], 'attempt', 0, 'lost', 0,
      'created', now}
    if args[b + 8] ~= '' then table.insert(fields, 'retry'); table.insert(fields, args[b + 8]) end
    if is_cb then
      table.insert(fields, 'state'); table.insert(fields, 'delayed')
      table.insert(fields, 'due'); table.insert(fields, 'chord')
      ttl = tonumber(args[b + 5]) or ttl
    else
      local entry = redis.call('XADD', stream_of(args[b + 3], args[b + 4]), '*', 'id', id)
      table.insert(fields, 'state'); table.insert(fields, 'queued')
      table.insert(fields, 'entry'); table.insert(fields, entry)
      table.insert(fields, 'group'); table.insert(fields, group)
    end
    redis.call('HSET', 'atask:t:' .. id, unpack(fields))
    if not is_cb then hand_off(args[b + 3], stream_of(args[b + 3], args[b + 4]), now) end
  end
  redis.call('HSET', gkey, 'n', n, 'pending', n, 'ttl', ttl)
  if with_cb then redis.call('HSET', gkey, 'callback', group .. ':cb') end
  return 'ok'
end)

