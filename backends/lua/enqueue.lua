-- enqueue: store new tasks with their payloads in one step.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] wake list, KEYS[4] seq counter,
-- KEYS[4+i] task hash of item i.
-- ARGV[1] max_size (-1 = unbounded), ARGV[2] backstop ttl ms, then per item: id,
-- priority, delay_ms, max_attempts, chunk count c, then c payload chunks of at most 64 bytes
-- (stored as fields p1..pc, so the hash keeps Redis's compact listpack encoding).
-- Returns {accepted_count, then per item 1 stored | 0 duplicate | 2 duplicate holding this
-- very payload (an earlier attempt of the same call)}, or {-1, waiting} when
-- max_size refuses the batch (nothing stored).
-- Touches: the keys above only; an existing task hash is never written.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local items, j = {}, 3
while j <= #ARGV do
  local c = tonumber(ARGV[j + 4])
  items[#items + 1] = {id = ARGV[j], pr = tonumber(ARGV[j + 1]), delay = tonumber(ARGV[j + 2]),
    ma = ARGV[j + 3], first = j + 5, count = c}
  j = j + 5 + c
end

local function stored_payload(key)
  local c = tonumber(redis.call('HGET', key, 'pn'))
  if not c then return nil end
  local names = {}
  for k = 1, c do names[k] = 'p' .. k end
  if c == 0 then return '' end
  return table.concat(redis.call('HMGET', key, unpack(names)))
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
local backstop = tonumber(ARGV[2])
local seq = redis.call('INCRBY', KEYS[4], #fresh) - #fresh
local ready, due, chunk_names = {}, {}, {}  -- ready/due: ZADD score, member pairs
for _, i in ipairs(fresh) do
  local item = items[i]
  seq = seq + 1
  local key = KEYS[4 + i]
  local state = 'queued'
  if item.delay > 0 then state = 'deferred' end
  local fields = {'st', state, 'pr', item.pr, 'sq', seq, 'at', 0, 'ma', item.ma, 'tk', 0,
    'eq', now, 'pn', item.count}
  local n = 16
  for k = 1, item.count do
    local name = chunk_names[k]
    if not name then name = 'p' .. k; chunk_names[k] = name end
    fields[n + 1] = name
    fields[n + 2] = ARGV[item.first + k - 1]
    n = n + 2
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIRE', key, item.delay + backstop)
  if item.delay > 0 then
    due[#due + 1] = now + item.delay
    due[#due + 1] = item.id
  else
    ready[#ready + 1] = (1000 - item.pr) * 2199023255552 + seq % 2199023255552
    ready[#ready + 1] = item.id
  end
end
-- One ZADD per set: members go in batches that stay well under Lua's unpack limit.
local function zadd_all(key, pairs)
  for from = 1, #pairs, 1000 do
    redis.call('ZADD', key, unpack(pairs, from, math.min(from + 999, #pairs)))
  end
end
zadd_all(KEYS[1], ready)
zadd_all(KEYS[2], due)
ready = #fresh - math.floor(#due / 2)
-- A deferred task still wakes one idle worker, so it learns the new earliest due time.
if ready < #fresh then ready = ready + 1 end
if ready > 0 then
  local tokens = {}
  for i = 1, math.min(ready, 64) do tokens[i] = '1' end
  redis.call('LPUSH', KEYS[3], unpack(tokens))
  redis.call('LTRIM', KEYS[3], 0, 63)
end
local out = {#fresh}
for i = 1, #items do out[i + 1] = flags[i] end
return out
