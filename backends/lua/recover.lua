-- recover: tasks whose lease expired go back to ready (attempt stays counted) or, with
-- attempts exhausted, to dead. Also forgets dead ids whose records have expired.
-- KEYS[1] ready zset, KEYS[2] running zset, KEYS[3] dead zset, KEYS[4] wake list,
-- KEYS[5] task hash prefix, KEYS[6] done list prefix, KEYS[7] inbox prefix (same hash tag
-- as the others; ids and workers are only known here).
-- ARGV[1] dead ttl ms, ARGV[2] backstop ttl ms.
-- Returns {requeued_count, requeued id..., dead id...}.
-- Touches: KEYS[1..4], <prefix><id> of expired ids, and the inboxes of their workers: a
-- worker whose lease ran out is dead or stalled, so what was handed to it and not taken
-- (it holds payloads) goes too; those tasks are in the running set, recovered in turn.
local now = now_ms()
local dead_ttl, backstop = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
local requeued, died = {}, {}
for _, id in ipairs(expired) do
  local key = KEYS[5] .. id
  redis.call('ZREM', KEYS[2], id)
  local f = redis.call('HMGET', key, F_ATTEMPTS, F_MAX_ATTEMPTS, F_PRIORITY, F_SEQ, F_STATE,
    F_WAITERS, F_WORKER)
  if f[5] == S_RUNNING then
    if f[7] then redis.call('DEL', KEYS[7] .. f[7]) end
    if tonumber(f[1]) >= tonumber(f[2]) then
      redis.call('HSET', key, F_STATE, S_DEAD,
        F_ERROR, 'lease expired on attempt ' .. f[1] .. ' of ' .. f[2])
      -- The traceback of an earlier attempt does not explain this death.
      redis.call('HDEL', key, F_TRACEBACK)
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('PEXPIRE', key, dead_ttl)
      notify(key, KEYS[6] .. id, f[6])
      died[#died + 1] = id
    else
      redis.call('HSET', key, F_STATE, S_QUEUED, F_WAITING_SINCE, now)
      redis.call('ZADD', KEYS[1], ready_score(f[3], f[4]), id)
      redis.call('PEXPIRE', key, backstop)
      requeued[#requeued + 1] = id
    end
  end
end
-- One token, as before: the woken worker claims everything it has slots for.
wake(KEYS[4], math.min(#requeued, 1))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - dead_ttl)
local out = {#requeued}
for _, id in ipairs(requeued) do out[#out + 1] = id end
for _, id in ipairs(died) do out[#out + 1] = id end
return out
