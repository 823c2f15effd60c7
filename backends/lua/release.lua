-- release: hand back claims a stopping worker will not finish; the attempt is not counted.
-- KEYS[1] ready zset, KEYS[2] running zset, KEYS[3] wake list, KEYS[3+i] task hash.
-- ARGV: 2 per claim: id, token.
-- Returns {1 released | 0 stale, ...}. Touches: the keys above only.
local out = {}
local released = 0
for i = 1, #ARGV / 2 do
  local id, token = ARGV[2 * i - 1], ARGV[2 * i]
  local key = KEYS[3 + i]
  local f = redis.call('HMGET', key, F_TOKEN, F_STATE, F_PRIORITY, F_SEQ)
  if f[1] == token and f[2] == S_RUNNING then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HINCRBY', key, F_ATTEMPTS, -1)
    redis.call('HSET', key, F_STATE, S_QUEUED)
    redis.call('ZADD', KEYS[1], ready_score(f[3], f[4]), id)
    released = released + 1
    out[i] = 1
  else
    out[i] = 0
  end
end
wake(KEYS[3], released)
return out
