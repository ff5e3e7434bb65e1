-- assign: leases queued tasks (see `redis/write.rs`).
--
-- ARGV[4] the number of grants, then per grant: task id, agent id and the
-- explanation JSON ('' when none). The explanation goes into the
-- `task.assigned` entry as its own field, `explanation`, not into `data`
-- (no concatenation of a kilobyte per grant in Lua).
-- Returns per grant {1, fence, attempt, name, spec JSON} or
-- {0, state|false} when refused.
local n = tonumber(ARGV[4])
local out = {}
for i = 1, n do
  local at = 5 + (i - 1) * 3
  local id, agent, expl = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local k = tkey(id)
  local r = redis.call('HMGET', k, 'st', 'seq', 'att', 'name', 'spec', 'pp', 'pm', 'pt', 'xe')
  if r[1] ~= 'queued' then
    out[i] = { 0, r[1] }
  else
    local fence = next_id('fence')
    local attempt = (tonumber(r[3]) or 0) + 1
    local data = '{"agent":"' .. agent .. '","attempt":' .. int(attempt) .. ',"fence":' .. int(fence) .. '}'
    if expl == '' then
      redis.call('HSET', k, 'st', 'assigned', 'ag', agent, 'f', int(fence), 'att', int(attempt), 'nb', '0', 'u', NOW)
      if r[6] or r[7] or r[8] or r[9] then
        redis.call('HDEL', k, 'pp', 'pm', 'pt', 'pl', 'xe')
      end
      emit(STREAM_ACTIVE, 'task.assigned', id, agent, data)
    else
      -- The event holds the explanation: its id goes in `xe`, written at once.
      local event = next_id('eid')
      redis.call('HSET', k, 'st', 'assigned', 'ag', agent, 'f', int(fence), 'att', int(attempt), 'nb', '0', 'u', NOW,
        'xe', int(event))
      if r[6] or r[7] or r[8] then
        redis.call('HDEL', k, 'pp', 'pm', 'pt', 'pl')
      end
      emit_explained(event, STREAM_ACTIVE, 'task.assigned', id, agent, data, expl)
    end
    move(id, r[2], 'queued', 'assigned')
    out[i] = { 1, fence, attempt, r[4], r[5] }
  end
end
return out
