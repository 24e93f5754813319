#!lua
-- Read (never change) the leases of one queue whose deadline passed by Redis TIME: the scheduler
-- records the lost attempts in Postgres first, then moves Redis.
-- KEYS: 1 leases, 2 owners, 3 specs, 4 state
-- ARGV: 1 limit
-- Returns a flat array: id, spec, attempt, token, ...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  local token = redis.call('HGET', KEYS[2], id)
  local spec = redis.call('HGET', KEYS[3], id)
  local state = redis.call('HGET', KEYS[4], id)
  if token and spec and state then
    out[#out + 1] = id
    out[#out + 1] = spec
    out[#out + 1] = string.match(state, '^(%d+)')
    out[#out + 1] = token
  end
end
return out
