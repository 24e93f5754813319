#!lua
-- Reliable fetch from one queue: move up to `count` jobs, best score first, from the ready set
-- into the lease set with a deadline, each owned by a fresh token. A job flagged cancelled is
-- dropped instead (its flag stays until it expires).
-- KEYS: 1 ready, 2 leases, 3 owners, 4 specs, 5 state, 6 cancelled
-- ARGV: 1 count, 2 deadline ms, 3 token base, 4 now ms
-- Returns a flat array: id, spec, attempt, token, ...
local count, now = tonumber(ARGV[1]), tonumber(ARGV[4])
local out = {}
local taken, n = 0, 0
while taken < count do
  local id = redis.call('ZPOPMIN', KEYS[1])[1]
  if not id then break end
  n = n + 1
  local spec = redis.call('HGET', KEYS[4], id)
  local state = redis.call('HGET', KEYS[5], id)
  if spec and state then
    local flag = redis.call('ZSCORE', KEYS[6], id)
    if flag and tonumber(flag) > now then
      redis.call('HDEL', KEYS[4], id)
      redis.call('HDEL', KEYS[5], id)
    else
      local token = ARGV[3] .. ':' .. n
      redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), id)
      redis.call('HSET', KEYS[3], id, token)
      out[#out + 1] = id
      out[#out + 1] = spec
      out[#out + 1] = string.match(state, '^(%d+)')
      out[#out + 1] = token
      taken = taken + 1
    end
  end
end
return out
