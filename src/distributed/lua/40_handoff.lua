-- A worker that waits idle, and what it is handed; a stopping worker's
-- hand-backs.

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

