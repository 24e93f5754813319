#!lua
-- Give back leases of one queue and forget those jobs, where the token still owns the lease:
-- a worker's finished attempts, or the scheduler's dead leases once Postgres recorded them.
-- Every lease that goes gives back its concurrency-key slot (the queue's own slots are the
-- lease count itself).
-- KEYS: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys, 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running
-- ARGV: pairs of job id, token
-- Returns {released, slots}: how many were still owned, and how many of those freed a slot of a
-- concurrency limit (the caller wakes that many workers).
local done = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[11], id) == ARGV[i + 1] then
    release_slot(id)
    redis.call('ZREM', KEYS[10], id)
    redis.call('HDEL', KEYS[11], id)
    redis.call('HDEL', KEYS[12], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
    done = done + 1
  end
end
local slots = 0
if done > 0 then
  local limits = redis.call('HMGET', KEYS[9], 'conc', 'kconc')
  if limits[1] or limits[2] then slots = done end
end
return {done, slots}
