#!lua
-- Aging (config `age` = "<everyMs>:<step>"): a waiting job gains `step` priority for every
-- `everyMs` it waited, judged by Redis TIME. A due job moves up as many bands as it earned and
-- re-enters dispatch order there as a push would (behind what already waits in that band; due
-- jobs in the order they came due, so they keep their FIFO order among themselves). A job no
-- longer waiting (leased, delayed, gone) leaves the aging set; without `age` the set goes.
-- KEYS: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys, 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running
-- ARGV: 1 limit, 2 priority shift
-- Returns how many jobs moved up.
local cfg = load_config()
if not cfg.age then
  redis.call('DEL', KEYS[8])
  return 0
end
local every, step = pair(cfg.age)
local shift = tonumber(ARGV[2])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for i = 1, #due, 2 do
  local id, at = due[i], tonumber(due[i + 1])
  redis.call('ZREM', KEYS[8], id)
  local state = redis.call('HGET', KEYS[3], id)
  local score = nil
  if state and not redis.call('ZSCORE', KEYS[10], id) then
    score = redis.call('ZSCORE', KEYS[1], id) or string.match(state, '^%d+:%d+:(%d+)$')
  end
  if score then
    local band = math.floor(tonumber(score) / shift)
    local steps = 1 + math.floor((now - at) / every)
    local to = math.max(0, band - steps * step)
    local attempt = string.match(state, '^(%d+)')
    unqueue(id, state)
    enqueue(cfg, id, attempt, to * shift, shift, redis.call('HGET', KEYS[5], id), at + (steps - 1) * every)
    moved = moved + 1
  end
end
fair_flush()
return moved
