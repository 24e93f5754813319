#!lua
-- Extend the leases of one queue a worker still owns; returns the ids it no longer owns.
-- KEYS: 1 leases, 2 owners
-- ARGV: 1 new deadline ms, then pairs of job id, token
local lost = {}
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]), ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
