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
--
-- Tasks are read from their arguments in place (BASE[i] is task i's first
-- argument): no table per task, which was most of this script's cost.
local n = tonumber(ARGV[4])
local BASE = {}
local at = 5
local any_idem, any_deps = false, false
for i = 1, n do
  BASE[i] = at
  if ARGV[at + 5] ~= '' then
    any_idem = true
  end
  local ndeps = tonumber(ARGV[at + 13])
  if ndeps > 0 then
    any_deps = true
  end
  at = at + 14 + ndeps
  at = at + 1 + 2 * tonumber(ARGV[at])
end
local handoff_hub = ARGV[at]
if handoff_hub == '' then
  handoff_hub = nil
end

-- Fixed offsets within a task's arguments.
local ID, NAME, NAME_JSON, PRI, TENANT, IDEM, SPEC, SKILLS = 0, 1, 2, 3, 4, 5, 6, 7
local ROUTING, ANALYSIS, PARENT, MAX_RETRIES, DELAYS, NDEPS = 8, 9, 10, 11, 12, 13

local function arg(i, k)
  return ARGV[BASE[i] + k]
end

local function label(i)
  return 'task ' .. arg(i, NAME) .. ' (' .. arg(i, ID) .. ')'
end

-- Pass 1: idempotency. A duplicate's minted id is an alias for the task it
-- duplicates, so later tasks of the batch may depend on it. SLOT[i] is nil
-- for a new task, else its answer.
local alias = {}
local SLOT = {}
local idem_field = {}
local fresh = {}
if any_idem then
  local keys = {}
  for i = 1, n do
    local idem = opt(arg(i, IDEM))
    if idem then
      local tenant = arg(i, TENANT)
      local field = string.len(tenant) .. ':' .. tenant .. idem
      local j = keys[field]
      if j then
        alias[arg(i, ID)] = arg(j, ID)
        SLOT[i] = { 'earlier', j }
      else
        local dup = redis.call('HGET', P .. ':idem', field)
        if dup then
          local row = redis.call('HMGET', tkey(dup), 'name', 'st')
          if not row[1] then
            return { 'corrupt', 'idempotency key of ' .. label(i) .. ' names missing task ' .. dup }
          end
          alias[arg(i, ID)] = dup
          SLOT[i] = { 'stored', dup, row[1], row[2] }
        else
          keys[field] = i
          idem_field[i] = field
        end
      end
    end
  end
end
for i = 1, n do
  if not SLOT[i] then
    local id = arg(i, ID)
    if fresh[id] then
      return { 'invalid', label(i) .. ' appears twice in the batch' }
    end
    fresh[id] = true
  end
end

