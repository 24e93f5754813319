#!lua
-- Raise a job's cancel flag (pop and promote drop a flagged waiting copy; a worker running it
-- stops the handler) and say where its copy is: 'waiting', 'running' or 'absent'.
-- KEYS: 1 cancelled, 2 leases, 3 state
-- ARGV: 1 job id, 2 flag expiry ms
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 'running'
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return 'waiting'
end
return 'absent'
