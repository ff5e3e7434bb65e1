-- small writes that need a read first (see `redis/write.rs`).
--
-- ARGV[4] the operation, then its arguments:
--   'token', hash, role, name, created: stores a token (replacing one with
--     the same hash) and keeps the per-role sets right.
--     The optional fields follow: tenant, expires, revoked, used ('' when
--     unset); the hash is also added to the set of every token.
--   'revoke', hash, now: marks an existing token revoked (keeping the first
--     time); returns 1, or 0 when there is no such token.
--   'touch', hash, now: records a use of an existing token; returns 1 or 0.
--   'meta', key, value: sets a metadata value if absent; returns the value.
local op = ARGV[4]
if op == 'token' then
  local hash, role, name, created = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local k = P .. ':token:' .. hash
  local old = redis.call('HGET', k, 'role')
  if old and old ~= role then
    redis.call('SREM', P .. ':tokens:' .. old, hash)
  end
  redis.call('DEL', k)
  redis.call('HSET', k, 'role', role, 'name', name, 'created', created)
  local optional = {'tenant', 'expires', 'revoked', 'used'}
  for i, field in ipairs(optional) do
    local v = ARGV[8 + i]
    if v and v ~= '' then
      redis.call('HSET', k, field, v)
    end
  end
  redis.call('SADD', P .. ':tokens:' .. role, hash)
  redis.call('SADD', P .. ':tokens', hash)
  return 1
elseif op == 'revoke' or op == 'touch' then
  local k = P .. ':token:' .. ARGV[5]
  if redis.call('EXISTS', k) == 0 then
    return 0
  end
  if op == 'revoke' then
    redis.call('HSETNX', k, 'revoked', ARGV[6])
  else
    redis.call('HSET', k, 'used', ARGV[6])
  end
  return 1
elseif op == 'meta' then
  local key, value = ARGV[5], ARGV[6]
  redis.call('HSETNX', P .. ':meta', key, value)
  return redis.call('HGET', P .. ':meta', key)
end
return redis.error_reply('unknown operation ' .. tostring(op))
