#!lua name=atask_v1
-- atask's server-side state changes, as a Redis 7 Functions library. Every
-- transition of a task happens in one of these functions, atomically; the
-- key layout is in docs/distributed.md. Times come from the server's clock
-- (TIME), so the machines of a cluster need not agree on theirs.
--
-- A task is a hash atask:t:<id> (its body, state, attempt, owner, result)
-- plus, while it waits or runs, one entry {id = <id>} in the stream of its
-- queue and priority, atask:{<queue>}:<priority>, read through the consumer
-- group "w". An entry leaves its stream only here: acknowledged and deleted
-- once the outcome is stored, or moved to the tail when its worker died.
--
-- Function names, keys and arguments are what src/distributed/*.cpp call
-- them with. Keys computed inside a function (a dead worker's streams, a
-- dead letter's task) make this a library for one Redis server, with
-- replicas if you like, not for Redis Cluster.

local GROUP = 'w'
-- Every queue a task was ever put into (Client::queues(), the API server's
-- queue list): a set, so that listing queues never scans the key space.
local QUEUES = 'atask:queues'
local FINAL = {succeeded = true, failed = true, canceled = true, dead = true}
-- Hands a task just queued to a worker that waits idle for one (below;
-- every function that puts a task into its stream calls it).
local hand_off

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function to_map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end

local function drop_entry(stream, entry)
  redis.call('XACK', stream, GROUP, entry)
  redis.call('XDEL', stream, entry)
end

-- The stream a task is about to be added to (and the queue noted in QUEUES).
local function stream_of(queue, prio)
  redis.call('SADD', QUEUES, queue)
  return 'atask:{' .. queue .. '}:' .. prio
end
local function delayed_of(queue) return 'atask:{' .. queue .. '}:delayed' end
-- The tasks of a queue's delayed set that wait for a retry (after a failed
-- run), scored by when they are due: its ZCARD is the queue's "retrying"
-- count (Client::queue_stats()), with no scan of the delayed set. A task
-- leaves it where it leaves the delayed set (promote, cancel, purge).
local function retrying_of(queue) return 'atask:{' .. queue .. '}:retrying' end
local function retrying_of_delayed(z) return (string.gsub(z, ':delayed$', ':retrying')) end

-- Into the queue's delayed set, due at `due` (server ms); the queue's
-- workers hear of it on atask:{<queue>}:due and promote it when it is due.
local function delay(hash, id, queue, due)
  redis.call('SADD', QUEUES, queue)
  redis.call('HSET', hash, 'state', 'delayed', 'due', due)
  redis.call('ZADD', delayed_of(queue), due, id)
  redis.call('PUBLISH', 'atask:{' .. queue .. '}:due', due)
end

-- Appends one failed attempt to the task's history, a JSON array kept as
-- text (cjson would turn an empty array into an object).
local function remember(hash, old, attempt, etype, emsg, worker, now)
  local item = cjson.encode({attempt = tonumber(attempt) or 0, etype = etype, emsg = emsg,
    worker = worker or '', time = now})
  if not old or old == '' or old == '[]' then
    redis.call('HSET', hash, 'history', '[' .. item .. ']')
  else
    redis.call('HSET', hash, 'history', string.sub(old, 1, -2) .. ',' .. item .. ']')
  end
end

-- Limits (tasks/limits.hpp): atask:limits maps 't:<name>' and 'q:<queue>'
-- to "<max starts> <per ms> <max running>", written by the workers. Returns
-- the scopes of a task that have limits: {{scope, n, per, k}, ...}.
local LIMITS = 'atask:limits'
local function limits_of(name, queue)
  local out = {}
  local scopes = {'t:' .. name, 'q:' .. queue}
  -- (two HGETs, not an HMGET: the functions read a task hash with HMGET a
  -- fixed number of times, which a test counts)
  local v = {redis.call('HGET', LIMITS, scopes[1]), redis.call('HGET', LIMITS, scopes[2])}
  for i = 1, 2 do
    if v[i] then
      local n, per, k = string.match(v[i], '^(%d+) (%d+) (%d+)$')
      n, per, k = tonumber(n), tonumber(per), tonumber(k)
      if n and (n > 0 or k > 0) then table.insert(out, {scopes[i], n, per, k}) end
    end
  end
  return out
end

-- A task that ran (or was let in) under a concurrency limit is done with
-- its place: the first task waiting in line for it goes back to its stream.
local function release(hash, id, name, queue)
  redis.call('HDEL', hash, 'cc')
  if not name then return end
  for _, scope in ipairs({'t:' .. name, 'q:' .. (queue or '')}) do
    if redis.call('SREM', 'atask:cc:' .. scope, id) == 1 then
      while true do
        local next_id = redis.call('LPOP', 'atask:cc:w:' .. scope)
        if not next_id then break end
        local nh = 'atask:t:' .. next_id
        local f = redis.call('HMGET', nh, 'state', 'queue', 'prio', 'due')
        if f[1] == 'delayed' and f[4] == 'line' then
          local entry = redis.call('XADD', stream_of(f[2], f[3]), '*', 'id', next_id)
          redis.call('HSET', nh, 'state', 'queued', 'entry', entry)
          redis.call('HDEL', nh, 'due')
          hand_off(f[2], stream_of(f[2], f[3]), now_ms())
          break
        end
      end
    end
  end
end

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

-- start: keys = {task hash, stream, dead stream}; args = {entry, consumer, id}.
-- Returns {'run', name, args, attempt, time limit, cancel, retry policy},
-- or {'done', state} (finished or canceled already: the entry is dropped),
-- {'gone'} (no such task: expired or purged), {'dead'} (its workers died
-- on it `max deliveries` times). A task found 'started' lost its last run
-- with its worker: that goes into its history and counts toward the limit.
-- (start_entry's fields of the task hash)
local START_FIELDS = {'state', 'lost', 'history', 'attempt', 'owner', 'maxd', 'name', 'queue', 'rl', 'args', 'tl',
  'cancel', 'retry'}
-- `now`: the caller's clock reading, if it has one; `seen`: limits_of()'s
-- answers by task and queue, for a caller that starts several tasks.
local function start_entry(hash, stream, dead, entry, consumer, id, now, seen)
  local v = redis.call('HMGET', hash, unpack(START_FIELDS))
  if not v[1] then  -- (every task hash has a state)
    drop_entry(stream, entry)
    return {'gone'}
  end
  local h = {}
  for i, f in ipairs(START_FIELDS) do
    if v[i] then h[f] = v[i] end
  end
  if FINAL[h.state] then
    drop_entry(stream, entry)
    return {'done', h.state}
  end
  now = now or now_ms()
  local lost = tonumber(h.lost) or 0
  if h.state == 'started' then
    lost = lost + 1
    remember(hash, h.history, h.attempt, 'atask::WorkerLost',
      'worker ' .. (h.owner or '?') .. ' stopped (died, or was presumed dead) while running it', h.owner, now)
    h.history = redis.call('HGET', hash, 'history')
  end
  local maxd = tonumber(h.maxd) or 5
  if lost >= maxd then
    dead_letter(hash, dead, id, 'atask::DeliveryLimit',
      'delivered ' .. lost .. ' times and never finished: the worker running it died each time (max_deliveries = ' .. maxd .. ')', now)
    drop_entry(stream, entry)
    return {'dead'}
  end
  -- Limits. Over a concurrency limit: in line until one of the running ends
  -- (release()). Over a rate: it waits in the delayed set for a start time
  -- of its own (below), so it is not spun on.
  local limited
  if seen then
    local k = (h.name or '') .. '\n' .. (h.queue or '')
    limited = seen[k]
    if not limited then
      limited = limits_of(h.name or '', h.queue or '')
      seen[k] = limited
    end
  else
    limited = limits_of(h.name or '', h.queue or '')
  end
  if #limited > 0 then
    for _, l in ipairs(limited) do
      local set = 'atask:cc:' .. l[1]
      if l[4] > 0 and redis.call('SISMEMBER', set, id) == 0 and redis.call('SCARD', set) >= l[4] then
        drop_entry(stream, entry)
        redis.call('HSET', hash, 'state', 'delayed', 'due', 'line')
        redis.call('RPUSH', 'atask:cc:w:' .. l[1], id)
        return {'wait'}
      end
    end
    -- Rate, as a GCRA: atask:rl:<scope> holds the theoretical time of the
    -- next start (tat); a start is let in when tat - now <= tau, and moves
    -- tat on by per / max starts. tau, the slack, is a tenth of max starts'
    -- intervals: a backlog comes out evenly, starts that came late (a busy
    -- machine) catch up by that much, and no window of `per` ever holds more
    -- than max starts plus a tenth. A task let in too early gets a start time
    -- of its own, the next free one (atask:rl:next:<scope>), and waits for it
    -- in the delayed set: put off once, not spun on. (If the tasks before it
    -- started late, its time may not have come yet when it arrives: then it
    -- waits again, for the first free time.)
    local wait_until = now
    local tats = {}
    for _, l in ipairs(limited) do
      if l[2] > 0 then
        local interval = l[3] / l[2]
        local tau = math.floor(l[2] / 10) * interval
        local tat = tonumber(redis.call('GET', 'atask:rl:' .. l[1]) or '') or now
        if tat < now then tat = now end
        tats[l[1]] = tat
        if tat - now > tau then
          local due = tat - tau
          if not h.rl then
            local cursor = tonumber(redis.call('GET', 'atask:rl:next:' .. l[1]) or '0') or 0
            if cursor > due then due = cursor end
            redis.call('SET', 'atask:rl:next:' .. l[1], tostring(due + interval), 'PX',
              math.ceil(due - now + interval))
          end
          if due > wait_until then wait_until = due end
        end
      end
    end
    if wait_until > now then
      drop_entry(stream, entry)
      redis.call('HSET', hash, 'rl', '1')
      delay(hash, id, h.queue, math.ceil(wait_until))
      return {'wait'}
    end
    for _, l in ipairs(limited) do
      if l[2] > 0 then
        local tat = tats[l[1]] + l[3] / l[2]
        redis.call('SET', 'atask:rl:' .. l[1], tostring(tat), 'PX', math.ceil(tat - now) + 1)
      end
    end
    if h.rl then redis.call('HDEL', hash, 'rl') end
    for _, l in ipairs(limited) do
      if l[4] > 0 then
        redis.call('SADD', 'atask:cc:' .. l[1], id)
        redis.call('HSET', hash, 'cc', '1')  -- finish() gives its place back
      end
    end
  end
  local attempt = (tonumber(h.attempt) or 0) + 1
  redis.call('HSET', hash, 'state', 'started', 'attempt', attempt, 'lost', lost, 'owner', consumer,
    'entry', entry, 'started', now)
  return {'run', h.name or '', h.args or '', tostring(attempt), h.tl or '0', h.cancel or '0', h.retry or ''}
end
redis.register_function('atask_start', function(keys, args)
  return start_entry(keys[1], keys[2], keys[3], args[1], args[2], args[3])
end)

-- Hand-off. A worker with a free slot that finds its streams empty says so
-- (atask_idle) and waits on its streams and on its inbox, a stream of its
-- own (atask:in:<worker>). atask:{<queue>}:idle holds the workers waiting
-- on a queue, scored by when that lapses (server ms; a worker says it again
-- after every wait). A task queued while one waits is read for it here, in
-- the stream's group, started for it as atask_start would (limits, cancel,
-- delivery count), and its start goes to the worker's inbox: the worker
-- skips atask_start's round trip. The stream entry is pending under the
-- worker's name from then on, as if its read had taken it: a worker that
-- dies with a task in its inbox loses it to the reaper like any other.
-- Inbox entries: s = the stream, e = the entry, id, and r1.. = what
-- atask_start would have returned ('run' or 'dead' only; a task that is not
-- to run now leaves the worker waiting). An entry without a task id goes
-- to the inbox as it is (s, e): the worker rejects it.
local function idle_of(queue) return 'atask:{' .. queue .. '}:idle' end
local function inbox_of(consumer) return 'atask:in:' .. consumer end

hand_off = function(queue, stream, now)
  local idle = idle_of(queue)
  local top = redis.call('ZPOPMAX', idle)
  if #top == 0 then return end
  if tonumber(top[2]) < now then  -- the latest lapse has passed: so have all
    redis.call('DEL', idle)
    return
  end
  local c = top[1]
  -- Reaped meanwhile (its inbox goes with it; registering again makes it anew).
  if not redis.call('ZSCORE', 'atask:workers', c) or redis.call('EXISTS', inbox_of(c)) == 0 then return end
  local ok, r = pcall(redis.call, 'XREADGROUP', 'GROUP', GROUP, c, 'COUNT', 1, 'STREAMS', stream, '>')
  if not ok or not r or not r[1] or #r[1][2] == 0 then
    redis.call('ZADD', idle, top[2], c)
    return
  end
  local entry, f = r[1][2][1][1], to_map(r[1][2][1][2] or {})
  local out = {'s', stream, 'e', entry}
  if f.id then
    local started = start_entry('atask:t:' .. f.id, stream, 'atask:{' .. queue .. '}:dead', entry, c, f.id, now)
    if started[1] ~= 'run' and started[1] ~= 'dead' then  -- done, gone or wait: dropped, nothing to run
      redis.call('ZADD', idle, top[2], c)
      return
    end
    table.insert(out, 'id'); table.insert(out, f.id)
    for i, v in ipairs(started) do table.insert(out, 'r' .. i); table.insert(out, v) end
  end
  -- Busy now, on every queue it waited on (atask_idle says so again).
  local queues = redis.call('HGET', 'atask:w:' .. c, 'queues')
  if queues then
    for q in string.gmatch(queues, '%S+') do
      if q ~= queue then redis.call('ZREM', idle_of(q), c) end
    end
  end
  redis.call('XADD', inbox_of(c), '*', unpack(out))
end

-- idle: keys = the worker's streams, in the order to read them (priority);
-- args = {consumer, count, lapse ms, n, n queues, then the inbox entries
-- the worker has taken}. Drops those entries; reads at most `count` new
-- entries and starts each as atask_start does, in this one call. Returns
-- {stream, entry, id, what atask_start returned} for each entry to run or
-- dead-lettered, {stream, entry} for one without a task id (the worker
-- rejects it). If there were no entries, the worker waits on its queues
-- until now + lapse, else it does not wait on any.
redis.register_function('atask_idle', function(keys, args)
  local c, count, lapse, nq = args[1], tonumber(args[2]) or 1, tonumber(args[3]) or 2000, tonumber(args[4]) or 0
  local inbox = inbox_of(c)
  for i = 5 + nq, #args do
    redis.call('XACK', inbox, GROUP, args[i])
    redis.call('XDEL', inbox, args[i])
  end
  local out, got, now, seen = {}, 0, nil, {}
  -- Tasks handed to the worker first: they are started, and a worker kept
  -- busy by its streams would not get to its blocking read.
  local ok, r = pcall(redis.call, 'XREADGROUP', 'GROUP', GROUP, c, 'COUNT', count, 'STREAMS', inbox, '>')
  if ok and r and r[1] then
    for _, e in ipairs(r[1][2]) do
      local f = to_map(e[2] or {})
      redis.call('XACK', inbox, GROUP, e[1])
      redis.call('XDEL', inbox, e[1])
      if f.s and f.e then
        got = got + 1
        local one = {f.s, f.e}
        if f.id then
          table.insert(one, f.id)
          local i = 1
          while f['r' .. i] do
            table.insert(one, f['r' .. i])
            i = i + 1
          end
        end
        table.insert(out, one)
      end
    end
  end
  for _, s in ipairs(keys) do
    if got >= count then break end
    -- (a stream without the group, deleted meanwhile: skipped here; the
    -- worker's blocking read fails on it and the worker joins again)
    ok, r = pcall(redis.call, 'XREADGROUP', 'GROUP', GROUP, c, 'COUNT', count - got, 'STREAMS', s, '>')
    if ok and r and r[1] then
      now = now or now_ms()  -- one reading for the batch
      for _, e in ipairs(r[1][2]) do
        got = got + 1
        local f = to_map(e[2] or {})
        if f.id then
          -- (the queue's dead-letter stream: the stream's key up to its priority)
          local started = start_entry('atask:t:' .. f.id, s, (string.gsub(s, ':[^:]*$', ':dead')), e[1], c, f.id,
            now, seen)
          if started[1] == 'run' or started[1] == 'dead' then
            local one = {s, e[1], f.id}
            for _, v in ipairs(started) do table.insert(one, v) end
            table.insert(out, one)
          end
        else
          table.insert(out, {s, e[1]})
        end
      end
    end
  end
  if got == 0 then
    local until_ms = now_ms() + lapse
    for i = 5, 4 + nq do redis.call('ZADD', idle_of(args[i]), until_ms, c) end
  else
    for i = 5, 4 + nq do redis.call('ZREM', idle_of(args[i]), c) end
  end
  return out
end)

-- Undoes a start that did not run: the task is queued again as it was
-- (the same attempt next time, no lost delivery), its place under a
-- concurrency limit given back, its entry moved to the tail of its stream
-- (and handed to a waiting worker, if any). Only while the start is still
-- this consumer's, for this attempt and entry.
local function unstart(id, stream, entry, consumer, attempt)
  local hash = 'atask:t:' .. id
  local h = redis.call('HMGET', hash, 'state', 'owner', 'attempt', 'entry', 'cc', 'name', 'queue')
  if h[1] ~= 'started' or h[2] ~= consumer or h[3] ~= attempt or h[4] ~= entry then return false end
  if h[5] then release(hash, id, h[6], h[7]) end
  redis.call('HSET', hash, 'state', 'queued', 'attempt', (tonumber(attempt) or 1) - 1)
  redis.call('HDEL', hash, 'owner', 'started')
  local r = redis.call('XRANGE', stream, entry, entry)
  drop_entry(stream, entry)
  if #r > 0 then
    redis.call('HSET', hash, 'entry', redis.call('XADD', stream, '*', unpack(r[1][2])))
    if h[7] then hand_off(h[7], stream, now_ms()) end
  end
  return true
end

-- Stream entry ids ("<ms>-<seq>"): is a after b?
local function id_after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am) or 0, tonumber(as) or 0, tonumber(bm) or 0, tonumber(bs) or 0
  return am > bm or (am == bm and as > bs)
end

-- The worker waits on none of its queues any more.
local function stop_waiting(consumer)
  local queues = redis.call('HGET', 'atask:w:' .. consumer, 'queues')
  if queues then
    for q in string.gmatch(queues, '%S+') do redis.call('ZREM', idle_of(q), consumer) end
  end
end

-- Empties a worker's inbox. The starts it never read (after the inbox
-- group's last delivered id) are undone; with `all`, also those it read
-- and does not run (`running`: the ids it runs, a set). Returns how many.
local function return_inbox(consumer, all, running)
  local inbox = inbox_of(consumer)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', inbox)
  if not ok then return 0 end
  local last = nil
  for _, g in ipairs(groups) do
    local m = to_map(g)
    if m.name == GROUP then last = m['last-delivered-id'] end
  end
  local n = 0
  for _, e in ipairs(redis.call('XRANGE', inbox, '-', '+')) do
    local f = to_map(e[2])
    local unread = not last or id_after(e[1], last)
    if f.id and f.r1 == 'run' and f.s and f.e and (unread or (all and not running[f.id])) then
      if unstart(f.id, f.s, f.e, consumer, f.r4) then n = n + 1 end
    end
    redis.call('XACK', inbox, GROUP, e[1])
    redis.call('XDEL', inbox, e[1])
  end
  return n
end

-- A worker that leaves (or was reaped) waits on nothing, and its inbox
-- goes; the starts it never read are undone (called before its pending
-- entries go back, so that they go back unstarted).
local function forget_worker_waits(consumer)
  stop_waiting(consumer)
  local n = return_inbox(consumer, false, {})
  redis.call('DEL', inbox_of(consumer))
  return n
end

-- unidle: keys = {}; args = {consumer, then the ids of the tasks it runs}.
-- A worker that stops fetching: it waits on no queue, and every task in
-- its inbox that it does not run goes back unstarted. Returns how many.
redis.register_function('atask_unidle', function(keys, args)
  stop_waiting(args[1])
  local running = {}
  for i = 2, #args do running[args[i]] = true end
  return return_inbox(args[1], true, running)
end)

-- unstart: keys = {task hash, stream}; args = {consumer, attempt, entry}.
-- A task a stopping worker took and did not run goes back unstarted (the
-- worker waits on no queue any more). Returns 1 if it went back.
redis.register_function('atask_unstart', function(keys, args)
  stop_waiting(args[1])
  return unstart(string.sub(keys[1], 9), keys[2], args[3], args[1], args[2]) and 1 or 0
end)

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

-- heartbeat: keys = {workers zset, worker hash, then the hashes of the
-- tasks running here}; args = {consumer, succeeded, failed, retried,
-- reaped}. Records the
-- running task ids and the counters in the worker hash (for
-- Client::workers()). Returns {1 if this worker was
-- missing (presumed dead and reaped, or Redis lost its data), the ids of
-- the running tasks that were asked to cancel}.
redis.register_function('atask_heartbeat', function(keys, args)
  local missing = 0
  if redis.call('ZSCORE', keys[1], args[1]) == false or redis.call('EXISTS', keys[2]) == 0 then
    missing = 1
  end
  redis.call('ZADD', keys[1], now_ms(), args[1])
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
  return {missing, canceled}
end)

-- reap: keys = {workers zset, sweep lock}; args = {dead after ms, lock ms,
-- reaper}. Under the lock (one sweep per period across the cluster), every
-- worker silent for longer than `dead after` has its pending entries moved
-- to the tail of their streams and is forgotten. Returns {consumer, count,
-- ...}.
redis.register_function('atask_reap', function(keys, args)
  local workers, lock = keys[1], keys[2]
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
