-- prelude: helpers every script shares (the breaker too), so the state machine's
-- arithmetic is written once. scripts.py puts the constants first (PRIORITY_MAX, SEQ_SPAN,
-- WAKE_MAX, WAKE_TTL_MS, BATCH, the F_* field names, the S_* states and STATE_AFTER, all
-- from Python), then the helpers of this file that the script's body calls (each a
-- paragraph: its comment and its function; none may be left out by a blank line inside),
-- then the body.

-- Milliseconds on the server's clock, never the caller's. Integers only: fakeredis runs
-- Lua 5.4, where `/` yields a float, so the division goes through math.floor.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Microseconds on the server's clock: the breaker orders decisions taken in the same
-- millisecond. Below 2^53 for two more centuries: exact in Lua 5.1's doubles and 5.4's
-- integers.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The ready-set score: higher priority first, then older first (kew_plug/ordering.py).
local function ready_score(priority, seq)
  return (PRIORITY_MAX - tonumber(priority)) * SEQ_SPAN + tonumber(seq) % SEQ_SPAN
end

-- Tell up to n idle workers (blocked in BZPOPMIN on the wake set) that work may be
-- claimable. The set's members are the tokens '1'..WAKE_MAX, so it never holds more than
-- WAKE_MAX, and re-adding a pending token costs nothing. It expires: tokens are hints, and a
-- worker also claims when its wait times out, so an expired set loses nothing. A set that
-- exists always has its TTL: whoever creates it adds all n tokens, and then sets it.
local function wake(key, n)
  n = math.min(n, WAKE_MAX)
  if n <= 0 then return end
  local tokens = {}
  for i = 1, n do tokens[2 * i - 1] = 0; tokens[2 * i] = i end
  if redis.call('ZADD', key, unpack(tokens)) == n then
    redis.call('PEXPIRE', key, WAKE_TTL_MS)
  end
end

-- `cmd key args...` with args taken BATCH at a time: Lua's unpack stops at about 8000
-- values, so no call ever unpacks a list whose length depends on the caller.
local function call_batched(cmd, key, args)
  for from = 1, #args, BATCH do
    redis.call(cmd, key, unpack(args, from, math.min(from + BATCH - 1, #args)))
  end
end

-- The payload of a task hash holding n chunks, fields F_CHUNK..k. `have` may hold chunks
-- already read (have[k] for k = 1..#have).
local function read_payload(key, n, have)
  local parts = {}
  for k = 1, math.min(n, #have) do parts[k] = have[k] end
  local from = #parts + 1
  while from <= n do
    local to = math.min(from + BATCH - 1, n)
    local names = {}
    for k = from, to do names[#names + 1] = F_CHUNK .. k end
    local got = redis.call('HMGET', key, unpack(names))
    for k = 1, #got do parts[from + k - 1] = got[k] or '' end
    from = to + 1
  end
  return table.concat(parts)
end

-- Delete a task's payload (its chunk count and every chunk) and any other `extra` fields.
local function delete_payload(key, n, extra)
  local names = {F_CHUNKS}
  for _, name in ipairs(extra) do names[#names + 1] = name end
  for k = 1, n do names[#names + 1] = F_CHUNK .. k end
  call_batched('HDEL', key, names)
end

-- The sequence counter gives submission order and fencing tokens, so it must outlive every
-- task hash of its queue. `ttl` is twice the longest life of a task hash; the TTL is
-- raised to it only once less than half is left (one PTTL per call, a PEXPIRE rarely), and
-- never lowered (a long defer may have raised it further).
local function keep_seq(key, ttl)
  if redis.call('PTTL', key) < ttl / 2 then redis.call('PEXPIRE', key, ttl) end
end

-- A task finished (completed, dead or cancelled): give each caller watching it (counted in
-- F_WAITERS by watch.lua) a token on its done list, which expires soon after. Nothing is
-- written for a task nobody watches.
local function notify(key, done_key, waiters)
  local n = math.min(tonumber(waiters) or 0, BATCH)
  if n <= 0 then return end
  local tokens = {}
  for i = 1, n do tokens[i] = '1' end
  redis.call('RPUSH', done_key, unpack(tokens))
  redis.call('PEXPIRE', done_key, DONE_TTL_MS)
  redis.call('HDEL', key, F_WAITERS)
end

local function finished(state)
  return state == S_COMPLETED or state == S_DEAD or state == S_CANCELLED
end
