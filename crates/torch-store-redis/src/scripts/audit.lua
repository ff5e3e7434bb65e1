-- audit: the hash-chained audit log (see `redis/audit.rs`). One script
-- call appends a batch and moves the chain head, so hubs sharing the store
-- keep one chain. `P:audit:seq` is the last seq, `P:audit:head` its hash,
-- `P:audit:first` the first seq kept (after a retention cut), `P:audit:e`
-- maps seq -> JSON array [at_ms, actor, role, tenant, action, target,
-- outcome, reason, detail, prev, hash], `P:audit:cp` maps size -> the
-- signed checkpoint as JSON.
--
-- ARGV[4] the operation, then:
--   append: n, then 9 fields per entry (at_ms .. detail) -> {seq, hash}
--   checkpoint: size, json -> 1
--   cut: size, head, json -> entries deleted, or 'nohash' / 'head'
--
-- The hash is SHA-256 over the canonical encoding of
-- `torch_store::audit::chain` (computed here with the `bit` library).
local op = ARGV[4]
local E, SEQ, HEAD = P .. ':audit:e', P .. ':audit:seq', P .. ':audit:head'
local FIRST, CP = P .. ':audit:first', P .. ':audit:cp'
local GENESIS = string.rep('0', 64)

local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit = bit.rshift, bit.lshift, bit.ror, bit.tobit
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function sha256(msg)
  local H = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
  for i = 1, 8 do H[i] = tobit(H[i]) end
  local ml = #msg
  local bits = ml * 8
  msg = msg .. '\128' .. string.rep('\0', (55 - ml) % 64) .. '\0\0\0\0'
    .. string.char(band(rshift(bits, 24), 255), band(rshift(bits, 16), 255),
      band(rshift(bits, 8), 255), band(bits, 255))
  local w = {}
  for i = 1, #msg, 64 do
    for j = 0, 15 do
      local a, b, c, d = string.byte(msg, i + j * 4, i + j * 4 + 3)
      w[j] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
    end
    for j = 16, 63 do
      local v, u = w[j - 15], w[j - 2]
      local s0 = bxor(ror(v, 7), ror(v, 18), rshift(v, 3))
      local s1 = bxor(ror(u, 17), ror(u, 19), rshift(u, 10))
      w[j] = tobit(w[j - 16] + s0 + w[j - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
    for j = 0, 63 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = h + S1 + ch + K[j + 1] + w[j]
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
    end
    H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
    H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
  end
  local out = {}
  for i = 1, 8 do out[i] = bit.tohex(H[i], 8) end
  return table.concat(out)
end

local function field(parts, s)
  parts[#parts + 1] = int(#s) .. ':' .. s .. '\n'
end

if op == 'append' then
  local n = tonumber(ARGV[5])
  local seq = tonumber(redis.call('GET', SEQ) or '0')
  local prev = redis.call('GET', HEAD) or GENESIS
  if seq == 0 then
    redis.call('SET', FIRST, '1')
  end
  local i = 6
  for _ = 1, n do
    seq = seq + 1
    local f = {}
    for j = 1, 9 do f[j] = ARGV[i + j - 1] end
    local parts = { 'torch.audit.v1\n' }
    field(parts, int(seq))
    for j = 1, 9 do field(parts, f[j]) end
    field(parts, prev)
    local h = sha256(table.concat(parts))
    f[10], f[11] = prev, h
    redis.call('HSET', E, int(seq), cjson.encode(f))
    prev = h
    i = i + 9
  end
  redis.call('SET', SEQ, int(seq))
  redis.call('SET', HEAD, prev)
  return { int(seq), prev }
elseif op == 'checkpoint' then
  redis.call('HSET', CP, ARGV[5], ARGV[6])
  return 1
elseif op == 'cut' then
  local size, head = tonumber(ARGV[5]), ARGV[6]
  local stored = redis.call('HGET', E, ARGV[5])
  if not stored or cjson.decode(stored)[11] ~= head then
    return 'nohash'
  end
  if size >= tonumber(redis.call('GET', SEQ) or '0') then
    return 'head'
  end
  local first = tonumber(redis.call('GET', FIRST) or '1')
  local removed = 0
  local batch = {}
  for s = first, size do
    batch[#batch + 1] = int(s)
    if #batch == 1000 then
      removed = removed + redis.call('HDEL', E, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then
    removed = removed + redis.call('HDEL', E, unpack(batch))
  end
  redis.call('SET', FIRST, int(size + 1))
  redis.call('HSET', CP, ARGV[5], ARGV[7])
  return removed
end
return redis.error_reply('unknown audit operation ' .. tostring(op))
