-- recover: tasks whose lease expired go back to ready (attempt stays counted) or, with
-- attempts exhausted, to dead. Also forgets dead ids whose records have expired.
-- KEYS[1] ready zset, KEYS[2] running zset, KEYS[3] dead zset, KEYS[4] wake list,
-- KEYS[5] task hash prefix (same hash tag as the others; ids are only known here).
-- ARGV[1] dead ttl ms, ARGV[2] backstop ttl ms.
-- Returns {requeued_count, requeued id..., dead id...}.
-- Touches: KEYS[1..4] and <prefix><id> of expired ids.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local span = 2199023255552
local dead_ttl, backstop = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
local requeued, died = {}, {}
for _, id in ipairs(expired) do
  local key = KEYS[5] .. id
  redis.call('ZREM', KEYS[2], id)
  local f = redis.call('HMGET', key, 'at', 'ma', 'pr', 'sq', 'st')
  if f[5] == 'running' then
    if tonumber(f[1]) >= tonumber(f[2]) then
      redis.call('HSET', key, 'st', 'dead',
        'e', 'lease expired on attempt ' .. f[1] .. ' of ' .. f[2])
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('PEXPIRE', key, dead_ttl)
      died[#died + 1] = id
    else
      redis.call('HSET', key, 'st', 'queued')
      redis.call('ZADD', KEYS[1], (1000 - tonumber(f[3])) * span + tonumber(f[4]) % span, id)
      redis.call('PEXPIRE', key, backstop)
      requeued[#requeued + 1] = id
    end
  end
end
if #requeued > 0 then
  redis.call('LPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, 63)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - dead_ttl)
local out = {#requeued}
for _, id in ipairs(requeued) do out[#out + 1] = id end
for _, id in ipairs(died) do out[#out + 1] = id end
return out
