#!lua
-- Read only: why each of some waiting jobs of one queue is not handed out at this instant, by
-- the very rules pop.lua applies (Redis TIME, the same windows and counts).
-- KEYS: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys, 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running, 14 rlog, 15 krlog
-- ARGV: triples of job id, rate-limit key, concurrency key ('' for none)
-- Returns {paused, then per job: waiting (0/1), ahead (-1: not waiting in dispatch order),
-- concurrency scope ('' none, 'q' queue, 'k' key), running, limit, rate scope, until ms}.
local cfg = load_config()
local now = now_ms()
local out = {cfg.paused and 1 or 0}
local conc, kconc = tonumber(cfg.conc), tonumber(cfg.kconc)
local running = redis.call('ZCARD', KEYS[10])
local rl_until = nil
if cfg.rl then
  local n, p = pair(cfg.rl)
  local live = redis.call('ZRANGEBYSCORE', KEYS[14], '(' .. (now - p), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if live[2] and redis.call('ZCOUNT', KEYS[14], '(' .. (now - p), '+inf') >= n then rl_until = tonumber(live[2]) + p end
end
local krl_n, krl_p
if cfg.krl then
  krl_n, krl_p = pair(cfg.krl)
end
for i = 1, #ARGV, 3 do
  local id, rk, ck = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local state = redis.call('HGET', KEYS[3], id)
  local ahead = -1
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score then
    ahead = redis.call('ZRANK', KEYS[1], id)
  elseif state and not redis.call('ZSCORE', KEYS[10], id) then
    local s = string.match(state, '^%d+:%d+:(%d+)$')
    if s then
      local lane = rk .. SEP .. ck
      ahead = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. tonumber(s))
          + redis.call('ZLEXCOUNT', KEYS[6], '[' .. lane .. '\0', '(' .. lane .. '\0' .. s)
    end
  end
  out[#out + 1] = ahead >= 0 and 1 or 0
  out[#out + 1] = ahead
  if conc and running >= conc then
    out[#out + 1] = 'q'; out[#out + 1] = running; out[#out + 1] = conc
  elseif kconc and ck ~= '' and tonumber(redis.call('HGET', KEYS[13], ck) or '0') >= kconc then
    out[#out + 1] = 'k'; out[#out + 1] = tonumber(redis.call('HGET', KEYS[13], ck)); out[#out + 1] = kconc
  else
    out[#out + 1] = ''; out[#out + 1] = 0; out[#out + 1] = 0
  end
  if rl_until then
    out[#out + 1] = 'q'; out[#out + 1] = rl_until
  elseif krl_n and rk ~= '' then
    local lo = '(' .. rk .. '\0' .. string.format('%013.0f', now - krl_p) .. '\255'
    local live = redis.call('ZRANGEBYLEX', KEYS[15], lo, '(' .. rk .. '\1', 'LIMIT', 0, 1)
    if live[1] and redis.call('ZLEXCOUNT', KEYS[15], lo, '(' .. rk .. '\1') >= krl_n then
      out[#out + 1] = 'k'; out[#out + 1] = tonumber(string.sub(live[1], #rk + 2, #rk + 14)) + krl_p
    else
      out[#out + 1] = ''; out[#out + 1] = 0
    end
  else
    out[#out + 1] = ''; out[#out + 1] = 0
  end
end
return out
