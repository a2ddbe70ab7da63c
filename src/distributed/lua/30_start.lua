-- Starting an entry a worker read: delivery count, cancel, limits.

-- start: keys = {task hash, stream, dead stream}; args = {entry, consumer, id}.
-- Returns {'run', name, args, attempt, time limit, cancel, retry policy},
-- or {'done', state} (finished or canceled already: the entry is dropped),
-- {'gone'} (no such task: expired or purged), {'dead'} (its workers died
-- on it `max deliveries` times). A task found 'started' lost its last run
-- with its worker: that goes into its history and counts toward the limit.
-- (start_entry's fields of the task hash)
local START_FIELDS = {'state', 'lost', 'history', 'attempt', 'owner', 'maxd', 'name', 'queue', 'args', 'tl',
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
    -- in the delayed set: put off, not spun on. A task that comes back at its
    -- time and is still too early (a send just before it took its place, or
    -- the tasks before it started late, all together: workers down or held
    -- back) gets a new time of its own the same way, after the ones handed
    -- out already. It never shares one: tasks put off to one time would come
    -- back together, every interval, until the last of them ran.
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
          local cursor = tonumber(redis.call('GET', 'atask:rl:next:' .. l[1]) or '0') or 0
          if cursor > due then due = cursor end
          redis.call('SET', 'atask:rl:next:' .. l[1], tostring(due + interval), 'PX',
            math.ceil(due - now + interval))
          if due > wait_until then wait_until = due end
        end
      end
    end
    if wait_until > now then
      drop_entry(stream, entry)
      delay(hash, id, h.queue, math.ceil(wait_until))
      return {'wait'}
    end
    for _, l in ipairs(limited) do
      if l[2] > 0 then
        local tat = tats[l[1]] + l[3] / l[2]
        redis.call('SET', 'atask:rl:' .. l[1], tostring(tat), 'PX', math.ceil(tat - now) + 1)
      end
    end
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

