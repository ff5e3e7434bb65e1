#!lua flags=no-writes
-- read: consistent multi-key reads in one round trip (see `redis/read.rs`).
-- Declared `no-writes`, so it also runs while Redis is out of memory.
--
-- ARGV[1] key prefix with its hash tag, ARGV[2] the operation:
--   'tasks', ids...: one row per id (false when missing).
--   'list', limit, before seq (opt), parent (opt), label key (opt),
--     label value, states...: the page (rows, newest first) and the count
--     of every state.
--   'load': queued rows, leases, backlog.
--   'events', first entry id, limit, stream filters...: per matching
--     stream, {name, entries} from XRANGE.
-- Optional arguments are '' for none, else the value after a 1-byte mark.
local P = ARGV[1]
local op = ARGV[2]
local STATES = { 'blocked', 'queued', 'assigned', 'running', 'succeeded', 'dead', 'cancelled' }

local function opt(a)
  if a == '' then
    return nil
  end
  return string.sub(a, 2)
end

local function tkey(id)
  return P .. ':t:' .. id
end

-- {id, HGETALL, explanation|false}: the `explanation` field of the
-- assignment event holding it, or for entries written before that field
-- existed, the event's `data` (the explanation is inside).
local function row(id)
  local fields = redis.call('HGETALL', tkey(id))
  if #fields == 0 then
    return false
  end
  local explanation = false
  for i = 1, #fields, 2 do
    if fields[i] == 'xe' then
      local eid = '0-' .. fields[i + 1]
      local entries = redis.call('XRANGE', P .. ':stream:nova.torch.tasks.active', eid, eid)
      if #entries == 1 then
        local kv = entries[1][2]
        local data, own = false, false
        for j = 1, #kv, 2 do
          if kv[j] == 'data' then
            data = kv[j + 1]
          elseif kv[j] == 'explanation' then
            own = kv[j + 1]
          end
        end
        if own then
          explanation = '=' .. own
        elseif data then
          explanation = 'd' .. data
        end
      end
    end
  end
  return { id, fields, explanation }
end

if op == 'tasks' then
  local out = {}
  for i = 3, #ARGV do
    out[#out + 1] = row(ARGV[i])
  end
  return out
elseif op == 'list' then
  local limit = tonumber(ARGV[3])
  local before, parent, label_key, label_value = opt(ARGV[4]), opt(ARGV[5]), opt(ARGV[6]), ARGV[7]
  local want = {}
  local nstates = 0
  for i = 8, #ARGV do
    want[ARGV[i]] = true
    nstates = nstates + 1
  end
  local max = '+inf'
  if before then
    max = '(' .. before
  end
  local ids = {}
  local label_set = nil
  if label_key then
    label_set = P .. ':label:' .. string.len(label_key) .. ':' .. label_key .. '=' .. label_value
  end
  -- Where to look: the per-state sets (assigned and running tasks share
  -- `leased`, so asking for just one of them filters it by state), or the
  -- label or children set, filtered by state (and parent) on the way.
  local sources = {}
  local filtered = nstates > 0
  if label_set or parent then
    sources[1] = label_set or (P .. ':children:' .. parent)
  else
    filtered = false
    local leased = 0
    for _, s in ipairs(STATES) do
      if nstates == 0 or want[s] then
        if s == 'assigned' or s == 'running' then
          leased = leased + 1
        else
          sources[#sources + 1] = P .. ':state:' .. s
        end
      end
    end
    if leased > 0 then
      sources[#sources + 1] = P .. ':state:leased'
      filtered = leased == 1 and nstates > 0
    end
  end
  local merged = {}
  for _, source in ipairs(sources) do
    -- Newest first, `limit` matching tasks at most from each source.
    local from = max
    local found = 0
    local chunk = limit
    if filtered or parent then
      chunk = math.max(limit, 100)
    end
    while found < limit do
      local got = redis.call('ZREVRANGEBYSCORE', source, from, '-inf', 'WITHSCORES', 'LIMIT', 0, chunk)
      if #got == 0 then
        break
      end
      for i = 1, #got, 2 do
        local id = got[i]
        local ok = true
        if filtered or (parent and label_set) then
          local r = redis.call('HMGET', tkey(id), 'st', 'par')
          if filtered and not want[r[1]] then
            ok = false
          end
          if parent and label_set and r[2] ~= parent then
            ok = false
          end
        end
        if ok and found < limit then
          found = found + 1
          merged[#merged + 1] = { id, tonumber(got[i + 1]) }
        end
      end
      if #got < 2 * chunk then
        break
      end
      from = '(' .. got[#got]
    end
  end
  table.sort(merged, function(a, b) return a[2] > b[2] end)
  for i = 1, math.min(limit, #merged) do
    ids[i] = merged[i][1]
  end
  local rows = {}
  for i, id in ipairs(ids) do
    rows[i] = row(id)
  end
  local counts = {}
  for i, s in ipairs(STATES) do
    if s == 'assigned' or s == 'running' then
      local running = tonumber(redis.call('GET', P .. ':running')) or 0
      if s == 'assigned' then
        counts[i] = { s, redis.call('ZCARD', P .. ':state:leased') - running }
      else
        counts[i] = { s, running }
      end
    else
      counts[i] = { s, redis.call('ZCARD', P .. ':state:' .. s) }
    end
  end
  return { rows, counts }
elseif op == 'load' then
  local queued = {}
  for i, id in ipairs(redis.call('ZRANGE', P .. ':state:queued', 0, -1)) do
    local r = redis.call('HMGET', tkey(id), 'pri', 'seq', 'nb', 'sk', 'ten', 'rt', 'fa')
    queued[i] = { id, r[1], r[2], r[3], r[4], r[5], r[6], r[7] }
  end
  local leased = {}
  for i, id in ipairs(redis.call('ZRANGE', P .. ':state:leased', 0, -1)) do
    local r = redis.call('HMGET', tkey(id), 'ag', 'f', 'att')
    leased[i] = { id, r[1], r[2], r[3] }
  end
  local backlog = 0
  for _, s in ipairs({ 'blocked', 'queued', 'leased' }) do
    backlog = backlog + redis.call('ZCARD', P .. ':state:' .. s)
  end
  return { queued, leased, backlog }
elseif op == 'events' then
  local first, limit = ARGV[3], tonumber(ARGV[4])
  local filters = {}
  for i = 5, #ARGV do
    filters[#filters + 1] = ARGV[i]
  end
  local out = {}
  for _, name in ipairs(redis.call('SMEMBERS', P .. ':streams')) do
    local match = #filters == 0
    for _, f in ipairs(filters) do
      if string.sub(f, -1) == '.' then
        if string.sub(name, 1, string.len(f)) == f then
          match = true
        end
      elseif name == f then
        match = true
      end
    end
    if match then
      local entries = redis.call('XRANGE', P .. ':stream:' .. name, first, '+', 'COUNT', limit)
      if #entries > 0 then
        out[#out + 1] = { name, entries }
      end
    end
  end
  return out
end
return redis.error_reply('unknown read operation ' .. tostring(op))
