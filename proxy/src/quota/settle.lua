-- Settles a reservation to what the request really used, in every scope, and ends its
-- lease. Tokens count from the moment they were reserved, so the token level changes by
-- the difference alone; a request that outlived its lease keeps its tokens reserved.
-- KEYS: as reserve.lua (3 per scope). ARGV: 1 reservation id, 2 reserved
--   tokens, 3 used tokens, 4 reserved cost, 5 real cost, 6 number of scopes, then 3 per
--   scope (1/0): a token limit applies, the request holds a lease, a budget applies
-- Library functions as locals: a global look-up on every use costs measurably here.
local tonumber, max, call, insert, unpack = tonumber, math.max, redis.call, table.insert, unpack
local id = ARGV[1]
local delta = tonumber(ARGV[3]) - tonumber(ARGV[2])
local held = tonumber(ARGV[4])
local real_cost = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
for i = 0, n - 1 do
  local k = i * 3
  local a = 6 + i * 3
  if ARGV[a + 2] == '1' then
    -- Only a lease still in place is released (an expired one was when it expired). Its
    -- member is the one reserve.lua wrote: the held cost where the scope has a budget, else 0.
    local member = id .. ':' .. (ARGV[a + 3] == '1' and ARGV[4] or '0')
    local f = call('ZREM', KEYS[k + 2], member) == 1
      and call('HMGET', KEYS[k + 1], 'tl', 'held', 'n')
    -- n is written with every lease: without it the state expired, and is not brought back
    -- without its expiry.
    if f and f[3] then
      local fields = {'n', max((tonumber(f[3]) or 1) - 1, 0)}
      if ARGV[a + 1] == '1' then
        insert(fields, 'tl'); insert(fields, (tonumber(f[1]) or 0) + delta)
      end
      if ARGV[a + 3] == '1' then
        insert(fields, 'held'); insert(fields, max((tonumber(f[2]) or 0) - held, 0))
      end
      call('HSET', KEYS[k + 1], unpack(fields))
    end
  elseif ARGV[a + 1] == '1' and delta ~= 0 then
    -- A state that is gone (expired) is not brought back without its expiry.
    local tl = call('HGET', KEYS[k + 1], 'tl')
    if tl then call('HSET', KEYS[k + 1], 'tl', tonumber(tl) + delta) end
  end
  -- A counter that is gone (Redis lost it) is rebuilt from usage events instead.
  if ARGV[a + 3] == '1' and call('EXISTS', KEYS[k + 3]) == 1 then
    call('INCRBY', KEYS[k + 3], real_cost)
  end
end
return 1
