#!lua
-- Hand jobs of one queue to Redis, each ready now (run_at = 0) or delayed until run_at (ms):
-- one call per batch. Attempt-fenced: a job held at an older attempt is replaced (its lease,
-- if any, dropped: that worker's heartbeat and release then fail harmlessly); a job held at a
-- newer attempt, or at the same one, is left alone (0 in its place of the result). Except for
-- a fresh dispatch (a row Postgres moved from pending, which has no due copy): a waiting, not
-- leased, copy at its very attempt number is stale then (a cancelled run's, before a manual
-- retry) and is replaced.
-- KEYS: 1 ready, 2 delayed, 3 leases, 4 owners, 5 specs, 6 state, 7 seq
-- ARGV: per job: id, spec json, attempt, ready base, run_at ms, fresh (1 or 0)
-- Returns one 0/1 per job (1: placed).
local out = {}
for i = 1, #ARGV, 6 do
  local id, attempt, base, run_at = ARGV[i], tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
  local held = redis.call('HGET', KEYS[6], id)
  local placed = 1
  if held then
    local held_attempt = tonumber(string.match(held, '^(%d+)'))
    if held_attempt > attempt or (held_attempt == attempt
        and (ARGV[i + 5] ~= '1' or redis.call('ZSCORE', KEYS[3], id))) then
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
