-- Endings (after 00_library.lua): a task's final state and who hears of it,
-- the next step of a chain or a group, dead letters, a dead worker's entries.

-- Outcomes up to this size travel in the message to the client (which then
-- needs no read); larger ones are read from the hash.
local INLINE_MAX = 65536

-- A final state: timestamps, time-to-live, and the client told. `fields`:
-- what the caller stores with it (result, or etype and emsg). `cur`: the
-- task's {ttl, reply, cancel, idem, cc, name, queue} if the caller has read
-- them already.
-- The message is "o:<id>\n<state>\n<etype>\n<result>\n<emsg>" (the result is
-- serialized JSON, on one line; emsg comes last and may hold anything), or
-- just "<id>" when that does not fit.
local continue_chain, group_member_ended  -- (below: they and finish() call each other)

local function finish(hash, id, state, now, result, etype, emsg, cur)
  cur = cur or redis.call('HMGET', hash, 'ttl', 'reply', 'cancel', 'idem', 'cc', 'name', 'queue', 'chain', 'step',
    'steps', 'group')
  if cur[5] then release(hash, id, cur[6], cur[7]) end
  local set = {'state', state, 'finished', now}
  if result ~= '' then table.insert(set, 'result'); table.insert(set, result) end
  if etype ~= '' then
    table.insert(set, 'etype'); table.insert(set, etype)
    table.insert(set, 'emsg'); table.insert(set, emsg)
  end
  redis.call('HSET', hash, unpack(set))
  if cur[3] then redis.call('HDEL', hash, 'cancel') end
  local ttl = tonumber(cur[1] or '86400') or 86400
  redis.call('EXPIRE', hash, ttl)
  if cur[4] and cur[4] ~= '' then redis.call('EXPIRE', cur[4], ttl) end  -- the idempotency key
  local reply = cur[2]
  if reply and reply ~= '' then
    local msg = id
    if #result + #emsg < INLINE_MAX and not string.find(result, '\n', 1, true)
        and not string.find(etype, '\n', 1, true) then
      msg = 'o:' .. id .. '\n' .. state .. '\n' .. etype .. '\n' .. result .. '\n' .. emsg
    end
    for ch in string.gmatch(reply, '%S+') do redis.call('PUBLISH', ch, msg) end
  end
  if cur[8] then continue_chain(cur[8], cur[9], cur[10], state, result, etype, emsg, now) end
  if cur[11] then group_member_ended(cur[11], now) end
end

-- A member of a group ended (any final state). When it was the last one,
-- the chord's callback (if any) gets the members' results, in order, as its
-- first argument and goes to its stream; or fails with atask::ChainBroken
-- if a member did not succeed.
group_member_ended = function(group, now)
  local gkey = 'atask:g:' .. group
  local left = redis.call('HINCRBY', gkey, 'pending', -1)
  if left > 0 then return end
  local g = redis.call('HMGET', gkey, 'n', 'callback', 'ttl')
  redis.call('EXPIRE', gkey, tonumber(g[3] or '86400') or 86400)
  if not g[2] then return end
  local cb = 'atask:t:' .. g[2]
  local f = redis.call('HMGET', cb, 'state', 'args', 'queue', 'prio')
  if f[1] ~= 'delayed' then return end  -- canceled meanwhile
  local results = {}
  for k = 0, (tonumber(g[1]) or 0) - 1 do
    local mid = group .. ':' .. k
    local m = redis.call('HMGET', 'atask:t:' .. mid, 'state', 'result', 'etype', 'emsg')
    if m[1] ~= 'succeeded' then
      finish(cb, g[2], 'failed', now, '', 'atask::ChainBroken',
        'member ' .. k .. ' of group ' .. group .. ' ended ' .. (m[1] or 'expired') ..
        ((m[3] and m[3] ~= '') and (': ' .. m[3] .. ': ' .. (m[4] or '')) or ''), nil)
      return
    end
    table.insert(results, m[2])
  end
  local first = '[' .. table.concat(results, ',') .. ']'
  local rest = f[2] or '[]'
  local args = '[' .. first .. ']'
  if rest ~= '[]' then args = '[' .. first .. ',' .. string.sub(rest, 2) end
  local entry = redis.call('XADD', stream_of(f[3], f[4]), '*', 'id', g[2])
  redis.call('HSET', cb, 'args', args, 'state', 'queued', 'entry', entry)
  redis.call('HDEL', cb, 'due')
  hand_off(f[3], stream_of(f[3], f[4]), now)
