-- Cancel a job in Redis: flag it (a worker holding it stops the handler) and remove it from
-- its ready or delayed set. Returns 'removed', 'running' or 'absent'.
-- KEYS: 1 job hash, 2 cancel flag, 3 delayed zset, 4 leases zset
-- ARGV: 1 prefix, 2 job id, 3 flag ttl seconds
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[3]))
local queue = redis.call('HGET', KEYS[1], 'queue')
if not queue then
  return 'absent'
end
if redis.call('ZSCORE', KEYS[4], ARGV[2]) then
  return 'running'
end
redis.call('ZREM', ARGV[1] .. ':q:' .. queue .. ':ready', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[1])
return 'removed'
