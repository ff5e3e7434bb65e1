-- progress: records a progress report if the fence is current.
--
-- ARGV[4] task id, ARGV[5] fence, ARGV[6] percent (text), ARGV[7] message
-- (opt), ARGV[8] the event data (JSON), ARGV[9] the agent CLI's activity and
-- waiting (JSON, opt).
-- Returns {'ok'}, {'stale', fence, state} or {'missing'}.
local id, fence, percent, message, data = ARGV[4], ARGV[5], ARGV[6], opt(ARGV[7]), ARGV[8]
local live = opt(ARGV[9])
local k = tkey(id)
local r = redis.call('HMGET', k, 'st', 'f', 'seq', 'ag')
local state, current = r[1], r[2]
if not state then
  return { 'missing' }
end
if current ~= fence or not is_leased(state) then
  return { 'stale', current, state }
end
redis.call('HSET', k, 'st', 'running', 'pp', percent, 'pt', NOW, 'u', NOW)
if message then
  redis.call('HSET', k, 'pm', message)
else
  redis.call('HDEL', k, 'pm')
end
if live then
  redis.call('HSET', k, 'pl', live)
else
  redis.call('HDEL', k, 'pl')
end
move(id, r[3], state, 'running')
local agent = r[4] or nil
emit(STREAM_ACTIVE, 'task.progress', id, agent, data)
return { 'ok' }
