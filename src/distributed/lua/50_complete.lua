-- A run's outcome, its progress, a rejected message, a cancel.

-- complete: keys = {task hash, stream, dead stream}; args = {entry,
-- consumer, attempt, outcome, a, b} with outcome succeeded (a = result
-- json), failed or canceled (a = error type, b = message), dead (the same,
-- into the dead-letter stream), or retry (the same, and c = the delay in
-- ms: the task waits in the delayed set for its next attempt). Every
-- failure goes into the task's history. Fenced: only the owner of the
-- current attempt writes; anyone else gets 'stale' and changes nothing but
-- its own entry's acknowledgement.
redis.register_function('atask_complete', function(keys, args)
  local hash, stream, dead = keys[1], keys[2], keys[3]
  local entry, consumer, attempt, outcome = args[1], args[2], args[3], args[4]
  drop_entry(stream, entry)
  local cur = redis.call('HMGET', hash, 'state', 'attempt', 'owner', 'ttl', 'reply', 'cancel', 'history',
    'queue', 'idem', 'cc', 'name', 'chain', 'step', 'steps', 'group')
  if cur[1] ~= 'started' or cur[2] ~= attempt or cur[3] ~= consumer then return 'stale' end
  local id = string.sub(hash, 9)
  local now = now_ms()
  if outcome == 'succeeded' then
    finish(hash, id, outcome, now, args[5], '', '',
      {cur[4], cur[5], cur[6], cur[9], cur[10], cur[11], cur[8], cur[12], cur[13], cur[14], cur[15]})
    return 'ok'
  end
  if outcome ~= 'canceled' then remember(hash, cur[7], attempt, args[5], args[6], consumer, now) end
  if outcome == 'retry' then
    redis.call('HSET', hash, 'etype', args[5], 'emsg', args[6])
    if cur[10] then release(hash, id, cur[11], cur[8]) end
    local due = now + (tonumber(args[7]) or 0)
    delay(hash, id, cur[8], due)
    redis.call('ZADD', retrying_of(cur[8]), due, id)
  elseif outcome == 'dead' then
    dead_letter(hash, dead, id, args[5], args[6], now)
  else
    finish(hash, id, outcome, now, '', args[5], args[6],
      {cur[4], cur[5], cur[6], cur[9], cur[10], cur[11], cur[8], cur[12], cur[13], cur[14], cur[15]})
  end
  return 'ok'
end)

-- progress: keys = {task hash}; args = {consumer, attempt, fraction,
-- message}. Fenced like complete; the client hears "p:<id>" on its channel.
redis.register_function('atask_progress', function(keys, args)
  local hash = keys[1]
  local cur = redis.call('HMGET', hash, 'state', 'attempt', 'owner', 'reply')
  if cur[1] ~= 'started' or cur[2] ~= args[2] or cur[3] ~= args[1] then return 'stale' end
  redis.call('HSET', hash, 'progress', args[3], 'pmsg', args[4])
  -- "p:<id>\n<fraction>\n<message>": the client needs no read.
  if cur[4] and cur[4] ~= '' then
    local msg = 'p:' .. string.sub(hash, 9) .. '\n' .. args[3] .. '\n' .. args[4]
    for ch in string.gmatch(cur[4], '%S+') do redis.call('PUBLISH', ch, msg) end
  end
  return 'ok'
end)

-- reject: keys = {stream, dead stream}; args = {entry, reason}. An entry
-- without a task id: its raw fields go to the dead-letter stream.
redis.register_function('atask_reject', function(keys, args)
  local stream, dead = keys[1], keys[2]
  local r = redis.call('XRANGE', stream, args[1], args[1])
  local fields = {}
  if #r > 0 then fields = r[1][2] end
  local out = {'etype', 'atask::MalformedMessage', 'emsg', args[2], 'time', now_ms()}
  for i = 1, #fields, 2 do
    table.insert(out, 'raw.' .. fields[i])
    table.insert(out, fields[i + 1])
  end
  redis.call('XADD', dead, '*', unpack(out))
  drop_entry(stream, args[1])
  return 'ok'
end)

local function cancel_one(hash, id)
  local h = redis.call('HMGET', hash, 'state', 'owner')
  local state = h[1]
  if not state then return 'unknown' end
  if state == 'delayed' then
    local queue = redis.call('HGET', hash, 'queue') or ''
    redis.call('ZREM', delayed_of(queue), id)
    redis.call('ZREM', retrying_of(queue), id)
    finish(hash, id, 'canceled', now_ms(), '', 'atask::TaskCanceled', 'canceled while delayed')
    return 'canceled'
  end
  if state == 'queued' then
    finish(hash, id, 'canceled', now_ms(), '', 'atask::TaskCanceled', 'canceled while queued')
    return 'canceled'
  end
  if state == 'started' then
    redis.call('HSET', hash, 'cancel', '1')
    redis.call('PUBLISH', 'atask:cancel:' .. (h[2] or ''), id)
    return 'requested'
  end
  return 'ended:' .. state
end

-- cancel: keys = {task hash}; args = {id}. A queued task is canceled here
-- (its entry is dropped by whichever worker reads it); a running one gets a
-- cancel flag that its worker's next heartbeat returns, and a message on
-- atask:cancel:<owner>. A step of a chain cancels the whole chain, last
-- step first. Returns 'canceled', 'requested', 'unknown', or
-- 'ended:<state>' for a task that had ended already.
redis.register_function('atask_cancel', function(keys, args)
  local hash, id = keys[1], args[1]
  local c = redis.call('HMGET', hash, 'chain', 'steps')
  if not c[1] then return cancel_one(hash, id) end
  local out = 'unknown'
  for k = (tonumber(c[2]) or 1) - 1, 0, -1 do
    local kid = c[1] .. ':' .. k
    local r = cancel_one('atask:t:' .. kid, kid)
    if kid == id then out = r end
  end
  return out
end)

