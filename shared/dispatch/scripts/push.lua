#!lua
-- Hand jobs of one queue to Redis, each ready now (run_at = 0) or delayed until run_at (ms):
-- one call per batch. Attempt-fenced: a job held at an older attempt is replaced (its lease,
-- if any, dropped and its concurrency slot given back: that worker's heartbeat and release then
-- fail harmlessly); a job held at a newer attempt, or at the same one, is left alone (0 in its
-- place of the result). Except for a fresh dispatch (a row Postgres moved from pending, which has
-- no due copy): a waiting, not leased, copy at its very attempt number is stale then (a cancelled
-- run's, before a manual retry) and is replaced. Ready jobs are scored as _lib.lua describes.
-- KEYS: 1 ready, 2 delayed, 3 state, 4 fair, 5 jobkeys, 6 lanes, 7 held, 8 aging, 9 config, 10 leases, 11 owners, 12 specs, 13 running
-- ARGV: 1 priority shift, then per job: id, spec json, attempt, ready base, run_at ms, fresh (1 or 0), packed keys ('' for none)
-- Returns one 0/1 per job (1: placed), then 1 if the queue is paused (else 0).
local shift = tonumber(ARGV[1])
local cfg = load_config()
local now = now_ms()
local out = {}
for i = 2, #ARGV, 7 do
  local id, attempt, base, run_at = ARGV[i], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local packed = ARGV[i + 6]
  local held = redis.call('HGET', KEYS[3], id)
  local placed = 1
  if held then
    local held_attempt = tonumber(string.match(held, '^(%d+)'))
    local leased = redis.call('ZSCORE', KEYS[10], id)
    if held_attempt > attempt or (held_attempt == attempt and (ARGV[i + 5] ~= '1' or leased)) then
      placed = 0
    elseif leased then
      release_slot(id)
      redis.call('ZREM', KEYS[10], id)
      redis.call('HDEL', KEYS[11], id)
    else
      unqueue(id, held)
    end
  end
  if placed == 1 then
    redis.call('HSET', KEYS[12], id, ARGV[i + 1])
    if packed ~= '' then
      redis.call('HSET', KEYS[5], id, packed)
    elseif held then
      redis.call('HDEL', KEYS[5], id)
    end
    if run_at > 0 then
      redis.call('HSET', KEYS[3], id, attempt .. ':' .. F(base))
      redis.call('ZADD', KEYS[2], run_at, id)
    else
      enqueue(cfg, id, attempt, base, shift, packed ~= '' and packed or nil, now)
    end
  end
  out[#out + 1] = placed
end
fair_flush()
out[#out + 1] = cfg.paused and 1 or 0
return out
