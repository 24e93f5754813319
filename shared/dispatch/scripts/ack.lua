-- Release finished jobs the caller still owns and forget them; returns how many.
-- KEYS: 1 leases zset, 2 lease-owner hash
-- ARGV: 1 prefix, then pairs of job id, token
local done = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', ARGV[1] .. ':job:' .. id, ARGV[1] .. ':cancel:' .. id)
    done = done + 1
  end
end
return done
