#!lua
-- Reliable fetch from one queue, where the queue's controls are enforced (config hash): move
-- up to `count` jobs, best score first, from dispatch order into the lease set with a deadline
-- (Redis TIME + lease ms), each owned by a fresh token. Nothing while paused; no more leases than
-- `conc`; no more starts than `rl` allows in any window of its period (a sliding log of start
-- times); per key likewise (`kconc` over the running hash, `krl` over the key log). A lane whose
-- key is at its limit is held (its marker leaves the ready set until its retry time, or until a
-- release of its key), so it neither holds back other keys nor is scanned again. A job flagged
-- cancelled is dropped instead (its flag stays until it expires).
-- KEYS: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys, 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running, 14 cancelled, 15 rlog, 16 krlog
-- ARGV: 1 count, 2 lease ms, 3 token base, 4 priority shift
-- Returns {wait, now, id, spec, attempt, token, ...}: wait is 0 (nothing held back), -1 (paused),
-- -2 (concurrency full: a release wakes workers) or the ms until a held job may start; now is
-- the Redis time of the starts.
local count, lease_ms, shift = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local SCAN_EXTRA = 100
local cfg = load_config()
local now = now_ms()
if cfg.paused then return {-1, now} end
local budget = count
local conc = tonumber(cfg.conc)
if conc then
  budget = math.min(budget, conc - redis.call('ZCARD', KEYS[10]))
  if budget <= 0 then return {-2, now} end
end
local rl_n, rl_p
if cfg.rl then
  rl_n, rl_p = pair(cfg.rl)
  redis.call('ZREMRANGEBYSCORE', KEYS[15], '-inf', now - rl_p)
  local free = rl_n - redis.call('ZCARD', KEYS[15])
  if free <= 0 then
    local oldest = redis.call('ZRANGE', KEYS[15], 0, 0, 'WITHSCORES')
    return {math.max(1, tonumber(oldest[2]) + rl_p - now), now}
  end
  budget = math.min(budget, free)
end
local krl_n, krl_p
if cfg.krl then
  krl_n, krl_p = pair(cfg.krl)
end
local kconc = tonumber(cfg.kconc)

-- When a lane's key may start its next job (nil: now).
local function lane_block(rk, ck)
  if kconc and ck ~= '' and tonumber(redis.call('HGET', KEYS[13], ck) or '0') >= kconc then
    return now + CONC_RECHECK_MS
  end
  if krl_n and rk ~= '' then
    local lo, hi = '[' .. rk .. '\0', '(' .. rk .. '\1'
    redis.call('ZREMRANGEBYLEX', KEYS[16], lo, '(' .. rk .. '\0' .. string.format('%013.0f', now - krl_p + 1))
    if redis.call('ZLEXCOUNT', KEYS[16], lo, hi) >= krl_n then
      local oldest = redis.call('ZRANGEBYLEX', KEYS[16], lo, hi, 'LIMIT', 0, 1)[1]
      return tonumber(string.sub(oldest, #rk + 2, #rk + 14)) + krl_p
    end
  end
  return nil
end

-- Held lanes whose time has come go back into dispatch order at their head's score.
for _, lane in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', KEYS[7], lane)
  local head = redis.call('ZRANGEBYLEX', KEYS[6], '[' .. lane .. '\0', '(' .. lane .. '\1', 'LIMIT', 0, 1)[1]
  if head then redis.call('ZADD', KEYS[1], string.sub(head, #lane + 2, #lane + 17), '@' .. lane) end
end

local out = {0, now}
local wait = 0
local taken, scanned = 0, 0
local advanced = {}
while taken < budget and scanned < budget + SCAN_EXTRA do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  local id, score = popped[1], tonumber(popped[2])
  if not id then break end
  scanned = scanned + 1
  local rk, ck = '', ''
  if string.byte(id, 1) == 64 then -- '@': a lane's marker
    local lane = string.sub(id, 2)
    rk, ck = string.match(lane, '^(.-)\31(.*)$')
    id = nil
    local until_ms = lane_block(rk, ck)
    if until_ms then
      redis.call('ZADD', KEYS[7], until_ms, lane)
      if wait == 0 or until_ms - now < wait then wait = math.max(1, until_ms - now) end
    else
      local lo, hi = '[' .. lane .. '\0', '(' .. lane .. '\1'
      local heads = redis.call('ZRANGEBYLEX', KEYS[6], lo, hi, 'LIMIT', 0, 2)
      if heads[1] then
        redis.call('ZREM', KEYS[6], heads[1])
        score = tonumber(string.sub(heads[1], #lane + 2, #lane + 17))
        id = string.sub(heads[1], #lane + 19)
        if heads[2] then redis.call('ZADD', KEYS[1], string.sub(heads[2], #lane + 2, #lane + 17), '@' .. lane) end
      end
    end
  end
  if id then
    local spec = redis.call('HGET', KEYS[12], id)
    local state = redis.call('HGET', KEYS[3], id)
    if spec and state then
      local flag = redis.call('ZSCORE', KEYS[14], id)
      if flag and tonumber(flag) > now then
        redis.call('HDEL', KEYS[12], id)
        redis.call('HDEL', KEYS[3], id)
        redis.call('HDEL', KEYS[5], id)
      else
        local token = ARGV[3] .. ':' .. scanned
        redis.call('ZADD', KEYS[10], now + lease_ms, id)
        redis.call('HSET', KEYS[11], id, token)
        if rl_n then redis.call('ZADD', KEYS[15], now, token) end
        if krl_n and rk ~= '' then
          redis.call('ZADD', KEYS[16], 0, rk .. '\0' .. string.format('%013.0f', now) .. '\0' .. token)
        end
        if ck ~= '' then redis.call('HINCRBY', KEYS[13], ck, 1) end
        if cfg.age then redis.call('ZREM', KEYS[8], id) end
        local band = math.floor(score / shift)
        local vt = score - band * shift
        if (advanced[band] or 0) < vt then advanced[band] = vt end
        out[#out + 1] = id
        out[#out + 1] = spec
        out[#out + 1] = string.match(state, '^(%d+)')
        out[#out + 1] = token
        taken = taken + 1
      end
    end
  end
end
if taken < count and taken == budget and budget < count then
  -- A queue limit cut this pop short: say when the next start may go.
  if rl_n and redis.call('ZCARD', KEYS[15]) >= rl_n then
    wait = math.max(1, tonumber(redis.call('ZRANGE', KEYS[15], 0, 0, 'WITHSCORES')[2]) + rl_p - now)
  elseif conc then
    wait = -2
  end
elseif taken < budget then
  if scanned >= budget + SCAN_EXTRA then
    wait = 1 -- more to look at: come back at once
  elseif wait == 0 then
    local next_held = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')[2]
    if next_held then wait = math.max(1, tonumber(next_held) - now) end
  end
end
for band, vt in pairs(advanced) do
  local field = 'v:' .. band
  if vt > tonumber(redis.call('HGET', KEYS[4], field) or '0') then redis.call('HSET', KEYS[4], field, F(vt)) end
end
out[1] = wait
return out
