#!lua
-- Shared prelude of every writing script (see `redis/scripts.rs`).
--
-- The shebang line declares the script with flags (none: it may write), so
-- Redis 7 refuses the whole script with an OOM error *before it runs* when
-- used memory is above `maxmemory`; a script that started always runs to
-- its end. Every script checks everything it can refuse before its first
-- write, so a refusal changes nothing.
--
-- ARGV[1] key prefix with its hash tag (`{torch}`), ARGV[2] the caller's
-- clock (unix ms), ARGV[3] the approximate MAXLEN of the streams.
-- KEYS[1] is the fence counter: it is only there so that a cluster routes
-- the script to the slot that holds every key (all keys share the tag).
local P = ARGV[1]
local NOW = ARGV[2]
local MAXLEN = ARGV[3]

-- The layout marker is written when a store is opened. Without it the
-- server lost the store's data (restarted without persistence, flushed):
-- counters would start again at 1 and fences would repeat, so refuse.
if redis.call('EXISTS', P .. ':version') == 0 then
  return redis.error_reply('TORCHLOST no store data under ' .. P .. ' (the server restarted without persistence or was flushed)')
end

local STREAM_QUEUE = 'nova.torch.tasks.queue'
local STREAM_ACTIVE = 'nova.torch.tasks.active'
local STREAM_COMPLETED = 'nova.torch.tasks.completed'
local STREAM_FAILED = 'nova.torch.tasks.failed'

-- Integers (counters, ids) as decimal text, never in exponent notation.
local function int(n)
  return string.format('%d', n)
end

local function tkey(id)
  return P .. ':t:' .. id
end

-- An optional argument: '' is none, otherwise the value after a 1-byte mark.
local function opt(a)
  if a == '' then
    return nil
  end
  return string.sub(a, 2)
end

-- A JSON string literal.
local function jstr(s)
  return cjson.encode(s)
end

-- Counters (`P:seq`, `P:fence`, `P:eid`): the first use in a script is an
-- INCR, later ones count on in Lua and `flush` (which the wrapper in
-- `scripts.rs` calls after the body, whatever it returns) writes the last
-- value back. The script runs alone, so this is the same as one INCR per
-- use, in fewer commands.
local COUNTERS = {}

local function next_id(name)
  local c = COUNTERS[name]
  if not c then
    c = { value = redis.call('INCR', P .. ':' .. name), dirty = false }
    COUNTERS[name] = c
    return c.value
  end
  c.value = c.value + 1
  c.dirty = true
  return c.value
end

-- Stream keys by stream name; a stream is recorded in `P:streams` the
-- first time this script writes to it.
local STREAM_KEYS = {}

-- Change of the running count in this script, written back by `flush`.
local RUNNING = 0

-- Moves between the per-state sorted sets, by task id: {from = set or
-- false, to = set, score = seq}. They are written by `flush`, one ZREM and
-- one ZADD per set for the whole script, not two commands per task (no
-- script reads these sets after moving a task in them).
local MOVES = {}
local MOVED = 0

-- Most values handed to one command through `unpack` (Lua's C stack has
-- room for about 8000).
local CHUNK = 4000

-- Runs `cmd key <items…>` over `items` in chunks of at most CHUNK values.
local function bulk(cmd, key, items)
  local n = #items
  local i = 1
  while i <= n do
    local j = math.min(i + CHUNK - 1, n)
    redis.call(cmd, key, unpack(items, i, j))
    i = j + 1
  end
end

