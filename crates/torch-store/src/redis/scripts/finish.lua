-- finish: records attempt ends (agent reports and lease expiries), each at
-- most once per fence, with retry/backoff, death, and the effects on
-- dependents (see `redis/write.rs`).
--
-- ARGV[4] the number of reports, then 14 values per report:
--   task id, fence, reporting agent (opt; none for an expiry),
--   '1' for success, reason (opt), outcome kind name, '1' when fatal,
--   event kind when requeued, cause for `task.dead`, outcome JSON,
--   '1' when logs follow, stdout, stderr, '1' when truncated.
-- Returns per report {'missing'}, {'dup'}, {'stale', fence, state} or
-- {'ok', state, requeued row|false, {released rows}, {cancelled ids}}.
local n = tonumber(ARGV[4])
local PER = 14

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
for i = 1, n do
  local at = 5 + (i - 1) * PER
  local id, fence, reporter = ARGV[at], ARGV[at + 1], opt(ARGV[at + 2])
  local success = ARGV[at + 3] == '1'
  local reason, kind_name, fatal = opt(ARGV[at + 4]), ARGV[at + 5], ARGV[at + 6] == '1'
  local ev_kind, cause, outcome = ARGV[at + 7], ARGV[at + 8], ARGV[at + 9]
  local has_logs = ARGV[at + 10] == '1'
  local k = tkey(id)
  local r = redis.call('HMGET', k, 'st', 'f', 'ff', 'ag', 'att', 'ret', 'mr', 'bo', 'fa', 'seq', 'name', 'hd')
  local state, current, finished, holder = r[1], r[2], r[3], r[4]
  if not state then
    out[i] = { 'missing' }
  elseif fence ~= '0' and fence == finished then
    out[i] = { 'dup' }
  elseif not (is_leased(state) and current == fence and (not reporter or reporter == holder)) then
    out[i] = { 'stale', current, state }
  else
    local attempt, retries, max_retries = r[5], tonumber(r[6]) or 0, tonumber(r[7]) or 0
    local failed, seq, name = r[9], r[10], r[11]
    local agent = reporter or (holder or nil)
    if has_logs then
      redis.call('HSET', P .. ':log:' .. id, 'attempt', attempt, 'stdout', ARGV[at + 11],
        'stderr', ARGV[at + 12], 'truncated', ARGV[at + 13])
    end
    local common = { 'ff', current, 'out', outcome, 'u', NOW }
    if agent then
      common[#common + 1] = 'la'
      common[#common + 1] = agent
    end
    local agent_json = 'null'
    if agent then
      agent_json = '"' .. agent .. '"'
    end
    local effect = { 'ok', '', false, {}, {} }
    if success then
      redis.call('HSET', k, 'st', 'succeeded', 'nb', '0', unpack(common))
      redis.call('HDEL', k, 'ag', 'why')
      move(id, seq, state, 'succeeded')
      effect[2] = 'succeeded'
      local data = '{"agent":' .. agent_json .. ',"attempt":' .. attempt .. ',"fence":' .. current .. '}'
      emit(STREAM_COMPLETED, 'task.succeeded', id, agent, data)
      if r[12] then
        effect[4] = release(id)
      end
    else
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
        redis.call('HDEL', k, 'ag')
        move(id, seq, state, 'dead')
        effect[2] = 'dead'
        local data = '{"attempt":' .. attempt .. ',"cause":"' .. cause .. '","failed_agents":'
          .. (new_failed or '[]') .. ',"fence":' .. current .. ',"reason":' .. jstr(why) .. '}'
        emit(STREAM_FAILED, 'task.dead', id, agent, data)
        local cancelled, revoked = {}, {}
        cascade(id, 'dependency ' .. name .. ' (' .. id .. ') is dead', cancelled, revoked)
        effect[5] = cancelled
      else
        local not_before = int(tonumber(NOW) + delay(r[8], budget))
        redis.call('HSET', k, 'st', 'queued', 'nb', not_before, 'ret', int(budget), unpack(common))
        redis.call('HDEL', k, 'ag', 'why')
        move(id, seq, state, 'queued')
        effect[2] = 'queued'
        local data = '{"attempt":' .. attempt .. ',"fence":' .. current .. ',"reason":' .. jstr(reason)
          .. ',"retry_at_ms":' .. not_before .. ',"will_retry":true}'
        emit(STREAM_FAILED, ev_kind, id, agent, data)
        effect[3] = queued_row(id)
      end
    end
    out[i] = effect
  end
end
return out
