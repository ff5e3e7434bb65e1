-- finish: records attempt ends (agent reports and lease expiries), each at
-- most once per fence, with retry/backoff, death, and the effects on
-- dependents (see `redis/write.rs`).
--
-- ARGV[4] the number of reports, then per report five values:
--   task id, fence, reporting agent (opt; none for an expiry), what
--   follows, outcome JSON;
-- where "what follows" is a string of flags: `F` (a failure) adds five
-- values: reason (opt), outcome kind name, '1' when fatal, event kind
-- when requeued, cause for `task.dead`; `L` (logs) adds three: stdout,
-- stderr, '1' when truncated. A success without logs is just the five.
-- Returns per report {'missing'}, {'dup'}, {'stale', fence, state},
-- `'succeeded'` (recorded, nothing else changed: the common case, kept
-- short) or {'ok', state, requeued row|false, {released rows},
-- {cancelled ids}}.
local n = tonumber(ARGV[4])

-- One fewer pending dependency for each blocked dependent of `dep`; those
-- reaching zero become queued and are returned as queued rows.
local function release(dep)
  local out = {}
  local dependents = redis.call('LRANGE', P .. ':rdeps:' .. dep, 0, -1)
  for _, id in ipairs(dependents) do
    local k = tkey(id)
    local r = redis.call('HMGET', k, 'st', 'dp', 'seq')
    if r[1] == 'blocked' then
      local pending = tonumber(r[2]) or 0
      if pending > 1 then
        redis.call('HSET', k, 'dp', int(pending - 1), 'u', NOW)
      else
        redis.call('HSET', k, 'st', 'queued', 'dp', '0', 'nb', '0', 'u', NOW)
        move(id, r[3], 'blocked', 'queued')
        emit(STREAM_QUEUE, 'task.ready', id, nil, '{"released_by":"' .. dep .. '"}')
        out[#out + 1] = queued_row(id)
      end
    end
  end
  return out
end

-- Adds `agent` to the JSON array of failed agents unless it is there.
local function add_failed(list, agent)
  if not agent then
    return list
  end
  local quoted = '"' .. agent .. '"'
  if not list or list == '' then
    return '[' .. quoted .. ']'
  end
  if string.find(list, quoted, 1, true) then
    return list
  end
  return string.sub(list, 1, -2) .. ',' .. quoted .. ']'
end

local function count_failed(list)
  local _, commas = string.gsub(list, ',', ',')
  return commas + 1
end

local function dead_reason(agents, last)
  if agents == 0 then
    return last
  elseif agents == 1 then
    return 'failed on 1 agent: ' .. last
  end
  return 'failed on ' .. agents .. ' agents: ' .. last
end

-- Retry delay before the next attempt, for the `budget`th failure.
local function delay(table_text, budget)
  local delays = split(table_text)
  if #delays == 0 then
    return 0
  end
  return tonumber(delays[math.min(budget, #delays)]) or 0
end

local out = {}
local at = 5
for i = 1, n do
  local id, fence, reporter = ARGV[at], ARGV[at + 1], opt(ARGV[at + 2])
  local flags, outcome = ARGV[at + 3], ARGV[at + 4]
  at = at + 5
  local success, reason, kind_name, fatal, ev_kind, cause = true, nil, nil, false, nil, nil
  if string.find(flags, 'F', 1, true) then
    success = false
    reason, kind_name, fatal = opt(ARGV[at]), ARGV[at + 1], ARGV[at + 2] == '1'
    ev_kind, cause = ARGV[at + 3], ARGV[at + 4]
    at = at + 5
  end
  local logs_at = nil
  if string.find(flags, 'L', 1, true) then
    logs_at = at
    at = at + 3
  end
  local k = tkey(id)
  local r = redis.call('HMGET', k, 'st', 'f', 'ff', 'ag', 'att', 'seq', 'hd')
  local state, current, finished, holder = r[1], r[2], r[3], r[4]
  if not state then
    out[i] = { 'missing' }
  elseif fence ~= '0' and fence == finished then
    out[i] = { 'dup' }
  elseif not (is_leased(state) and current == fence and (not reporter or reporter == holder)) then
    out[i] = { 'stale', current, state }
  else
    local attempt, seq = r[5], r[6]
    local agent = reporter or (holder or nil)
    if logs_at then
      redis.call('HSET', P .. ':log:' .. id, 'attempt', attempt, 'stdout', ARGV[logs_at],
        'stderr', ARGV[logs_at + 1], 'truncated', ARGV[logs_at + 2])
    end
    local agent_json = 'null'
    if agent then
      agent_json = '"' .. agent .. '"'
    end
    if success then
      -- `ag` and an old `why` stay: readers show the holder only while
      -- leased and the reason only when dead or cancelled (no HDEL); `nb`
      -- is already 0 for a leased task.
      if agent then
        redis.call('HSET', k, 'st', 'succeeded', 'ff', current, 'out', outcome, 'u', NOW, 'la', agent)
      else
        redis.call('HSET', k, 'st', 'succeeded', 'ff', current, 'out', outcome, 'u', NOW)
      end
      move(id, seq, state, 'succeeded')
      local data = '{"agent":' .. agent_json .. ',"attempt":' .. attempt .. ',"fence":' .. current .. '}'
      emit(STREAM_COMPLETED, 'task.succeeded', id, agent, data)
      if r[7] then
        out[i] = { 'ok', 'succeeded', false, release(id), {} }
      else
        out[i] = 'succeeded'
      end
    else
      local common = { 'ff', current, 'out', outcome, 'u', NOW }
      if agent then
        common[#common + 1] = 'la'
        common[#common + 1] = agent
      end
      local effect = { 'ok', '', false, {}, {} }
      -- The fields only a failure needs.
      local more = redis.call('HMGET', k, 'ret', 'mr', 'bo', 'fa', 'name')
      local retries, max_retries = tonumber(more[1]) or 0, tonumber(more[2]) or 0
      local failed, name = more[4], more[5]
      reason = reason or ('attempt ' .. attempt .. ' ' .. kind_name)
      local budget = retries + 1
      local new_failed = add_failed(failed, agent)
      if new_failed then
        common[#common + 1] = 'fa'
        common[#common + 1] = new_failed
      end
      if fatal or budget > max_retries then
        local agents = 0
        if new_failed then
          agents = count_failed(new_failed)
        end
        local why = dead_reason(agents, reason)
        redis.call('HSET', k, 'st', 'dead', 'nb', '0', 'why', why, unpack(common))
        move(id, seq, state, 'dead')
        effect[2] = 'dead'
        local data = '{"attempt":' .. attempt .. ',"cause":"' .. cause .. '","failed_agents":'
          .. (new_failed or '[]') .. ',"fence":' .. current .. ',"reason":' .. jstr(why) .. '}'
        emit(STREAM_FAILED, 'task.dead', id, agent, data)
        local cancelled, revoked = {}, {}
        cascade(id, 'dependency ' .. name .. ' (' .. id .. ') is dead', cancelled, revoked)
        effect[5] = cancelled
      else
        local not_before = int(tonumber(NOW) + delay(more[3], budget))
        redis.call('HSET', k, 'st', 'queued', 'nb', not_before, 'ret', int(budget), unpack(common))
        move(id, seq, state, 'queued')
        effect[2] = 'queued'
        local data = '{"attempt":' .. attempt .. ',"fence":' .. current .. ',"reason":' .. jstr(reason)
          .. ',"retry_at_ms":' .. not_before .. ',"will_retry":true}'
        emit(STREAM_FAILED, ev_kind, id, agent, data)
        effect[3] = queued_row(id)
      end
      out[i] = effect
    end
  end
end
return out
