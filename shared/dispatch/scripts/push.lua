-- Hand one job to Redis, ready now (run_at = 0) or delayed until run_at (ms).
-- Idempotent: a job Redis already holds is left alone (returns 0).
-- KEYS: 1 job hash, 2 ready zset, 3 seq, 4 queues set, 5 wake list, 6 delayed zset
-- ARGV: 1 job id, 2 spec json, 3 attempt, 4 max attempts, 5 queue, 6 priority, 7 run_at ms
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'attempt', ARGV[3], 'max', ARGV[4],
  'queue', ARGV[5], 'priority', ARGV[6])
redis.call('SADD', KEYS[4], ARGV[5])
local run_at = tonumber(ARGV[7])
if run_at > 0 then
  redis.call('ZADD', KEYS[6], run_at, ARGV[1])
  return 1
end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], (10 - tonumber(ARGV[6])) * 4398046511104 + seq, ARGV[1])
redis.call('LPUSH', KEYS[5], '1')
redis.call('LTRIM', KEYS[5], 0, 63)
return 1
