-- Settles a reservation to what the request really used, in every scope, and frees its
-- concurrency slots.
-- KEYS: as reserve.lua (6 per scope). ARGV: 1 reservation id, 2 reserved tokens, 3 used tokens,
--   4 reserved cost, 5 real cost, 6 window ms, 7 number of scopes, then 2 per scope:
--   whether a budget applies (1/0), spend ttl s (0 = keep)
local id = ARGV[1]
local reserved = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
local hold = id .. ':' .. ARGV[4]
local real_cost = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local member = id .. ':' .. reserved
for i = 0, n - 1 do
  local k = i * 6
  local a = 7 + i * 2
  local score = redis.call('ZSCORE', KEYS[k + 2], member)
  if score then
    redis.call('ZREM', KEYS[k + 2], member)
    if used > 0 then redis.call('ZADD', KEYS[k + 2], score, id .. ':' .. used) end
    redis.call('INCRBY', KEYS[k + 3], used - reserved)
    redis.call('PEXPIRE', KEYS[k + 2], window)
    redis.call('PEXPIRE', KEYS[k + 3], window)
  end
  redis.call('ZREM', KEYS[k + 4], id)
  redis.call('ZREM', KEYS[k + 6], hold)
  -- A counter that is gone (Redis lost it) is rebuilt from usage events instead.
  if ARGV[a + 1] == '1' and redis.call('EXISTS', KEYS[k + 5]) == 1 then
    redis.call('INCRBY', KEYS[k + 5], real_cost)
    local ttl = tonumber(ARGV[a + 2])
    if ttl > 0 then redis.call('EXPIRE', KEYS[k + 5], ttl) end
  end
end
return 1
