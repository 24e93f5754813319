#!lua
-- Give back leases of one queue and forget those jobs, where the token still owns the lease:
-- a worker's finished attempts, or the scheduler's dead leases once Postgres recorded them.
-- KEYS: 1 leases, 2 owners, 3 specs, 4 state
-- ARGV: pairs of job id, token
-- Returns how many were still owned.
local done = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    done = done + 1
  end
end
return done