local function flush_moves()
  if MOVED == 0 then
    return
  end
  local removes, adds = {}, {}
  for id, m in pairs(MOVES) do
    if m.from ~= m.to then
      if m.from then
        local r = removes[m.from]
        if not r then
          r = {}
          removes[m.from] = r
        end
        r[#r + 1] = id
      end
      local a = adds[m.to]
      if not a then
        a = {}
        adds[m.to] = a
      end
      a[#a + 1] = m.score
      a[#a + 1] = id
    end
  end
  for set, ids in pairs(removes) do
    bulk('ZREM', P .. ':state:' .. set, ids)
  end
  for set, pairs_ in pairs(adds) do
    -- Keep score/member pairs together across chunks.
    local n = #pairs_
    local i = 1
    while i <= n do
      local j = math.min(i + CHUNK - 1, n)
      redis.call('ZADD', P .. ':state:' .. set, unpack(pairs_, i, j))
      i = j + 1
    end
  end
end

local function flush()
  -- Each stream written is trimmed once (approximately: whole nodes), not
  -- on every XADD.
  for _, key in pairs(STREAM_KEYS) do
    redis.call('XTRIM', key, 'MAXLEN', '~', MAXLEN)
  end
  for name, c in pairs(COUNTERS) do
    if c.dirty then
      redis.call('SET', P .. ':' .. name, int(c.value))
    end
  end
  if RUNNING ~= 0 then
    redis.call('INCRBY', P .. ':running', int(RUNNING))
  end
  flush_moves()
end

-- The key of stream `stream`, recorded in `P:streams` the first time this
-- script writes to it (and trimmed by `flush`).
local function stream_key(stream)
  local key = STREAM_KEYS[stream]
  if not key then
    key = P .. ':stream:' .. stream
    redis.call('SADD', P .. ':streams', stream)
    STREAM_KEYS[stream] = key
  end
  return key
end

-- Appends an event: the next global id from `P:eid`, written to the stream
-- `P:stream:<name>` with the explicit entry id `0-<global id>`.
-- `emit_as` takes an id already drawn with `next_id('eid')`.
local function emit_as(id, stream, kind, task, agent, data)
  local key = stream_key(stream)
  local eid = '0-' .. int(id)
  -- One call per shape: no argument table to build and unpack. Trimming
  -- (MAXLEN ~) is done once per stream when the script ends (`flush`).
  if task and agent then
    redis.call('XADD', key, eid, 'kind', kind, 'at', NOW, 'data', data, 'task', task, 'agent', agent)
  elseif task then
    redis.call('XADD', key, eid, 'kind', kind, 'at', NOW, 'data', data, 'task', task)
  elseif agent then
    redis.call('XADD', key, eid, 'kind', kind, 'at', NOW, 'data', data, 'agent', agent)
  else
    redis.call('XADD', key, eid, 'kind', kind, 'at', NOW, 'data', data)
  end
  return id
end

-- As `emit_as` for an entry about a task and an agent with one more field,
-- `explanation` (the `task.assigned` entries).
local function emit_explained(id, stream, kind, task, agent, data, explanation)
  redis.call('XADD', stream_key(stream), '0-' .. int(id), 'kind', kind, 'at', NOW, 'data', data,
    'task', task, 'agent', agent, 'explanation', explanation)
  return id
end

local function emit(stream, kind, task, agent, data)
  return emit_as(next_id('eid'), stream, kind, task, agent, data)
end

-- The sorted set holding tasks in `state` (score: their seq): one per state,
-- except that assigned and running tasks share `P:state:leased` (a start
-- then moves nothing); `P:running` counts the running ones.
local function set_of(state)
  if state == 'assigned' or state == 'running' then
    return 'leased'
  end
  return state
end

-- Moves a task between the per-state sorted sets (score: its seq; unused
-- when both states share a set). Recorded in MOVES and written by `flush`.
local function move(id, seq, from, to)
  if from == to then
    return
  end
  if from == 'running' then
    RUNNING = RUNNING - 1
  end
  if to == 'running' then
    RUNNING = RUNNING + 1
  end
  local a, b = from and set_of(from), set_of(to)
  if a == b then
    return
  end
  local m = MOVES[id]
  if m then
    m.to = b
    m.score = seq or m.score
  else
    MOVES[id] = { from = a or false, to = b, score = seq }
    MOVED = MOVED + 1
  end
end

local function is_terminal(state)
  return state == 'succeeded' or state == 'dead' or state == 'cancelled'
end

local function is_leased(state)
  return state == 'assigned' or state == 'running'
end

-- What the caller needs to rebuild a task's QueuedTask:
-- {id, priority, seq, not_before, skills, tenant, routing|false, failed|false}.
local function queued_row(id)
  local r = redis.call('HMGET', tkey(id), 'pri', 'seq', 'nb', 'sk', 'ten', 'rt', 'fa')
  return { id, r[1], r[2], r[3], r[4], r[5], r[6], r[7] }
end

-- Splits a comma-separated id list ('' or false: none).
local function split(list)
  local out = {}
  if not list or list == '' then
    return out
  end
  for item in string.gmatch(list, '[^,]+') do
    out[#out + 1] = item
  end
  return out
end

-- Cancels one unfinished task; records the lease to revoke if it had one.
local function cancel_one(id, reason, cancelled, revoked)
  local k = tkey(id)
  local r = redis.call('HMGET', k, 'st', 'seq', 'ag', 'f')
  local state, seq, agent, fence = r[1], r[2], r[3], r[4]
  -- `ag` stays: readers show the holder only while the task is leased.
  redis.call('HSET', k, 'st', 'cancelled', 'why', reason, 'nb', '0', 'u', NOW)
  move(id, seq, state, 'cancelled')
  local holder = nil
  if agent and is_leased(state) then
    holder = agent
    revoked[#revoked + 1] = { id, agent, fence }
  end
  local data = '{"reason":' .. jstr(reason) .. ',"was":"' .. state .. '"}'
  emit(STREAM_FAILED, 'task.cancelled', id, holder, data)
  cancelled[#cancelled + 1] = id
end

-- Cancels the unfinished dependents of `root`, transitively, breadth first.
local function cascade(root, reason, cancelled, revoked)
  local queue = { root }
  local head = 1
  while head <= #queue do
    local id = queue[head]
    head = head + 1
    local dependents = redis.call('LRANGE', P .. ':rdeps:' .. id, 0, -1)
    for _, dep in ipairs(dependents) do
      local state = redis.call('HGET', tkey(dep), 'st')
      if state and not is_terminal(state) then
        cancel_one(dep, reason, cancelled, revoked)
        queue[#queue + 1] = dep
      end
    end
  end
end
