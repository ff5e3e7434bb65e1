-- assign: leases queued tasks (see `redis/write.rs`).
--
-- ARGV[4] the number of grants, then per grant: task id, agent id, lease
-- expiry (ms), the tail of the `task.assigned` event data (`}` or
-- `,"explanation":<json>}`), and '1' when that tail holds an explanation.
-- Returns per grant {1, fence, attempt, name, spec JSON} or
-- {0, state|false} when refused.
local n = tonumber(ARGV[4])
local out = {}
for i = 1, n do
  local at = 5 + (i - 1) * 5
  local id, agent, expires, tail, explained = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local k = tkey(id)
  local r = redis.call('HMGET', k, 'st', 'seq')
  if r[1] ~= 'queued' then
    out[i] = { 0, r[1] }
  else
    local fence = redis.call('INCR', P .. ':fence')
    local attempt = redis.call('HINCRBY', k, 'att', 1)
    redis.call('HSET', k, 'st', 'assigned', 'ag', agent, 'f', int(fence), 'lx', expires, 'nb', '0', 'u', NOW)
    redis.call('HDEL', k, 'pp', 'pm', 'pt', 'xe')
    move(id, r[2], 'queued', 'assigned')
    local data = '{"agent":"' .. agent .. '","attempt":' .. int(attempt) .. ',"fence":' .. int(fence) .. tail
    local event = emit(STREAM_ACTIVE, 'task.assigned', id, agent, data)
    if explained == '1' then
      redis.call('HSET', k, 'xe', int(event))
    end
    local row = redis.call('HMGET', k, 'name', 'spec')
    out[i] = { 1, fence, attempt, row[1], row[2] }
  end
end
return out
