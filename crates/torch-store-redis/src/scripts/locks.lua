-- locks: lock grants with fences (see `coord.rs`). Holders live in
-- `P:locks` (fence -> JSON record), `P:lockname` (fence -> lock name) and
-- `P:lockexp` (fence -> expiry, unix ms); `P:lockfence` is the highest
-- fence ever granted, so a grant with a fence not above it (a stale
-- owner's) writes nothing.
--
-- ARGV[4] the operation, then
--   grant: fence, name, expiry, record  -> 1, or 0 when refused
--   renew: fence, name, expiry          -> 1, or 0 when not held
--   release: fence, name                -> 1, or 0 when not held
--   load:                               -> {last fence, HGETALL locks, HGETALL expiries}
local op = ARGV[4]
local LOCKS = P .. ':locks'
local NAMES = P .. ':lockname'
local EXP = P .. ':lockexp'
local FENCE = P .. ':lockfence'

if op == 'grant' then
  local fence, name, exp, rec = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local last = tonumber(redis.call('GET', FENCE) or '0')
  if tonumber(fence) <= last then
    return 0
  end
  redis.call('SET', FENCE, fence)
  redis.call('HSET', LOCKS, fence, rec)
  redis.call('HSET', NAMES, fence, name)
  redis.call('HSET', EXP, fence, exp)
  return 1
elseif op == 'renew' then
  local fence, name, exp = ARGV[5], ARGV[6], ARGV[7]
  if redis.call('HGET', NAMES, fence) ~= name then
    return 0
  end
  redis.call('HSET', EXP, fence, exp)
  return 1
elseif op == 'release' then
  local fence, name = ARGV[5], ARGV[6]
  if redis.call('HGET', NAMES, fence) ~= name then
    return 0
  end
  redis.call('HDEL', LOCKS, fence)
  redis.call('HDEL', NAMES, fence)
  redis.call('HDEL', EXP, fence)
  return 1
elseif op == 'load' then
  return { redis.call('GET', FENCE) or '0', redis.call('HGETALL', LOCKS), redis.call('HGETALL', EXP) }
end
return redis.error_reply('unknown locks operation ' .. tostring(op))
