-- Hand jobs to Redis, each ready now (run_at = 0) or delayed until run_at (ms): one call per
-- batch. Idempotent: a job Redis already holds is left alone (0 in its place of the result).
-- Job and ready-set keys are derived from the prefix: ids and queues are data.
-- KEYS: 1 seq, 2 queues set, 3 wake list, 4 delayed zset
-- ARGV: 1 prefix, then per job: id, spec json, attempt, max attempts, queue, priority, run_at ms
-- Returns one 0/1 per job. Every job made ready leaves one wake token (at most 64 kept).
local prefix = ARGV[1]
local out = {}
local woken = 0
for i = 2, #ARGV, 7 do
  local id, queue, priority, run_at = ARGV[i], ARGV[i + 4], tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
  local job = prefix .. ':job:' .. id
  if redis.call('EXISTS', job) == 1 then
    out[#out + 1] = 0
  else
    redis.call('HSET', job, 'spec', ARGV[i + 1], 'attempt', ARGV[i + 2], 'max', ARGV[i + 3],
      'queue', queue, 'priority', ARGV[i + 5])
    redis.call('SADD', KEYS[2], queue)
    if run_at > 0 then
      redis.call('ZADD', KEYS[4], run_at, id)
    else
      local seq = redis.call('INCR', KEYS[1])
      redis.call('ZADD', prefix .. ':q:' .. queue .. ':ready', (10 - priority) * 4398046511104 + seq, id)
      woken = woken + 1
    end
    out[#out + 1] = 1
  end
end
if woken > 0 then
  local tokens = {}
  for _ = 1, math.min(woken, 64) do
    tokens[#tokens + 1] = '1'
  end
  redis.call('LPUSH', KEYS[3], unpack(tokens))
  redis.call('LTRIM', KEYS[3], 0, 63)
end
return out
