-- Reliable fetch: move up to `count` jobs, best priority first across the given queues,
-- from their ready sets into the lease set with a deadline, owned by a fresh token.
-- Job and cancel keys are derived from the prefix: ids are data, not known up front.
-- Every ready job left one wake token; the caller consumed one to get here, so taking n jobs
-- drops n - 1 more (else each would wake a worker, now or later, to find nothing).
-- KEYS: 1 leases zset, 2 lease-owner hash, 3 wake list, 4.. ready zsets
-- ARGV: 1 prefix, 2 count, 3 deadline ms, 4 token base
-- Returns a flat array: id, spec, attempt, token, ...
local prefix = ARGV[1]
local count = tonumber(ARGV[2])
local out = {}
local taken = 0
local n = 0
while taken < count do
  local best_key, best_score = nil, nil
  for i = 4, #KEYS do
    local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if head[1] and (best_score == nil or tonumber(head[2]) < best_score) then
      best_key, best_score = KEYS[i], tonumber(head[2])
    end
  end
  if best_key == nil then break end
  local id = redis.call('ZPOPMIN', best_key)[1]
  local job = prefix .. ':job:' .. id
  local fields = redis.call('HMGET', job, 'spec', 'attempt')
  n = n + 1
  if fields[1] then
    if redis.call('EXISTS', prefix .. ':cancel:' .. id) == 1 then
      redis.call('DEL', job)
    else
      local token = ARGV[4] .. ':' .. n
      redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), id)
      redis.call('HSET', KEYS[2], id, token)
      out[#out + 1] = id
      out[#out + 1] = fields[1]
      out[#out + 1] = fields[2]
      out[#out + 1] = token
      taken = taken + 1
    end
  end
end
if taken > 1 then
  redis.call('LTRIM', KEYS[3], taken - 1, -1)
end
return out
