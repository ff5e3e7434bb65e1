-- retry: requeues a dead or cancelled task with a fresh retry budget
-- (see `redis/write.rs`).
--
-- ARGV[4] task id.
-- Returns {'missing'}, {'conflict', state, message} or
-- {'ok', new state, queued row|false}.
local id = ARGV[4]
local k = tkey(id)
local r = redis.call('HMGET', k, 'st', 'deps', 'seq')
local state = r[1]
if not state then
  return { 'missing' }
end
if state ~= 'dead' and state ~= 'cancelled' then
  return { 'conflict', state, 'only dead or cancelled tasks can be retried' }
end
local pending = 0
for _, dep in ipairs(split(r[2])) do
  local d = redis.call('HMGET', tkey(dep), 'name', 'st')
  if not d[1] then
    return { 'conflict', state, 'dependency ' .. dep .. ' no longer exists' }
  end
  if d[2] == 'dead' or d[2] == 'cancelled' then
    return { 'conflict', state, 'dependency ' .. d[1] .. ' (' .. dep .. ') is ' .. d[2] .. '; retry it first' }
  elseif d[2] ~= 'succeeded' then
    pending = pending + 1
  end
end
local new_state = 'queued'
if pending > 0 then
  new_state = 'blocked'
end
-- `fa` (failed agents) is kept: routing still avoids them while others can.
redis.call('HSET', k, 'st', new_state, 'ret', '0', 'dp', int(pending), 'nb', '0', 'u', NOW)
redis.call('HDEL', k, 'why', 'ag')
move(id, r[3], state, new_state)
emit(STREAM_QUEUE, 'task.retried', id, nil, '{"state":"' .. new_state .. '","was":"' .. state .. '"}')
local row = false
if new_state == 'queued' then
  row = queued_row(id)
end
return { 'ok', new_state, row }
