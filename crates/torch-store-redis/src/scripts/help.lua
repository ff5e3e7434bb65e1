-- help: help requests (see `coord.rs`). A request is the hash
-- `P:help:<id>`: `rec` (its fixed part, JSON), `state`, `expires_ms`, and
-- once it leaves `open`: `closed_ms`, `accepted_by`, `accepted_agent` or
-- `helper`. `P:helps` indexes every request and `P:helps:open` the open
-- ones, both by creation time. The accept checks and changes the state in
-- one step: the first accept wins.
--
-- ARGV[4] the operation, then
--   put: id, record, created, expires                -> 1
--   accept: id, by, agent ('' for none)              -> 'ok', 'closed', 'late' or 'missing'
--   close: id, state, helper ('' for none)           -> 1, or 0 when not open
local op = ARGV[4]
local INDEX = P .. ':helps'
local OPEN = P .. ':helps:open'
local function hkey(id)
  return P .. ':help:' .. id
end

if op == 'put' then
  local id, rec, created, expires = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  redis.call('HSET', hkey(id), 'rec', rec, 'state', 'open', 'expires_ms', expires)
  redis.call('ZADD', INDEX, created, id)
  redis.call('ZADD', OPEN, created, id)
  return 1
elseif op == 'accept' then
  local id, by, agent = ARGV[5], ARGV[6], ARGV[7]
  local k = hkey(id)
  if redis.call('EXISTS', k) == 0 then
    return 'missing'
  end
  if redis.call('HGET', k, 'state') ~= 'open' then
    return 'closed'
  end
  if tonumber(redis.call('HGET', k, 'expires_ms')) <= tonumber(NOW) then
    return 'late'
  end
  redis.call('HSET', k, 'state', 'accepted', 'accepted_by', by, 'closed_ms', NOW)
  if agent ~= '' then
    redis.call('HSET', k, 'accepted_agent', agent)
  end
  redis.call('ZREM', OPEN, id)
  return 'ok'
elseif op == 'close' then
  local id, state, helper = ARGV[5], ARGV[6], ARGV[7]
  local k = hkey(id)
  if redis.call('HGET', k, 'state') ~= 'open' then
    return 0
  end
  redis.call('HSET', k, 'state', state, 'closed_ms', NOW)
  if helper ~= '' then
    redis.call('HSET', k, 'helper', helper)
  end
  redis.call('ZREM', OPEN, id)
  return 1
end
return redis.error_reply('unknown help operation ' .. tostring(op))
