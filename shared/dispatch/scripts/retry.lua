-- Release a failed attempt the caller owns into the delayed set as the next attempt.
-- KEYS: 1 leases zset, 2 lease-owner hash, 3 delayed zset, 4 job hash
-- ARGV: 1 job id, 2 token, 3 next attempt, 4 run_at ms
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[4], 'attempt', ARGV[3])
redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), ARGV[1])
return 1
