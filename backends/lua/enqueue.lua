-- enqueue: store new tasks with their payloads in one step.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] wake list, KEYS[4] seq counter,
-- KEYS[4+i] task hash of item i.
-- ARGV[1] max_size (-1 = unbounded), ARGV[2] backstop ttl ms, ARGV[3] ttl ms of the seq
-- counter (longer than any task hash lives), then per item: id, priority, delay_ms,
-- max_attempts, chunk count c, then the c payload chunks (fields p1..pc; see keys.py).
-- Returns {accepted_count, then per item 1 stored | 0 duplicate | 2 duplicate holding this
-- very payload (an earlier attempt of the same call)}, or {-1, waiting} when
-- max_size refuses the batch (nothing stored).
-- Touches: the keys above only; an existing task hash is never written.
local now = now_ms()
local items, j = {}, 4
while j <= #ARGV do
  local c = tonumber(ARGV[j + 4])
  items[#items + 1] = {id = ARGV[j], pr = tonumber(ARGV[j + 1]), delay = tonumber(ARGV[j + 2]),
    ma = ARGV[j + 3], first = j + 5, count = c}
  j = j + 5 + c
end

local function stored_payload(key)
  local c = tonumber(redis.call('HGET', key, F_CHUNKS))
  if not c then return nil end
  return read_payload(key, c, {})
end

local fresh, flags, seen = {}, {}, {}
for i, item in ipairs(items) do
  flags[i] = 0
  if not seen[item.id] and redis.call('EXISTS', KEYS[4 + i]) == 0 then
    flags[i] = 1
    seen[item.id] = true
    fresh[#fresh + 1] = i
  elseif not seen[item.id] then
    local mine = table.concat(ARGV, '', item.first, item.first + item.count - 1)
    if stored_payload(KEYS[4 + i]) == mine then flags[i] = 2 end
  end
end
local max_size = tonumber(ARGV[1])
if max_size >= 0 then
  local waiting = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  if waiting + #fresh > max_size then
    return {-1, waiting}
  end
end
local out = {#fresh}
for i = 1, #items do out[i + 1] = flags[i] end
if #fresh == 0 then return out end
local backstop = tonumber(ARGV[2])
local seq = redis.call('INCRBY', KEYS[4], #fresh) - #fresh
local longest = 0
local ready, due, chunk_names = {}, {}, {}  -- ready/due: ZADD score, member pairs
for _, i in ipairs(fresh) do
  local item = items[i]
  seq = seq + 1
  local key = KEYS[4 + i]
  local state = S_QUEUED
  if item.delay > 0 then state = S_DEFERRED end
  local fields = {F_STATE, state, F_PRIORITY, item.pr, F_SEQ, seq, F_ATTEMPTS, 0,
    F_MAX_ATTEMPTS, item.ma, F_TOKEN, 0, F_ENQUEUED, now, F_CHUNKS, item.count}
  local n = #fields
  for k = 1, item.count do
    local name = chunk_names[k]
    if not name then name = F_CHUNK .. k; chunk_names[k] = name end
    fields[n + 1] = name
    fields[n + 2] = ARGV[item.first + k - 1]
    n = n + 2
  end
  call_batched('HSET', key, fields)
  redis.call('PEXPIRE', key, item.delay + backstop)
  if item.delay > longest then longest = item.delay end
  if item.delay > 0 then
    due[#due + 1] = now + item.delay
    due[#due + 1] = item.id
  else
    ready[#ready + 1] = ready_score(item.pr, seq)
    ready[#ready + 1] = item.id
  end
end
keep_seq(KEYS[4], tonumber(ARGV[3]) + 2 * longest)
-- ZADD takes score, member pairs: batches of BATCH values keep the pairs whole.
call_batched('ZADD', KEYS[1], ready)
call_batched('ZADD', KEYS[2], due)
local woken = #fresh - math.floor(#due / 2)
-- A deferred task still wakes one idle worker, so it learns the new earliest due time.
if woken < #fresh then woken = woken + 1 end
wake(KEYS[3], woken)
return out
