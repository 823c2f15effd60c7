-- claim: promote due tasks, then move up to `limit` ready tasks to running under a lease.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] running zset, KEYS[4] task hash prefix
-- (ids are only known here; the prefix carries the queue's hash tag, so every task hash is
-- in the same slot as the other keys), KEYS[5] wake set, KEYS[6] idle zset, KEYS[7] this
-- worker's inbox.
-- ARGV[1] limit, ARGV[2] lease ms, ARGV[3] worker id, ARGV[4] '1' to take part in hand-off:
-- the claims first include tasks already handed to this worker (its inbox, see
-- enqueue.lua), and the slots left unfilled are offered in the idle set for ARGV[5] ms,
-- where submits find them while the worker waits; '0' leaves both alone.
-- Returns {next_due_in_ms or -1, missing_count, ready_left, now ms, then 6 per claim: id,
-- token, attempt, max_attempts, payload, age ms (how long its lease had run already)}.
-- Touches: KEYS[1..3], KEYS[5..7] and <prefix><id> of promoted or claimed ids; a queue with
-- nothing to claim is left as it was (no key made), but for the offer.
-- When it leaves ready tasks behind, it wakes idle workers for them.
-- The fencing token of a claim is the store's clock in microseconds, plus its place in
-- this batch: distinct within the batch, and never reissued for a task after a failover
-- lost its claim, as a counter kept in the store could be.
local clock_us = now_us()
local now = math.floor(clock_us / 1000)
local prefix = KEYS[4]
-- The earliest due task first: the common case, nothing due yet, costs one read.
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local promoted = 0
if nxt[2] and tonumber(nxt[2]) <= now then
  local found = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
  local due = {}
  for k = 1, #found, 2 do
    local id = found[k]
    due[#due + 1] = id
    local key = prefix .. id
    local f = redis.call('HMGET', key, F_PRIORITY, F_SEQ)
    if f[1] then
      -- Waiting since it came due, not since its submit (inspection's oldest waiting).
      redis.call('HSET', key, F_STATE, S_QUEUED, F_WAITING_SINCE, found[k + 1])
      redis.call('ZADD', KEYS[1], ready_score(f[1], f[2]), id)
      promoted = promoted + 1
    end
  end
  redis.call('ZREM', KEYS[2], unpack(due))
  nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
end
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local hands_off = ARGV[4] == '1'
local out = {-1, 0, 0, now}
if hands_off then
  local got = redis.call('ZPOPMIN', KEYS[7], limit)
  for k = 1, #got, 2 do
    local id, token, attempt, ma, since, payload =
      string.match(got[k], '^([^\n]*)\n(%d+)\n(%d+)\n(%d+)\n(%d+)\n(.*)$')
    out[#out + 1] = id
    out[#out + 1] = tonumber(token)
    out[#out + 1] = tonumber(attempt)
    out[#out + 1] = ma
    out[#out + 1] = payload
    out[#out + 1] = now - tonumber(since)
  end
  limit = limit - math.floor(#got / 2)
end
-- Most payloads fit in four chunks: those are fetched with the state, in one call.
local P1, P2, P3, P4 = F_CHUNK .. 1, F_CHUNK .. 2, F_CHUNK .. 3, F_CHUNK .. 4
local popped = {}
if limit > 0 then popped = redis.call('ZPOPMIN', KEYS[1], limit) end
local running = {}  -- ZADD score, member pairs
local claimed = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = prefix .. id
  local f = redis.call('HMGET', key, F_CHUNKS, F_ATTEMPTS, F_MAX_ATTEMPTS, F_STATE,
    P1, P2, P3, P4)
  if f[1] and f[4] == S_QUEUED then
    local token = clock_us + claimed
    local attempt = tonumber(f[2]) + 1
    -- No PEXPIRE here: the backstop set at enqueue is days away, and renew extends it.
    redis.call('HSET', key, F_STATE, S_RUNNING, F_TOKEN, token, F_ATTEMPTS, attempt,
      F_WORKER, ARGV[3])
    running[#running + 1] = now + lease
    running[#running + 1] = id
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
    out[#out + 1] = 0
    claimed = claimed + 1
  else
    out[2] = out[2] + 1
  end
end
call_batched('ZADD', KEYS[3], running)
-- A short pop emptied the ready set: no count needed.
local left = 0
if limit > 0 and #popped == 2 * limit then left = redis.call('ZCARD', KEYS[1]) end
out[3] = left
-- Promoted tasks may be many at once: wake a worker for each. Otherwise one is enough:
-- it wakes the next in turn if it leaves tasks behind too.
if left > 0 then wake(KEYS[5], promoted > 0 and left or 1) end
if hands_off then
  local offer = ARGV[2] .. '|' .. ARGV[3]
  if claimed < limit then
    -- The score holds when the offer lapses and how many slots it has (see OFFER_SLOTS).
    local slots = math.min(limit - claimed, OFFER_SLOTS - 1)
    redis.call('ZADD', KEYS[6], (now + tonumber(ARGV[5])) * OFFER_SLOTS + slots, offer)
    redis.call('PEXPIRE', KEYS[6], IDLE_TTL_MS)
  else
    redis.call('ZREM', KEYS[6], offer)
  end
end
if nxt[2] then out[1] = math.max(0, tonumber(nxt[2]) - now) end
return out