-- Pass 2: check every dependency before writing anything. RESOLVED[i] and
-- PENDING[i] only for new tasks with dependencies.
local RESOLVED, PENDING = {}, {}
if any_deps then
  for i = 1, n do
    local ndeps = tonumber(arg(i, NDEPS))
    if not SLOT[i] and ndeps > 0 then
      local id = arg(i, ID)
      local deps = {}
      local seen = {}
      local pending = 0
      for d = 1, ndeps do
        local dep = arg(i, NDEPS + d)
        dep = alias[dep] or dep
        if dep == id then
          return { 'invalid', label(i) .. ' depends on itself' }
        end
        if not seen[dep] then
          seen[dep] = true
          deps[#deps + 1] = dep
          if fresh[dep] then
            pending = pending + 1
          else
            local row = redis.call('HMGET', tkey(dep), 'name', 'st')
            if not row[1] then
              return { 'invalid', label(i) .. ': dependency ' .. dep .. ' does not exist' }
            end
            local st = row[2]
            if st == 'dead' or st == 'cancelled' then
              return { 'invalid', label(i) .. ': dependency ' .. row[1] .. ' (' .. dep .. ') is ' .. st }
            elseif st ~= 'succeeded' then
              pending = pending + 1
            end
          end
        end
      end
      RESOLVED[i] = deps
      PENDING[i] = pending
    end
  end
end

-- Pass 3: ids must be new.
for i = 1, n do
  if not SLOT[i] and redis.call('EXISTS', tkey(arg(i, ID))) == 1 then
    return { 'invalid', label(i) .. ': a task with this id already exists' }
  end
end

-- Pass 4: write.
local out = {}
local marked = {}
local handed = {}
for i = 1, n do
  if SLOT[i] then
    out[i] = SLOT[i]
  else
    local b = BASE[i]
    local id, pri = ARGV[b], ARGV[b + PRI]
    local pending = PENDING[i] or 0
    local state = 'queued'
    if pending > 0 then
      state = 'blocked'
    end
    local seq = next_id('seq')
    local k = tkey(id)
    local routing, analysis = opt(ARGV[b + ROUTING]), opt(ARGV[b + ANALYSIS])
    -- Fields that start at zero or empty (`att ret f ff dp`, ...) are
    -- left out: readers take a missing one as zero or none. The hub always
    -- sends routing and analysis, so that case is one HSET.
    if routing and analysis then
      redis.call('HSET', k, 'seq', int(seq), 'name', ARGV[b + NAME], 'st', state, 'pri', pri,
        'ten', ARGV[b + TENANT], 'spec', ARGV[b + SPEC], 'sk', ARGV[b + SKILLS],
        'mr', ARGV[b + MAX_RETRIES], 'bo', ARGV[b + DELAYS], 'nb', '0', 'c', NOW, 'u', NOW,
        'rt', routing, 'an', analysis)
    else
      redis.call('HSET', k, 'seq', int(seq), 'name', ARGV[b + NAME], 'st', state, 'pri', pri,
        'ten', ARGV[b + TENANT], 'spec', ARGV[b + SPEC], 'sk', ARGV[b + SKILLS],
        'mr', ARGV[b + MAX_RETRIES], 'bo', ARGV[b + DELAYS], 'nb', '0', 'c', NOW, 'u', NOW)
      if routing then
        redis.call('HSET', k, 'rt', routing)
      end
      if analysis then
        redis.call('HSET', k, 'an', analysis)
      end
    end
    local idem, parent, resolved = opt(ARGV[b + IDEM]), opt(ARGV[b + PARENT]), RESOLVED[i]
    if pending > 0 or resolved or idem or parent then
      local fields = {}
      if pending > 0 then
        fields[#fields + 1] = 'dp'
        fields[#fields + 1] = int(pending)
      end
      if resolved and #resolved > 0 then
        fields[#fields + 1] = 'deps'
        fields[#fields + 1] = table.concat(resolved, ',')
      end
      if idem then
        fields[#fields + 1] = 'idem'
        fields[#fields + 1] = idem
      end
      if parent then
        fields[#fields + 1] = 'par'
        fields[#fields + 1] = parent
      end
      if #fields > 0 then
        redis.call('HSET', k, unpack(fields))
      end
    end
    move(id, seq, nil, state)
    if idem_field[i] then
      redis.call('HSET', P .. ':idem', idem_field[i], id)
    end
    if resolved then
      for _, dep in ipairs(resolved) do
        redis.call('RPUSH', P .. ':rdeps:' .. dep, id)
        -- `hd`: someone depends on this task (finish skips the lookup otherwise).
        if not marked[dep] then
          redis.call('HSET', tkey(dep), 'hd', '1')
          marked[dep] = true
        end
      end
    end
    local ndeps = tonumber(ARGV[b + NDEPS])
    local lat = b + NDEPS + ndeps + 1
    for l = 1, tonumber(ARGV[lat]) do
      local key, value = ARGV[lat + 2 * l - 1], ARGV[lat + 2 * l]
      redis.call('ZADD', P .. ':label:' .. string.len(key) .. ':' .. key .. '=' .. value, seq, id)
    end
    if parent then
      redis.call('ZADD', P .. ':children:' .. parent, seq, id)
    end
    local data = '{"name":' .. ARGV[b + NAME_JSON] .. ',"priority":' .. pri .. ',"state":"' .. state .. '"}'
    emit(STREAM_QUEUE, 'task.submitted', id, nil, data)
    out[i] = { 'new', seq, state }
    if handoff_hub then
      handed[#handed + 1] = jstr(id)
    end
  end
end
if handoff_hub and #handed > 0 then
  emit('nova.torch.hubs.handoff', 'tasks.handed_off', nil, nil,
    '{"hub":' .. jstr(handoff_hub) .. ',"tasks":[' .. table.concat(handed, ',') .. ']}')
end
return { 'ok', out }
