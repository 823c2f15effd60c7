-- cancel: cancel each task in one step, wherever it is.
-- KEYS[1] ready zset, KEYS[2] due zset, KEYS[3] running zset, then 2 per task: its hash,
-- its done list. ARGV[1] result ttl ms, then the ids.
-- Returns per task: 0 unknown, 1 already finished, 2 cancelled while waiting, 3 cancelled
-- while running. A cancelled task loses its payload; its token moves on, so the worker
-- running it finds its renewal refused (and cancels it) and its settlement is stale.
-- Touches: the keys above only.
local result_ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local key, done_key = KEYS[2 + 2 * (i - 1)], KEYS[3 + 2 * (i - 1)]
  local f = redis.call('HMGET', key, F_STATE, F_CHUNKS, F_WAITERS)
  if not f[1] then
    out[#out + 1] = 0
  elseif finished(f[1]) then
    out[#out + 1] = 1
  else
    local was_running = redis.call('ZREM', KEYS[3], id) == 1
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    delete_payload(key, tonumber(f[2]) or 0, {F_RESULT})
    redis.call('HINCRBY', key, F_TOKEN, 1)
    redis.call('HSET', key, F_STATE, S_CANCELLED)
    redis.call('PEXPIRE', key, result_ttl)
    notify(key, done_key, f[3])
    out[#out + 1] = was_running and 3 or 2
  end
end
return out
