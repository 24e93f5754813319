#!lua
-- Drop waiting copies of jobs of one queue whose rows are over (or about to be dispatched
-- afresh), up to a given attempt; a leased copy is left to its worker, which releases it.
-- KEYS: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys, 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running
-- ARGV: pairs of job id, highest attempt to drop
-- Returns how many were dropped.
local dropped = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  local state = redis.call('HGET', KEYS[3], id)
  if state and tonumber(string.match(state, '^(%d+)')) <= tonumber(ARGV[i + 1])
      and not redis.call('ZSCORE', KEYS[10], id) then
    unqueue(id, state)
    redis.call('ZREM', KEYS[8], id)
    redis.call('HDEL', KEYS[12], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
    dropped = dropped + 1
  end
end
return dropped
