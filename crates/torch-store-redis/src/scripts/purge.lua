-- purge: retention, deletes finished tasks last updated before a cutoff
-- (see `Store::purge_finished`).
--
-- ARGV[4] the cutoff (unix ms), ARGV[5] the most tasks to delete.
-- Walks each finished state's set from its oldest submissions, looking at
-- no more than four times the limit, so one call stays short even when the
-- oldest submissions finished recently. Returns how many tasks it deleted.
local cutoff, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local budget = limit * 4
local deleted = 0

-- Everything that names task `id` only because of it.
local function forget(id, state)
  local k = tkey(id)
  local r = redis.call('HMGET', k, 'ten', 'idem', 'par', 'spec')
  local tenant, idem, parent, spec = r[1], r[2], r[3], r[4]
  if idem and tenant then
    local field = string.len(tenant) .. ':' .. tenant .. idem
    if redis.call('HGET', P .. ':idem', field) == id then
      redis.call('HDEL', P .. ':idem', field)
    end
  end
  if parent then
    redis.call('ZREM', P .. ':children:' .. parent, id)
  end
  if spec then
    local ok, decoded = pcall(cjson.decode, spec)
    if ok and type(decoded) == 'table' and type(decoded.labels) == 'table' then
      for key, value in pairs(decoded.labels) do
        if type(value) == 'string' then
          redis.call('ZREM', P .. ':label:' .. string.len(key) .. ':' .. key .. '=' .. value, id)
        end
      end
    end
  end
  -- `children:<id>` stays while children remain (each leaves it when it
  -- goes), so children are still listed under their parent's id.
  redis.call('DEL', k, P .. ':log:' .. id, P .. ':rdeps:' .. id)
  redis.call('ZREM', P .. ':state:' .. state, id)
end

for _, state in ipairs({ 'succeeded', 'dead', 'cancelled' }) do
  local set = P .. ':state:' .. state
  local start = 0
  while deleted < limit and budget > 0 do
    local ids = redis.call('ZRANGE', set, start, start + 99)
    if #ids == 0 then
      break
    end
    local kept = 0
    for _, id in ipairs(ids) do
      if deleted >= limit or budget <= 0 then
        break
      end
      budget = budget - 1
      local updated = tonumber(redis.call('HGET', tkey(id), 'u') or '0') or 0
      if updated < cutoff then
        forget(id, state)
        deleted = deleted + 1
      else
        kept = kept + 1
      end
    end
    -- Deleted entries left the set: the next page starts after the kept ones.
    start = start + kept
    if #ids < 100 then
      break
    end
  end
end
return deleted
