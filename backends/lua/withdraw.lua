-- withdraw: a stopping worker takes back its offer (see claim.lua) and the tasks handed to it
-- that it has not taken (see enqueue.lua).
-- KEYS[1] idle zset, KEYS[2] the worker's inbox. ARGV[1] worker id.
-- Returns the inbox entries; their claims are the caller's to release.
-- Touches: the keys above only.
local suffix = '|' .. ARGV[1]
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, -#suffix) == suffix then redis.call('ZREM', KEYS[1], member) end
end
local got = redis.call('ZRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return got
