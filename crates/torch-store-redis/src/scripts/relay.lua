-- relay: messages the hub keeps for agents it could not reach (see
-- `redis/relay.rs`). The envelope of message <id> is in the hash
-- `P:relay:m` (id -> envelope); `P:relay:meta` holds id -> to, from,
-- urgent ('1'/'0') and expiry, tab-separated. Each recipient has a sorted
-- set `P:relay:to:<agent>` of its ids, scored (urgent ? 0 : 2^50) + seq so
-- urgent messages come first, then the order they were kept; `P:relay:exp`
-- scores every id by its expiry.
--
-- ARGV[4] the operation, then:
--   put: id, to, from, urgent, expires_ms, envelope, cap
--        -> 'stored' | 'duplicate' | 'full'
--   pending: to, limit -> {id, meta, envelope, ...}
--   remove: to, ids... -> number removed
--   expire: now, limit -> {id, meta, envelope, ...} (removed)
local op = ARGV[4]
local M, META, EXP = P .. ':relay:m', P .. ':relay:meta', P .. ':relay:exp'
local function inbox(to) return P .. ':relay:to:' .. to end

local function drop(id, to)
  redis.call('HDEL', M, id)
  redis.call('HDEL', META, id)
  redis.call('ZREM', EXP, id)
  redis.call('ZREM', inbox(to), id)
end

local function rows(ids)
  local out = {}
  for _, id in ipairs(ids) do
    local meta = redis.call('HGET', META, id)
    local env = redis.call('HGET', M, id)
    if meta and env then
      out[#out + 1] = id
      out[#out + 1] = meta
      out[#out + 1] = env
    end
  end
  return out
end

if op == 'put' then
  local id, to, from, urgent, expires, env, cap =
    ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
  if redis.call('HEXISTS', M, id) == 1 then return 'duplicate' end
  if redis.call('ZCARD', inbox(to)) >= cap then return 'full' end
  local seq = redis.call('INCR', P .. ':relay:seq')
  local score = seq
  if urgent ~= '1' then score = seq + 1125899906842624 end
  redis.call('HSET', M, id, env)
  redis.call('HSET', META, id, to .. '\t' .. from .. '\t' .. urgent .. '\t' .. expires)
  redis.call('ZADD', inbox(to), score, id)
  redis.call('ZADD', EXP, expires, id)
  return 'stored'
elseif op == 'pending' then
  local ids = redis.call('ZRANGE', inbox(ARGV[5]), 0, tonumber(ARGV[6]) - 1)
  return rows(ids)
elseif op == 'remove' then
  local to, n = ARGV[5], 0
  for i = 6, #ARGV do
    if redis.call('ZSCORE', inbox(to), ARGV[i]) then
      drop(ARGV[i], to)
      n = n + 1
    end
  end
  return n
elseif op == 'expire' then
  local ids = redis.call('ZRANGEBYSCORE', EXP, '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[6]))
  local out = rows(ids)
  for i = 1, #out, 3 do
    local to = string.match(out[i + 1], '^([^\t]*)')
    drop(out[i], to)
  end
  for _, id in ipairs(ids) do redis.call('ZREM', EXP, id) end
  return out
end
return redis.error_reply('unknown relay operation ' .. tostring(op))
