-- Settles a reservation to what the request really used, in every scope, and ends its
-- lease. Tokens count from the moment they were reserved, so the token level changes by
-- the difference alone.
-- KEYS: as reserve.lua (3 per scope). ARGV: 1 lease member ("id:cost"), 2 reserved
--   tokens, 3 used tokens, 4 reserved cost, 5 real cost, 6 number of scopes, then 3 per
--   scope (1/0): a token limit applies, the request holds a lease, a budget applies
local member = ARGV[1]
local delta = tonumber(ARGV[3]) - tonumber(ARGV[2])
local held = tonumber(ARGV[4])
local real_cost = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
for i = 0, n - 1 do
  local k = i * 3
  local a = 6 + i * 3
  -- A state that is gone (expired) is not brought back without its expiry.
  if ARGV[a + 1] == '1' and delta ~= 0 and redis.call('EXISTS', KEYS[k + 1]) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[k + 1], 'tl', delta)
  end
  if ARGV[a + 2] == '1' and redis.call('ZREM', KEYS[k + 2], member) == 1 and ARGV[a + 3] == '1' then
    -- Only a hold still in place is released: an expired one was released on expiry.
    redis.call('HINCRBY', KEYS[k + 1], 'held', -held)
  end
  -- A counter that is gone (Redis lost it) is rebuilt from usage events instead.
  if ARGV[a + 3] == '1' and redis.call('EXISTS', KEYS[k + 3]) == 1 then
    redis.call('INCRBY', KEYS[k + 3], real_cost)
  end
end
return 1
