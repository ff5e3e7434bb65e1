#!lua flags=allow-oom
-- leader: the hubs' leader lease (see `redis/leader.rs`). `allow-oom`: the
-- lease must stay renewable when Redis is at maxmemory (it writes a few
-- bytes), or a full Redis would also take the cluster's leader away.
--
-- KEYS[1] the lease (`P:leader`, value "<fence>:<hub id>", expiring),
-- KEYS[2] the leader fence counter (`P:leader:fence`).
-- ARGV[1] 'acquire', 'renew' or 'release', ARGV[2] hub id, ARGV[3] ttl ms,
-- ARGV[4] fence (renew, release).
--   acquire: the fence (new, or the current one when this hub already
--     holds the lease, which is then extended), or false when another hub
--     holds it.
--   renew: 1 when this hub holds the lease under this fence (extended), else 0.
--   release: 1 when this hub held it under this fence (now free), else 0.
local op, hub, ttl, fence = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('GET', KEYS[1])
if op == 'acquire' then
  if current then
    local sep = string.find(current, ':', 1, true)
    if sep and string.sub(current, sep + 1) == hub then
      redis.call('PEXPIRE', KEYS[1], ttl)
      return tonumber(string.sub(current, 1, sep - 1))
    end
    return false
  end
  local f = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], string.format('%d', f) .. ':' .. hub, 'PX', ttl)
  return f
elseif op == 'renew' then
  if current == fence .. ':' .. hub then
    redis.call('PEXPIRE', KEYS[1], ttl)
    return 1
  end
  return 0
elseif op == 'release' then
  if current == fence .. ':' .. hub then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
end
return redis.error_reply('unknown leader operation ' .. tostring(op))
