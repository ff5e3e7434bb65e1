-- event: appends one event, optionally writing an agent record with it
-- (see `redis/write.rs`).
--
-- ARGV[4] stream, ARGV[5] kind, ARGV[6] task (opt), ARGV[7] agent (opt),
-- ARGV[8] data, ARGV[9] agent record: '' none, 'joined' or 'left', then
-- field, value pairs for the agent's hash.
local stream, kind, task, agent, data, record = ARGV[4], ARGV[5], opt(ARGV[6]), opt(ARGV[7]), ARGV[8], ARGV[9]
if record ~= '' and agent then
  local k = P .. ':agent:' .. agent
  local fields = {}
  for i = 10, #ARGV do
    fields[#fields + 1] = ARGV[i]
  end
  if record == 'joined' then
    redis.call('DEL', k)
    redis.call('HSET', k, unpack(fields))
  elseif redis.call('EXISTS', k) == 1 then
    redis.call('HSET', k, unpack(fields))
  end
end
emit(stream, kind, task, agent, data)
return 1
