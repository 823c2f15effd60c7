-- enqueue: store new tasks with their payloads in one step, handing tasks straight to idle
-- workers when some are waiting.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] wake set, KEYS[4] seq counter, KEYS[5] idle
-- zset (offers of waiting workers, see claim.lua), KEYS[6] running zset, KEYS[7] inbox
-- prefix (a worker's inbox is <prefix><worker id>, in the queue's slot), KEYS[7+i] task hash
-- of item i.
-- ARGV[1] max_size (-1 = unbounded), ARGV[2] backstop ttl ms, ARGV[3] ttl ms of the seq
-- counter (longer than any task hash lives), ARGV[4] '1' when every id is new by
-- construction (generated, first attempt: no existence check), then per item: id,
-- priority, delay_ms, max_attempts, chunk count c, then the c payload chunks (fields
-- p1..pc; see keys.py).
-- Returns {accepted_count, then per item 1 stored | 0 duplicate | 2 duplicate holding this
-- very payload (an earlier attempt of the same call)}, or {-1, waiting} when
-- max_size refuses the batch (nothing stored).
-- Touches: the keys above and the inboxes of the workers it hands tasks to; an existing
-- task hash is never written.
local clock_us = now_us()  -- hand-offs take tokens from it, as in claim.lua
local now = math.floor(clock_us / 1000)
local items, j = {}, 5
local unique = ARGV[4] == '1'
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
  if unique or (not seen[item.id] and redis.call('EXISTS', KEYS[7 + i]) == 0) then
    flags[i] = 1
    seen[item.id] = true
    fresh[#fresh + 1] = i
  elseif not seen[item.id] then
    local mine = table.concat(ARGV, '', item.first, item.first + item.count - 1)
    if stored_payload(KEYS[7 + i]) == mine then flags[i] = 2 end
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

-- Hand-off: a worker waiting in BZPOPMIN on its inbox offered its free slots in the idle set
-- (member "<lease ms>|<worker id>", score: when the offer lapses * OFFER_SLOTS + slots).
-- Each task due now, best ready score first, goes to the freshest offer while any is left:
-- claimed here under that worker's lease, exactly as claim.lua would, and put in its inbox.
-- Only when nothing is ready already, so no task overtakes one that waits. An offer lapses
-- soon after its worker's wait would have ended: a worker that died waiting is handed
-- tasks for at most that long (they are recovered when their lease runs out).
local handed = {}  -- item index -> offer member
local function next_offer()
  local top = redis.call('ZPOPMAX', KEYS[5])
  if top[1] and math.floor(tonumber(top[2]) / OFFER_SLOTS) < now then
    redis.call('DEL', KEYS[5])  -- the freshest lapsed: so did the rest
    return nil
  end
  return top[1], tonumber(top[2])
end
local due_now = 0
for _, i in ipairs(fresh) do
  if items[i].delay <= 0 then due_now = due_now + 1 end
end
local offer, score
if due_now > 0 then offer, score = next_offer() end
if offer and redis.call('ZCARD', KEYS[1]) > 0 then
  redis.call('ZADD', KEYS[5], score, offer)  -- tasks wait already: they go first
  offer = nil
end
if offer then  -- only now the order is worth working out
  local order = {}
  for k, i in ipairs(fresh) do
    if items[i].delay <= 0 then
      order[#order + 1] = {i = i, score = ready_score(items[i].pr, seq + k)}
    end
  end
  table.sort(order, function(a, b) return a.score < b.score end)
  for n, o in ipairs(order) do
    if n > 1 then
      offer, score = next_offer()
      if not offer then break end
    end
    handed[o.i] = offer
    if score % OFFER_SLOTS > 1 then redis.call('ZADD', KEYS[5], score - 1, offer) end
  end
end

local longest = 0
local handed_count = 0  -- hand-offs take tokens clock_us, clock_us + 1, ...
local ready, due, chunk_names = {}, {}, {}  -- ready/due: ZADD score, member pairs
for _, i in ipairs(fresh) do
  local item = items[i]
  seq = seq + 1
  local key = KEYS[7 + i]
  local state, attempts, claim = S_QUEUED, 0, 0
  if item.delay > 0 then state = S_DEFERRED end
  local offer = handed[i]
  local lease, worker
  if offer then
    lease, worker = string.match(offer, '^(%d+)|(.*)$')
    state, attempts, claim = S_RUNNING, 1, clock_us + handed_count
    handed_count = handed_count + 1
  end
  local fields = {F_STATE, state, F_PRIORITY, item.pr, F_SEQ, seq, F_ATTEMPTS, attempts,
    F_MAX_ATTEMPTS, item.ma, F_TOKEN, claim, F_ENQUEUED, now, F_CHUNKS, item.count}
  if offer then fields[#fields + 1] = F_WORKER; fields[#fields + 1] = worker end
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
  if offer then
    -- The inbox entry carries the claim whole: id, token, attempt, max attempts, the time
    -- the lease started (ms, this clock), then the payload (last: it may hold newlines).
    local inbox = KEYS[7] .. worker
    redis.call('ZADD', KEYS[6], now + tonumber(lease), item.id)
    local head = string.format('%s\n%d\n1\n%s\n%d\n', item.id, claim, item.ma, now)
    redis.call('ZADD', inbox, 0, head .. table.concat(ARGV, '', item.first,
      item.first + item.count - 1))
    redis.call('PEXPIRE', inbox, 2 * tonumber(lease))
  elseif item.delay > 0 then
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
local woken = math.floor(#ready / 2)
-- A deferred task still wakes one idle worker, so it learns the new earliest due time.
if #due > 0 then woken = woken + 1 end
wake(KEYS[3], woken)
return out
