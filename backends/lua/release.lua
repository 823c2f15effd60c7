-- release: hand back claims a stopping worker will not finish; the attempt is not counted.
-- KEYS[1] ready zset, KEYS[2] running zset, KEYS[3] wake list, KEYS[3+i] task hash.
-- ARGV: 2 per claim: id, token.
-- Returns {1 released | 0 stale, ...}. Touches: the keys above only.
local span = 2199023255552
local out = {}
for i = 1, #ARGV / 2 do
  local id, token = ARGV[2 * i - 1], ARGV[2 * i]
  local key = KEYS[3 + i]
  local f = redis.call('HMGET', key, 'tk', 'st', 'pr', 'sq')
  if f[1] == token and f[2] == 'running' then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HINCRBY', key, 'at', -1)
    redis.call('HSET', key, 'st', 'queued')
    redis.call('ZADD', KEYS[1], (1000 - tonumber(f[3])) * span + tonumber(f[4]) % span, id)
    redis.call('LPUSH', KEYS[3], '1')
    out[i] = 1
  else
    out[i] = 0
  end
end
redis.call('LTRIM', KEYS[3], 0, 63)
return out
