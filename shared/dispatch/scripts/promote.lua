-- Move delayed jobs that are due into their queues' ready sets.
-- KEYS: 1 delayed zset, 2 seq, 3 wake list
-- ARGV: 1 prefix, 2 now ms, 3 limit
-- Returns a flat array: id, spec, attempt, ...
local prefix = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local f = redis.call('HMGET', prefix .. ':job:' .. id, 'spec', 'attempt', 'queue', 'priority')
  if f[1] then
    local seq = redis.call('INCR', KEYS[2])
    redis.call('ZADD', prefix .. ':q:' .. f[3] .. ':ready',
      (10 - tonumber(f[4])) * 4398046511104 + seq, id)
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
  end
end
if #out > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 63)
end
return out
