-- start: marks leased tasks running (see `redis/write.rs`).
--
-- ARGV[4] the number of reports, then per report: task id, fence.
-- Returns per report {'ok'}, {'stale', fence, state} or {'missing'}.
local n = tonumber(ARGV[4])
local out = {}
for i = 1, n do
  local id, fence = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  local k = tkey(id)
  local r = redis.call('HMGET', k, 'st', 'f', 'ag')
  local state, current = r[1], r[2]
  if not state then
    out[i] = { 'missing' }
  elseif current == fence and state == 'assigned' then
    redis.call('HSET', k, 'st', 'running', 'u', NOW)
    move(id, nil, 'assigned', 'running')
    local agent = r[3] or nil
    emit(STREAM_ACTIVE, 'task.started', id, agent, '{"fence":' .. fence .. '}')
    out[i] = { 'ok' }
  elseif current == fence and state == 'running' then
    -- Already running under this fence: a resent start is harmless.
    out[i] = { 'ok' }
  else
    out[i] = { 'stale', current, state }
  end
end
return out
