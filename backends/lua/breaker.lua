-- breaker: every transition of a circuit breaker shared by all processes, one atomic step.
-- KEYS[1] the breaker hash. Fields: st (closed | open | half_open), f (consecutive failures
-- while closed), oa (opened-at, microseconds on the server clock), p (probes granted in this
-- half-open episode), pa (when the last probe was granted, microseconds), n (times opened
-- over the breaker's life; reset keeps it). Probes that never report (their process died)
-- expire after the reset timeout, and a new half-open episode begins, so a lost probe
-- cannot jam every process.
-- ARGV[1] op: allow | success | failure | state | reset
-- ARGV[2] failure threshold, ARGV[3] reset timeout in microseconds, ARGV[4] half-open max
-- calls, ARGV[5] ttl ms of the hash (refreshed by every write; the key never lacks a TTL).
-- Returns {state, flag, retry-after ms (0 unless open), opened count, now in microseconds};
-- flag is 1 when an allow was granted, when a failure opened the circuit (this call tripped
-- it), or when a success closed it. `now` is the time this decision was taken: the harness
-- judges every grant against the trips on this one clock. Microseconds, because two
-- decisions in the same millisecond are common and their order matters.
-- Touches: KEYS[1] only. Time comes from the server (now_us in the prelude), never from
-- the caller.
-- Open turns half-open lazily: the script works it out from oa on every call, and persists
-- it only when an op has something to write. Reads (state, a closed allow) write nothing,
-- so they never create the key.
local key, op = KEYS[1], ARGV[1]
local threshold = tonumber(ARGV[2])
local reset_us = tonumber(ARGV[3])
local max_calls = tonumber(ARGV[4])
local ttl_ms = ARGV[5]

local now = now_us()

local h = redis.call('HMGET', key, 'st', 'f', 'oa', 'p', 'n', 'pa')
local st = h[1] or 'closed'
local fails = tonumber(h[2]) or 0
local opened_at = tonumber(h[3]) or 0
local probes = tonumber(h[4]) or 0
local opened = tonumber(h[5]) or 0
local probed_at = tonumber(h[6]) or 0

if st == 'open' and now - opened_at >= reset_us then
  st = 'half_open'
  probes = 0
elseif st == 'half_open' and probes >= max_calls and now - probed_at >= reset_us then
  probes = 0
end

local granted = 0
local write = false

local function open_now()
  granted = 1
  st = 'open'
  opened_at = now
  opened = opened + 1
  fails = 0
  probes = 0
  write = true
end

if op == 'allow' then
  if st == 'closed' then
    granted = 1
  elseif st == 'half_open' and probes < max_calls then
    probes = probes + 1
    probed_at = now
    granted = 1
    write = true
  end
elseif op == 'success' then
  if st == 'half_open' then
    st = 'closed'
    fails = 0
    probes = 0
    granted = 1
    write = true
  elseif st == 'closed' and fails ~= 0 then
    fails = 0
    write = true
  end
  -- While open: a straggler that started before the trip proves nothing; ignored.
elseif op == 'failure' then
  if st == 'half_open' then
    open_now()
  elseif st == 'closed' then
    fails = fails + 1
    write = true
    if fails >= threshold then
      open_now()
    end
  end
  -- While open: a straggler's failure must not extend the open period; ignored.
elseif op == 'reset' then
  st = 'closed'
  fails = 0
  probes = 0
  write = true
elseif op ~= 'state' then
  return redis.error_reply('breaker: unknown op ' .. tostring(op))
end

if write then
  -- Times as decimal strings: a number argument may be formatted with too few digits.
  redis.call('HSET', key, 'st', st, 'f', fails, 'oa', string.format('%d', opened_at),
    'p', probes, 'n', opened, 'pa', string.format('%d', probed_at))
  redis.call('PEXPIRE', key, ttl_ms)
end

local retry = 0
if st == 'open' then
  -- Rounded up to whole milliseconds: waiting that long always finds it half-open.
  retry = math.floor((opened_at + reset_us - now + 999) / 1000)
  if retry < 0 then retry = 0 end
end
return {st, granted, retry, opened, now}
