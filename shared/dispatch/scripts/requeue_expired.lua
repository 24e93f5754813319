-- Take back jobs whose lease deadline passed (their worker died or hung). A job with
-- attempts left goes to the delayed set as its next attempt, due now; one without is
-- forgotten and reported as exhausted.
-- KEYS: 1 leases zset, 2 lease-owner hash, 3 delayed zset
-- ARGV: 1 prefix, 2 now ms, 3 limit
-- Returns a flat array: id, spec, attempt that was lost, outcome ('retry' | 'exhausted'), ...
local prefix = ARGV[1]
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  local job = prefix .. ':job:' .. id
  local f = redis.call('HMGET', job, 'spec', 'attempt', 'max')
  if f[1] then
    local attempt = tonumber(f[2])
    local outcome = 'retry'
    if attempt >= tonumber(f[3]) then
      redis.call('DEL', job)
      outcome = 'exhausted'
    else
      redis.call('HSET', job, 'attempt', attempt + 1)
      redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), id)
    end
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = outcome
  end
end
return out
