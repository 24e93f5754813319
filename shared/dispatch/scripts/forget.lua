#!lua
-- Drop waiting copies of jobs of one queue whose rows are over (or about to be dispatched
-- afresh), up to a given attempt; a leased copy is left to its worker, which releases it.
-- KEYS: 1 ready, 2 delayed, 3 leases, 4 specs, 5 state
-- ARGV: pairs of job id, highest attempt to drop
-- Returns how many were dropped.
local dropped = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  local state = redis.call('HGET', KEYS[5], id)
  if state and tonumber(string.match(state, '^(%d+)')) <= tonumber(ARGV[i + 1])
      and not redis.call('ZSCORE', KEYS[3], id) then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
    dropped = dropped + 1
  end
end
return dropped
