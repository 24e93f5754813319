#!lua
-- Extend the leases of one queue a worker still owns to Redis TIME + lease ms; returns the ids
-- it no longer owns.
-- KEYS: 1 leases, 2 owners
-- ARGV: 1 lease ms, then pairs of job id, token
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
