-- memory: writes to an agent's key/value memory within limits
-- (see `redis/write.rs`). Values live in `P:mem:<agent>` (key -> value),
-- their write time and origin in `P:memmeta:<agent>` (key -> "<ms>" or
-- "<ms>:<from agent>").
--
-- ARGV[4] 'put' or 'inherit', ARGV[5] most keys, ARGV[6] most total bytes,
-- ARGV[7] longest key, ARGV[8] largest value, then
--   put: owner, key, value
--   inherit: from, to, then the keys to copy.
-- Returns {'ok', {keys written}}, {'limit', keys, bytes} (the totals the
-- write would reach) or {'entry', key, value} (an entry over the per-entry
-- limits); nothing is written unless 'ok'.
local op = ARGV[4]
local max_keys, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_key, max_value = tonumber(ARGV[7]), tonumber(ARGV[8])

-- Keys and bytes (keys plus values) of `owner`'s memory, not counting `except`.
local function usage(owner, except)
  local k = P .. ':mem:' .. owner
  local keys, bytes = 0, 0
  for _, key in ipairs(redis.call('HKEYS', k)) do
    if not except[key] then
      keys = keys + 1
      bytes = bytes + string.len(key) + redis.call('HSTRLEN', k, key)
    end
  end
  return keys, bytes
end

local function put(owner, key, value, from)
  redis.call('HSET', P .. ':mem:' .. owner, key, value)
  local meta = NOW
  if from then
    meta = NOW .. ':' .. from
  end
  redis.call('HSET', P .. ':memmeta:' .. owner, key, meta)
end

if op == 'put' then
  local owner, key, value = ARGV[9], ARGV[10], ARGV[11]
  local keys, bytes = usage(owner, { [key] = true })
  keys = keys + 1
  bytes = bytes + string.len(key) + string.len(value)
  if keys > max_keys or bytes > max_bytes then
    return { 'limit', keys, bytes }
  end
  put(owner, key, value, nil)
  return { 'ok', { key } }
elseif op == 'inherit' then
  local from, to = ARGV[9], ARGV[10]
  local copied = {}
  local except = {}
  local added = 0
  for i = 11, #ARGV do
    local key = ARGV[i]
    local value = redis.call('HGET', P .. ':mem:' .. from, key)
    if value then
      if key == '' or string.len(key) > max_key or string.len(value) > max_value then
        return { 'entry', key, value }
      end
      added = added + string.len(key) + string.len(value)
      copied[#copied + 1] = { key, value }
      except[key] = true
    end
  end
  local keys, bytes = usage(to, except)
  keys = keys + #copied
  bytes = bytes + added
  if keys > max_keys or bytes > max_bytes then
    return { 'limit', keys, bytes }
  end
  local names = {}
  local quoted = {}
  for i, kv in ipairs(copied) do
    put(to, kv[1], kv[2], from)
    names[i] = kv[1]
    quoted[i] = jstr(kv[1])
  end
  local data = '{"from":"' .. from .. '","keys":[' .. table.concat(quoted, ',') .. '],"to":"' .. to .. '"}'
  emit('nova.torch.agents.spawning', 'agent.memory_inherited', nil, to, data)
  return { 'ok', names }
end
return redis.error_reply('unknown operation ' .. tostring(op))