end

-- A step of a chain ended: on success the next step gets the result as its
-- first argument and goes to its stream; otherwise the next step (and so,
-- in turn, every later one) fails with atask::ChainBroken. One atomic step
-- with the outcome: a crash never loses or repeats a link.
continue_chain = function(chain, step, steps, state, result, etype, emsg, now)
  step, steps = tonumber(step), tonumber(steps)
  if not step or not steps or step + 1 >= steps then return end
  local next_id = chain .. ':' .. (step + 1)
  local nh = 'atask:t:' .. next_id
  local f = redis.call('HMGET', nh, 'state', 'args', 'queue', 'prio', 'name')
  if f[1] ~= 'delayed' then return end  -- canceled meanwhile, or expired
  if state == 'succeeded' then
    local rest = f[2] or '[]'
    local args = '[' .. result .. ']'
    if rest ~= '[]' then args = '[' .. result .. ',' .. string.sub(rest, 2) end
    local entry = redis.call('XADD', stream_of(f[3], f[4]), '*', 'id', next_id)
    redis.call('HSET', nh, 'args', args, 'state', 'queued', 'entry', entry)
    redis.call('HDEL', nh, 'due')
    hand_off(f[3], stream_of(f[3], f[4]), now)
  else
    finish(nh, next_id, 'failed', now, '', 'atask::ChainBroken',
      'step ' .. step .. ' of chain ' .. chain .. ' ended ' .. state .. (etype ~= '' and (': ' .. etype .. ': ' .. emsg) or ''),
      nil)
  end
end

-- Into the queue's dead-letter stream, with what it takes to requeue it.
local function dead_letter(hash, dead, id, etype, emsg, now)
  local h = to_map(redis.call('HGETALL', hash))
  redis.call('XADD', dead, '*', 'id', id, 'name', h.name or '', 'args', h.args or '',
    'queue', h.queue or '', 'prio', h.prio or '', 'ttl', h.ttl or '', 'maxd', h.maxd or '',
    'tl', h.tl or '', 'reply', h.reply or '', 'attempt', h.attempt or '0', 'worker', h.owner or '',
    'etype', etype, 'emsg', emsg, 'time', now, 'history', h.history or '[]', 'retry', h.retry or '',
    'idem', h.idem or '')
  finish(hash, id, 'dead', now, '', etype, emsg,
    {h.ttl, h.reply, h.cancel, h.idem, h.cc, h.name, h.queue, h.chain, h.step, h.steps, h.group})
end

-- Moves a consumer's pending entries of one stream to the stream's tail
-- (same fields, new entry id) and forgets the consumer there.
local function requeue_pending(stream, consumer)
  if redis.call('EXISTS', stream) == 0 then return 0 end
  local n = 0
  local queue = string.match(stream, '^atask:{(.*)}:[^:]*$')
  local now = now_ms()
  while true do
    local ok, p = pcall(redis.call, 'XPENDING', stream, GROUP, '-', '+', 100, consumer)
    if not ok or #p == 0 then break end
    for _, e in ipairs(p) do
      local r = redis.call('XRANGE', stream, e[1], e[1])
      drop_entry(stream, e[1])
      if #r > 0 then
        redis.call('XADD', stream, '*', unpack(r[1][2]))
        n = n + 1
        if queue then hand_off(queue, stream, now) end
      end
    end
  end
  pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, GROUP, consumer)
  return n
end

