-- settle: apply outcomes whose fencing token is still current.
-- KEYS[1] running zset, KEYS[2] due zset, KEYS[3] dead zset, KEYS[4] wake list,
-- KEYS[4+i] task hash of outcome i.
-- ARGV[1] result ttl ms, ARGV[2] dead ttl ms, ARGV[3] backstop ttl ms,
-- then 5 per outcome: id, token, kind (c complete | r retry | d dead), delay ms, data
-- (the result for c, the error text for r and d).
-- Returns {1 applied (now, or already by this same token and kind) | 0 stale, ...}. Touches: the keys above only. The payload field is
-- deleted in the same step as a complete; a dead task keeps it (p1..pn) for requeue.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local result_ttl, dead_ttl, backstop = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local retried_now = 0
local AFTER = {c = 'completed', r = 'retrying', d = 'dead'}
for i = 1, (#ARGV - 3) / 5 do
  local b = 3 + (i - 1) * 5
  local id, token, kind = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local key = KEYS[4 + i]
  local f = redis.call('HMGET', key, 'tk', 'st', 'pn')
  if f[1] == token and f[2] == 'running' then
    redis.call('ZREM', KEYS[1], id)
    if kind == 'c' then
      local chunks = tonumber(f[3]) or 0
      local names = {'pn', 'e'}
      for k = 1, chunks do names[#names + 1] = 'p' .. k end
      redis.call('HDEL', key, unpack(names))
      redis.call('HSET', key, 'st', 'completed', 'r', ARGV[b + 5])
      redis.call('PEXPIRE', key, result_ttl)
    elseif kind == 'r' then
      local delay = tonumber(ARGV[b + 4])
      redis.call('HSET', key, 'st', 'retrying', 'e', ARGV[b + 5])
      redis.call('ZADD', KEYS[2], now + delay, id)
      redis.call('PEXPIRE', key, delay + backstop)
    else
      redis.call('HSET', key, 'st', 'dead', 'e', ARGV[b + 5])
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('PEXPIRE', key, dead_ttl)
    end
    out[i] = 1
  elseif f[1] == token and f[2] == AFTER[kind] then
    out[i] = 1  -- this very settlement, sent again because its reply was lost
  else
    out[i] = 0
  end
end
return out
