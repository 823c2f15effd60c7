-- requeue: put dead tasks back to ready with a fresh attempt count; the dead attempt's
-- error and traceback go (the record describes the new life from here).
-- KEYS[1] ready zset, KEYS[2] dead zset, KEYS[3] wake list, KEYS[3+i] task hash.
-- ARGV[1] backstop ttl ms, then one id per task.
-- Returns {1 requeued | 0 not dead, ...}. Touches: the keys above only.
local out = {}
local requeued = 0
local now  -- read once, and only when a task is requeued

for i = 2, #ARGV do
  local id, key = ARGV[i], KEYS[2 + i]
  local f = redis.call('HMGET', key, F_STATE, F_CHUNKS, F_PRIORITY, F_SEQ)
  if f[1] == S_DEAD and f[2] then
    now = now or now_ms()
    redis.call('HSET', key, F_STATE, S_QUEUED, F_ATTEMPTS, 0, F_WAITING_SINCE, now)
    redis.call('HDEL', key, F_ERROR, F_TRACEBACK)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[1], ready_score(f[3], f[4]), id)
    redis.call('PEXPIRE', key, tonumber(ARGV[1]))
    requeued = requeued + 1
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
wake(KEYS[3], requeued)
return out
