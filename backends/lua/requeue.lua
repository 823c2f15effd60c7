-- requeue: put dead tasks back to ready with a fresh attempt count.
-- KEYS[1] ready zset, KEYS[2] dead zset, KEYS[3] wake list, KEYS[3+i] task hash.
-- ARGV[1] backstop ttl ms, then one id per task.
-- Returns {1 requeued | 0 not dead, ...}. Touches: the keys above only.
local span = 2199023255552
local out = {}
for i = 2, #ARGV do
  local id, key = ARGV[i], KEYS[2 + i]
  local f = redis.call('HMGET', key, 'st', 'pn', 'pr', 'sq')
  if f[1] == 'dead' and f[2] then
    redis.call('HSET', key, 'st', 'queued', 'at', 0)
    redis.call('HDEL', key, 'e')
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[1], (1000 - tonumber(f[3])) * span + tonumber(f[4]) % span, id)
    redis.call('PEXPIRE', key, tonumber(ARGV[1]))
    redis.call('LPUSH', KEYS[3], '1')
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
redis.call('LTRIM', KEYS[3], 0, 63)
return out
