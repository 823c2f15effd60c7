-- renew: extend the leases the caller still holds.
-- KEYS[1] running zset, KEYS[1+i] task hash of claim i.
-- ARGV[1] lease ms, ARGV[2] backstop ttl ms, then 2 per claim: id, token.
-- Returns {1 held | 0 lost, ...} per claim. Touches: the keys above only.
local now = now_ms()
local lease, backstop = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, (#ARGV - 2) / 2 do
  local id, token = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  local key = KEYS[1 + i]
  local f = redis.call('HMGET', key, F_TOKEN, F_STATE)
  if f[1] == token and f[2] == S_RUNNING then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, id)
    redis.call('PEXPIRE', key, lease + backstop)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
