#!lua
-- Move the due jobs of one queue's delayed set into its ready set. A job flagged cancelled is
-- dropped instead; expired cancel flags are trimmed, as a TTL would.
-- KEYS: 1 delayed, 2 ready, 3 specs, 4 state, 5 seq, 6 cancelled
-- ARGV: 1 now ms, 2 limit
-- Returns a flat array: id, spec, attempt, ...
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local spec = redis.call('HGET', KEYS[3], id)
  local state = redis.call('HGET', KEYS[4], id)
  if spec and state then
    if redis.call('ZSCORE', KEYS[6], id) then
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[4], id)
    else
      local attempt, base = string.match(state, '^(%d+):(%d+)$')
      redis.call('ZADD', KEYS[2], tonumber(base) + redis.call('INCR', KEYS[5]), id)
      out[#out + 1] = id
      out[#out + 1] = spec
      out[#out + 1] = attempt
    end
  end
end
return out
