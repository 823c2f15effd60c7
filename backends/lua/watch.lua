-- watch: register the caller as a watcher of each unfinished task, so that the step that
-- finishes it pushes a token on its done list (see notify in the prelude).
-- KEYS[i] task hash i. Returns per task: 0 unknown, 1 finished, 2 now watched.
-- Touches: the keys above only.
local out = {}
for i = 1, #KEYS do
  local state = redis.call('HGET', KEYS[i], F_STATE)
  if not state then
    out[i] = 0
  elseif finished(state) then
    out[i] = 1
  else
    redis.call('HINCRBY', KEYS[i], F_WAITERS, 1)
    out[i] = 2
  end
end
return out
