-- claim: promote due tasks, then move up to `limit` ready tasks to running under a lease.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] running zset, KEYS[4] seq counter,
-- KEYS[5] task hash prefix (ids are only known here; the prefix carries the queue's hash
-- tag, so every task hash is in the same slot as KEYS[1..4]), KEYS[6] wake list.
-- ARGV[1] limit, ARGV[2] lease ms.
-- Returns {next_due_in_ms or -1, missing_count, ready_left, then 5 per claim: id, token,
-- attempt,
-- max_attempts, payload}. Touches: KEYS[1..4], KEYS[6] and <prefix><id> of promoted or
-- claimed ids. When it promoted due tasks that it leaves ready, it wakes idle workers.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local prefix = KEYS[5]
local span = 2199023255552
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local key = prefix .. id
  local f = redis.call('HMGET', key, 'pr', 'sq')
  if f[1] then
    redis.call('HSET', key, 'st', 'queued')
    redis.call('ZADD', KEYS[1], (1000 - tonumber(f[1])) * span + tonumber(f[2]) % span, id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local lease = tonumber(ARGV[2])
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local out = {-1, 0, 0}
local count = math.floor(#popped / 2)
local token = redis.call('INCRBY', KEYS[4], count) - count
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = prefix .. id
  -- Most payloads fit in four chunks: fetch those with the state, in one call.
  local f = redis.call('HMGET', key, 'pn', 'at', 'ma', 'st', 'p1', 'p2', 'p3', 'p4')
  if f[1] and f[4] == 'queued' then
    token = token + 1
    local attempt = tonumber(f[2]) + 1
    -- No PEXPIRE here: the backstop set at enqueue is days away, and renew extends it.
    redis.call('HSET', key, 'st', 'running', 'tk', token, 'at', attempt)
    redis.call('ZADD', KEYS[3], now + lease, id)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = attempt
    out[#out + 1] = f[3]
    local chunks = tonumber(f[1])
    local parts = {}
    for k = 1, math.min(chunks, 4) do parts[k] = f[4 + k] end
    if chunks > 4 then
      local names = {}
      for k = 5, chunks do names[#names + 1] = 'p' .. k end
      local rest = redis.call('HMGET', key, unpack(names))
      for k = 1, #rest do parts[4 + k] = rest[k] end
    end
    out[#out + 1] = table.concat(parts)
  else
    out[2] = out[2] + 1
  end
end
local left = redis.call('ZCARD', KEYS[1])
out[3] = left
if #due > 0 then
  if left > 0 then
    local tokens = {}
    for i = 1, math.min(left, 64) do tokens[i] = '1' end
    redis.call('LPUSH', KEYS[6], unpack(tokens))
    redis.call('LTRIM', KEYS[6], 0, 63)
  end
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = math.max(0, tonumber(nxt[2]) - now) end
return out
