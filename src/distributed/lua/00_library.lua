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
--
-- The library is the files of src/distributed/lua/ put together in the
-- order of their names at build time (CMakeLists.txt, cmake/embed.cmake),
-- one concern each; a local of one file is seen by the files after it.
-- This one has what they share: constants, helpers, limits.

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

