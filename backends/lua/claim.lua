-- claim: promote due tasks, then move up to `limit` ready tasks to running under a lease.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] running zset, KEYS[4] seq counter,
-- KEYS[5] task hash prefix (ids are only known here; the prefix carries the queue's hash
-- tag, so every task hash is in the same slot as KEYS[1..4]), KEYS[6] wake list.
-- ARGV[1] limit, ARGV[2] lease ms, ARGV[3] ttl ms of the seq counter, ARGV[4] worker id.
-- Returns {next_due_in_ms or -1, missing_count, ready_left, then 5 per claim: id, token,
-- attempt, max_attempts, payload}. Touches: KEYS[1..4], KEYS[6] and <prefix><id> of
-- promoted or claimed ids; a queue with nothing to claim is left as it was (no key made).
-- When it promoted due tasks that it leaves ready, it wakes idle workers.
local now = now_ms()
local prefix = KEYS[5]
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local key = prefix .. id
  local f = redis.call('HMGET', key, F_PRIORITY, F_SEQ)
  if f[1] then
    redis.call('HSET', key, F_STATE, S_QUEUED)
    redis.call('ZADD', KEYS[1], ready_score(f[1], f[2]), id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local lease = tonumber(ARGV[2])
-- Most payloads fit in four chunks: those are fetched with the state, in one call.
local P1, P2, P3, P4 = F_CHUNK .. 1, F_CHUNK .. 2, F_CHUNK .. 3, F_CHUNK .. 4
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local out = {-1, 0, 0}
local count = math.floor(#popped / 2)
local token = 0
if count > 0 then
  token = redis.call('INCRBY', KEYS[4], count) - count
  keep_seq(KEYS[4], tonumber(ARGV[3]))
end
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = prefix .. id
  local f = redis.call('HMGET', key, F_CHUNKS, F_ATTEMPTS, F_MAX_ATTEMPTS, F_STATE,
    P1, P2, P3, P4)
  if f[1] and f[4] == S_QUEUED then
    token = token + 1
    local attempt = tonumber(f[2]) + 1
    -- No PEXPIRE here: the backstop set at enqueue is days away, and renew extends it.
    redis.call('HSET', key, F_STATE, S_RUNNING, F_TOKEN, token, F_ATTEMPTS, attempt,
      F_WORKER, ARGV[4])
    redis.call('ZADD', KEYS[3], now + lease, id)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = attempt
    out[#out + 1] = f[3]
    local n = tonumber(f[1])
    if n == 1 then
      out[#out + 1] = f[5]  -- a payload over 6 KiB is one field: no copy to join
    elseif n <= 4 then
      out[#out + 1] = table.concat({f[5], f[6], f[7], f[8]}, '', 1, n)
    else
      out[#out + 1] = read_payload(key, n, {f[5], f[6], f[7], f[8]})
    end
  else
    out[2] = out[2] + 1
  end
end
local left = redis.call('ZCARD', KEYS[1])
out[3] = left
if #due > 0 then wake(KEYS[6], left) end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = math.max(0, tonumber(nxt[2]) - now) end
return out
