-- enqueue: store new tasks with their payloads in one step.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] wake list, KEYS[4] seq counter,
-- KEYS[4+i] task hash of item i.
-- ARGV[1] max_size (-1 = unbounded), ARGV[2] backstop ttl ms,
-- then 5 per item: id, priority, delay_ms, max_attempts, payload.
-- Returns {accepted_count, then per item 1 stored | 0 duplicate | 2 duplicate holding this
-- very payload (an earlier attempt of the same call)}, or {-1, waiting} when
-- max_size refuses the batch (nothing stored).
-- Touches: the keys above only; an existing task hash is never written.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local n = (#ARGV - 2) / 5
local fresh, flags, seen = {}, {}, {}
for i = 1, n do
  local id = ARGV[2 + (i - 1) * 5 + 1]
  flags[i] = 0
  if not seen[id] and redis.call('EXISTS', KEYS[4 + i]) == 0 then
    flags[i] = 1
    seen[id] = true
    fresh[#fresh + 1] = i
  elseif not seen[id] and redis.call('HGET', KEYS[4 + i], 'p') == ARGV[2 + (i - 1) * 5 + 5] then
    flags[i] = 2
  end
end
local max_size = tonumber(ARGV[1])
if max_size >= 0 then
  local waiting = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  if waiting + #fresh > max_size then
    return {-1, waiting}
  end
end
local backstop = tonumber(ARGV[2])
local seq = redis.call('INCRBY', KEYS[4], #fresh) - #fresh
local ready = 0
for _, i in ipairs(fresh) do
  local b = 2 + (i - 1) * 5
  local id, pr, delay = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  seq = seq + 1
  local key = KEYS[4 + i]
  local state = 'queued'
  if delay > 0 then state = 'deferred' end
  redis.call('HSET', key, 'p', ARGV[b + 5], 'st', state, 'pr', pr, 'sq', seq, 'at', 0,
    'ma', ARGV[b + 4], 'tk', 0, 'eq', now)
  redis.call('PEXPIRE', key, delay + backstop)
  if delay > 0 then
    redis.call('ZADD', KEYS[2], now + delay, id)
  else
    redis.call('ZADD', KEYS[1], (1000 - pr) * 2199023255552 + seq % 2199023255552, id)
    ready = ready + 1
  end
end
-- A deferred task still wakes one idle worker, so it learns the new earliest due time.
if ready < #fresh then ready = ready + 1 end
if ready > 0 then
  local tokens = {}
  for i = 1, math.min(ready, 64) do tokens[i] = '1' end
  redis.call('LPUSH', KEYS[3], unpack(tokens))
  redis.call('LTRIM', KEYS[3], 0, 63)
end
local out = {#fresh}
for i = 1, n do out[i + 1] = flags[i] end
return out
