-- Library shared by the scripts on the common key layout (scripts.py inserts it after `#!lua`).
-- The first 13 KEYS of every such script: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys,
-- 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running.
--
-- Dispatch order: a ready score is band * shift + vt. band = 10 - priority (a lower score pops
-- first); vt is the job's virtual start time in its band (start-time fair queuing): a job of
-- fairness key k with weight w gets vt = max(clock[band], last[band, k]) + max(1, UNIT // w),
-- so keys take turns by weight and one key alone (the default key '' of keyless jobs) is FIFO.
-- Jobs with a rate-limit or concurrency key wait in their lane (rk SEP ck) in the lex zset
-- `lanes` ("<lane>\0<score:16 digits>\0<id>"); the ready set holds one marker "@<lane>" per
-- lane at its head's score, or none while the lane is held (zset `held`: lane -> retry ms).
local SEP = '\31'
local UNIT = 1000
local CONC_RECHECK_MS = 1000

local function F(n) return string.format('%.0f', n) end
local function S16(n) return string.format('%016.0f', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function load_config()
  local raw = redis.call('HGETALL', KEYS[9])
  local cfg = {}
  for i = 1, #raw, 2 do cfg[raw[i]] = raw[i + 1] end
  return cfg
end

-- packed job keys "fk SEP rk SEP ck" -> fk, rk, ck ('' when absent)
-- A config field "<a>:<b>" (a limit "count:period_ms", aging "every_ms:step") as two numbers.
local function pair(text)
  local a, b = string.match(text, '^(%d+):(%d+)$')
  return tonumber(a), tonumber(b)
end

local function unpack_keys(packed)
  if not packed then return '', '', '' end
  local fk, rk, ck = string.match(packed, '^(.-)\31(.-)\31(.*)$')
  return fk or '', rk or '', ck or ''
end

local function lane_of(rk, ck)
  if rk == '' and ck == '' then return nil end
  return rk .. SEP .. ck
end

-- The fair clocks read in this call, written back once by fair_flush.
local clocks, dirty = {}, {}
local function clock(field)
  local v = clocks[field]
  if v == nil then
    v = tonumber(redis.call('HGET', KEYS[4], field) or '0')
    clocks[field] = v
  end
  return v
end

local function fair_vt(cfg, band, fk)
  local last = 'l:' .. band .. ':' .. fk
  local weight = tonumber(cfg['w:' .. fk] or '1') or 1
  if weight < 1 then weight = 1 end
  local vt = math.max(clock('v:' .. band), clock(last)) + math.max(1, math.floor(UNIT / weight))
  clocks[last] = vt
  dirty[last] = true
  return vt
end

local function fair_flush()
  local args = {}
  for field in pairs(dirty) do
    args[#args + 1] = field
    args[#args + 1] = F(clocks[field])
  end
  if #args > 0 then redis.call('HSET', KEYS[4], unpack(args)) end
end

-- Put a waiting job into dispatch order in band `base / shift` (state records where it is).
-- `since`: the time its next aging step counts from.
local function enqueue(cfg, id, attempt, base, shift, packed, since)
  local band = math.floor(base / shift)
  local fk, rk, ck = unpack_keys(packed)
  local score = band * shift + fair_vt(cfg, band, fk)
  local lane = lane_of(rk, ck)
  if lane then
    local s = S16(score)
    redis.call('ZADD', KEYS[6], 0, lane .. '\0' .. s .. '\0' .. id)
    redis.call('HSET', KEYS[3], id, attempt .. ':' .. F(base) .. ':' .. s)
    if not redis.call('ZSCORE', KEYS[7], lane) then
      redis.call('ZADD', KEYS[1], 'LT', F(score), '@' .. lane)
    end
  else
    redis.call('HSET', KEYS[3], id, attempt .. ':' .. F(base))
    redis.call('ZADD', KEYS[1], F(score), id)
  end
  if cfg.age and band > 0 then
    redis.call('ZADD', KEYS[8], since + tonumber(string.match(cfg.age, '^(%d+):')), id)
  end
end

-- Take a waiting (not leased) copy out of dispatch order: ready, delayed or its lane.
-- A lane marker left at the removed head's score is harmless: pop takes the lane's real head.
local function unqueue(id, state)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  local s = string.match(state, '^%d+:%d+:(%d+)$')
  if s then
    local _, rk, ck = unpack_keys(redis.call('HGET', KEYS[5], id))
    local lane = lane_of(rk, ck)
    if lane then redis.call('ZREM', KEYS[6], lane .. '\0' .. s .. '\0' .. id) end
  end
end

-- A lease of this job goes: give back its concurrency-key slot, and make the job's lane,
-- if its concurrency limit held it, due now.
local function release_slot(id)
  local packed = redis.call('HGET', KEYS[5], id)
  if not packed then return end
  local _, rk, ck = unpack_keys(packed)
  if ck == '' then return end
  if redis.call('HINCRBY', KEYS[13], ck, -1) <= 0 then redis.call('HDEL', KEYS[13], ck) end
  redis.call('ZADD', KEYS[7], 'XX', 0, rk .. SEP .. ck)
end
