-- settle: apply outcomes whose fencing token is still current.
-- KEYS[1] running zset, KEYS[2] due zset, KEYS[3] dead zset, KEYS[4] wake list,
-- KEYS[4+i] task hash of outcome i, KEYS[4+n+i] its done list (n outcomes).
-- ARGV[1] result ttl ms, ARGV[2] dead ttl ms, ARGV[3] backstop ttl ms,
-- then 6 per outcome: id, token, kind (c complete | r retry | d dead), delay ms, data
-- (the result for c, the error text for r and d), traceback (r and d; empty for none).
-- Returns {1 applied (now, or already by this same token and kind) | 0 stale, ...}.
-- Touches: the keys above only. The payload is deleted in the same step as a complete; a
-- dead task keeps it for requeue. A failure's traceback replaces the previous attempt's.
local now  -- the clock is read only for a retry or a death: a completion needs no time
local result_ttl, dead_ttl, backstop = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out, gone = {}, {}
local function failed(key, state, b)
  local tb = ARGV[b + 6]
  if tb == '' then
    redis.call('HSET', key, F_STATE, state, F_ERROR, ARGV[b + 5])
    redis.call('HDEL', key, F_TRACEBACK)
  else
    redis.call('HSET', key, F_STATE, state, F_ERROR, ARGV[b + 5], F_TRACEBACK, tb)
  end
end
local n = (#ARGV - 3) / 6
for i = 1, n do
  local b = 3 + (i - 1) * 6
  local id, token, kind = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local key = KEYS[4 + i]
  local f = redis.call('HMGET', key, F_TOKEN, F_STATE, F_CHUNKS, F_WAITERS)
  if f[1] == token and f[2] == S_RUNNING then
    gone[#gone + 1] = id
    if kind == 'c' then
      delete_payload(key, tonumber(f[3]) or 0, {F_ERROR, F_TRACEBACK})
      redis.call('HSET', key, F_STATE, S_COMPLETED, F_RESULT, ARGV[b + 5])
      redis.call('PEXPIRE', key, result_ttl)
    elseif kind == 'r' then
      local delay = tonumber(ARGV[b + 4])
      failed(key, S_RETRYING, b)
      now = now or now_ms()
      redis.call('ZADD', KEYS[2], now + delay, id)
      redis.call('PEXPIRE', key, delay + backstop)
    else
      failed(key, S_DEAD, b)
      now = now or now_ms()
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('PEXPIRE', key, dead_ttl)
    end
    if kind ~= 'r' then notify(key, KEYS[4 + n + i], f[4]) end
    out[i] = 1
  elseif f[1] == token and f[2] == STATE_AFTER[kind] then
    out[i] = 1  -- this very settlement, sent again because its reply was lost
  else
    out[i] = 0
  end
end
call_batched('ZREM', KEYS[1], gone)
return out
