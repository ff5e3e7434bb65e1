-- cancel: cancels an unfinished task and, transitively, its unfinished
-- dependents (see `redis/write.rs`).
--
-- ARGV[4] task id, ARGV[5] reason.
-- Returns {'missing'}, {'conflict', state} or
-- {'ok', {cancelled ids}, {{task, agent, fence} revoked}}.
local id, reason = ARGV[4], ARGV[5]
local r = redis.call('HMGET', tkey(id), 'st', 'name')
local state, name = r[1], r[2]
if not state then
  return { 'missing' }
end
if is_terminal(state) then
  return { 'conflict', state }
end
local cancelled, revoked = {}, {}
cancel_one(id, reason, cancelled, revoked)
cascade(id, 'dependency ' .. name .. ' (' .. id .. ') was cancelled', cancelled, revoked)
return { 'ok', cancelled, revoked }
