-- submit: inserts a batch all-or-nothing (see `redis/write.rs`).
--
-- ARGV[4] the number of tasks, then per task:
--   id, name, name as a JSON string, priority, tenant, idempotency key (opt), spec JSON,
--   skills JSON, routing JSON (opt), analysis (opt), parent (opt),
--   max retries, retry delays (comma-separated ms),
--   number of deps, the deps, number of labels, then key, value pairs;
-- then, optionally, the id of a hub that is not the leader: the new tasks
-- are then also handed off to the leader (one `tasks.handed_off` entry on
-- `nova.torch.hubs.handoff`).
-- Returns {'ok', {per task}} where each entry is {'new', seq, state},
-- {'stored', id, name, state} or {'earlier', index (1-based)};
-- or {'invalid', message} / {'corrupt', message} having written nothing.
local n = tonumber(ARGV[4])
local tasks = {}
local at = 5
for i = 1, n do
  local t = {
    id = ARGV[at], name = ARGV[at + 1], name_json = ARGV[at + 2], pri = ARGV[at + 3],
    tenant = ARGV[at + 4], idem = opt(ARGV[at + 5]), spec = ARGV[at + 6], skills = ARGV[at + 7],
    routing = opt(ARGV[at + 8]), analysis = opt(ARGV[at + 9]), parent = opt(ARGV[at + 10]),
    max_retries = ARGV[at + 11], delays = ARGV[at + 12],
  }
  at = at + 13
  local ndeps = tonumber(ARGV[at])
  t.deps = {}
  for d = 1, ndeps do
    t.deps[d] = ARGV[at + d]
  end
  at = at + ndeps + 1
  local nlabels = tonumber(ARGV[at])
  t.labels = {}
  for l = 1, nlabels do
    t.labels[l] = { ARGV[at + 2 * l - 1], ARGV[at + 2 * l] }
  end
  at = at + 2 * nlabels + 1
  tasks[i] = t
end
local handoff_hub = ARGV[at]
if handoff_hub == '' then
  handoff_hub = nil
end

local function label(t)
  return 'task ' .. t.name .. ' (' .. t.id .. ')'
end

-- Pass 1: idempotency. A duplicate's minted id is an alias for the task it
-- duplicates, so later tasks of the batch may depend on it.
local alias = {}
local keys = {}
local fresh = {}
local slots = {}
for i, t in ipairs(tasks) do
  local done = false
  if t.idem then
    local field = string.len(t.tenant) .. ':' .. t.tenant .. t.idem
    local j = keys[field]
    if j then
      alias[t.id] = tasks[j].id
      slots[i] = { 'earlier', j }
      done = true
    else
      local dup = redis.call('HGET', P .. ':idem', field)
      if dup then
        local row = redis.call('HMGET', tkey(dup), 'name', 'st')
        if not row[1] then
          return { 'corrupt', 'idempotency key of ' .. label(t) .. ' names missing task ' .. dup }
        end
        alias[t.id] = dup
        slots[i] = { 'stored', dup, row[1], row[2] }
        done = true
      else
        keys[field] = i
        t.idem_field = field
      end
    end
  end
  if not done then
    if fresh[t.id] then
      return { 'invalid', label(t) .. ' appears twice in the batch' }
    end
    fresh[t.id] = true
    slots[i] = { 'new' }
  end
end

-- Pass 2: check every dependency before writing anything.
for i, t in ipairs(tasks) do
  if slots[i][1] == 'new' then
    local deps = {}
    local seen = {}
    local pending = 0
    for _, d in ipairs(t.deps) do
      local dep = alias[d] or d
      if dep == t.id then
        return { 'invalid', label(t) .. ' depends on itself' }
      end
      if not seen[dep] then
        seen[dep] = true
        deps[#deps + 1] = dep
        if fresh[dep] then
          pending = pending + 1
        else
          local row = redis.call('HMGET', tkey(dep), 'name', 'st')
          if not row[1] then
            return { 'invalid', label(t) .. ': dependency ' .. dep .. ' does not exist' }
          end
          local st = row[2]
          if st == 'dead' or st == 'cancelled' then
            return { 'invalid', label(t) .. ': dependency ' .. row[1] .. ' (' .. dep .. ') is ' .. st }
          elseif st ~= 'succeeded' then
            pending = pending + 1
          end
        end
      end
    end
    t.resolved = deps
    t.pending = pending
  end
end

-- Pass 3: ids must be new.
for i, t in ipairs(tasks) do
  if slots[i][1] == 'new' and redis.call('EXISTS', tkey(t.id)) == 1 then
    return { 'invalid', label(t) .. ': a task with this id already exists' }
  end
end

-- Pass 4: write.
local function add_field(fields, name, value)
  if value then
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
end

local out = {}
local marked = {}
for i, t in ipairs(tasks) do
  if slots[i][1] == 'new' then
    local state = 'queued'
    if t.pending > 0 then
      state = 'blocked'
    end
    local seq = next_id('seq')
    local k = tkey(t.id)
    -- Fields that start at zero or empty (`att ret f ff dp`, ...) are
    -- left out: readers take a missing one as zero or none. One HSET.
    local fields = { 'seq', int(seq), 'name', t.name, 'st', state, 'pri', t.pri, 'ten', t.tenant,
      'spec', t.spec, 'sk', t.skills, 'mr', t.max_retries, 'bo', t.delays, 'nb', '0', 'c', NOW, 'u', NOW }
    if t.pending > 0 then
      add_field(fields, 'dp', int(t.pending))
    end
    if #t.resolved > 0 then
      add_field(fields, 'deps', table.concat(t.resolved, ','))
    end
    add_field(fields, 'idem', t.idem)
    add_field(fields, 'rt', t.routing)
    add_field(fields, 'an', t.analysis)
    add_field(fields, 'par', t.parent)
    redis.call('HSET', k, unpack(fields))
    move(t.id, seq, nil, state)
    if t.idem_field then
      redis.call('HSET', P .. ':idem', t.idem_field, t.id)
    end
    for _, dep in ipairs(t.resolved) do
      redis.call('RPUSH', P .. ':rdeps:' .. dep, t.id)
      -- `hd`: someone depends on this task (finish skips the lookup otherwise).
      if not marked[dep] then
        redis.call('HSET', tkey(dep), 'hd', '1')
        marked[dep] = true
      end
    end
    for _, kv in ipairs(t.labels) do
      local lk = P .. ':label:' .. string.len(kv[1]) .. ':' .. kv[1] .. '=' .. kv[2]
      redis.call('ZADD', lk, seq, t.id)
    end
    if t.parent then
      redis.call('ZADD', P .. ':children:' .. t.parent, seq, t.id)
    end
    local data = '{"name":' .. t.name_json .. ',"priority":' .. t.pri .. ',"state":"' .. state .. '"}'
    emit(STREAM_QUEUE, 'task.submitted', t.id, nil, data)
    out[i] = { 'new', seq, state }
  elseif slots[i][1] == 'stored' then
    out[i] = slots[i]
  else
    out[i] = slots[i]
  end
end
if handoff_hub then
  local ids = {}
  for i, t in ipairs(tasks) do
    if slots[i][1] == 'new' then
      ids[#ids + 1] = jstr(t.id)
    end
  end
  if #ids > 0 then
    emit('nova.torch.hubs.handoff', 'tasks.handed_off', nil, nil,
      '{"hub":' .. jstr(handoff_hub) .. ',"tasks":[' .. table.concat(ids, ',') .. ']}')
  end
end
return { 'ok', out }
