#!lua
-- Move the due jobs of one queue's delayed set into dispatch order, scored as a push would
-- (_lib.lua), judged by Redis TIME. A job flagged cancelled is dropped instead; expired cancel
-- flags are trimmed, as a TTL would. A few fair-clock entries of idle keys are pruned (an entry
-- at or below its band's clock says nothing the clock does not).
-- KEYS: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys, 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running, 14 cancelled
-- ARGV: 1 limit, 2 priority shift
-- Returns a flat array: id, spec, attempt, ...
local now = now_ms()
local shift = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[14], '-inf', now)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
local cfg = nil
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local spec = redis.call('HGET', KEYS[12], id)
  local state = redis.call('HGET', KEYS[3], id)
  if spec and state then
    if redis.call('ZSCORE', KEYS[14], id) then
      redis.call('HDEL', KEYS[12], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[5], id)
    else
      cfg = cfg or load_config()
      local attempt, base = string.match(state, '^(%d+):(%d+)')
      enqueue(cfg, id, attempt, tonumber(base), shift, redis.call('HGET', KEYS[5], id), now)
      out[#out + 1] = id
      out[#out + 1] = spec
      out[#out + 1] = attempt
    end
  end
end
fair_flush()
if redis.call('HLEN', KEYS[4]) > 64 then
  for _, field in ipairs(redis.call('HRANDFIELD', KEYS[4], 16)) do
    local band = string.match(field, '^l:(%d+):')
    if band and tonumber(redis.call('HGET', KEYS[4], field)) <= tonumber(redis.call('HGET', KEYS[4], 'v:' .. band) or '0') then
      redis.call('HDEL', KEYS[4], field)
    end
  end
end
return out
