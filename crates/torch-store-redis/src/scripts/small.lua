-- small writes that need a read first (see `redis/write.rs`).
--
-- ARGV[4] the operation, then its arguments:
--   'token', hash, role, name, created: stores a token (replacing one with
--     the same hash) and keeps the per-role sets right.
--   'meta', key, value: sets a metadata value if absent; returns the value.
local op = ARGV[4]
if op == 'token' then
  local hash, role, name, created = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local k = P .. ':token:' .. hash
  local old = redis.call('HGET', k, 'role')
  if old and old ~= role then
    redis.call('SREM', P .. ':tokens:' .. old, hash)
  end
  redis.call('HSET', k, 'role', role, 'name', name, 'created', created)
  redis.call('SADD', P .. ':tokens:' .. role, hash)
  return 1
elseif op == 'meta' then
  local key, value = ARGV[5], ARGV[6]
  redis.call('HSETNX', P .. ':meta', key, value)
  return redis.call('HGET', P .. ':meta', key)
end
return redis.error_reply('unknown operation ' .. tostring(op))
