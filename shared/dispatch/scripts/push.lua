#!lua
-- Hand jobs of one queue to Redis, each ready now (run_at = 0) or delayed until run_at (ms):
-- one call per batch. Attempt-fenced: a job held at an older attempt is replaced (its lease,
-- if any, dropped: that worker's heartbeat and release then fail harmlessly); a job held at
-- the same or a newer attempt is left alone (0 in its place of the result).
-- KEYS: 1 ready, 2 delayed, 3 leases, 4 owners, 5 specs, 6 state, 7 seq
-- ARGV: per job: id, spec json, attempt, ready base, run_at ms
-- Returns one 0/1 per job (1: placed).
local out = {}
for i = 1, #ARGV, 5 do
  local id, attempt, base, run_at = ARGV[i], tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
  local held = redis.call('HGET', KEYS[6], id)
  local placed = 1
  if held then
    if tonumber(string.match(held, '^(%d+)')) >= attempt then
      placed = 0
    else
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
      redis.call('ZREM', KEYS[3], id)
      redis.call('HDEL', KEYS[4], id)
    end
  end
  if placed == 1 then
    redis.call('HSET', KEYS[5], id, ARGV[i + 1])
    redis.call('HSET', KEYS[6], id, attempt .. ':' .. base)
    if run_at > 0 then
      redis.call('ZADD', KEYS[2], run_at, id)
    else
      redis.call('ZADD', KEYS[1], tonumber(base) + redis.call('INCR', KEYS[7]), id)
    end
  end
  out[#out + 1] = placed
end
return out
