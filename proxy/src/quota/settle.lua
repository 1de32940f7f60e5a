-- Settles reservations to what their requests really used, in every scope, and ends their
-- leases. Many settle in one call: one request's settlement is the same steps as alone.
-- Tokens count from the moment they were reserved, so the token level changes by the
-- difference alone; a request that outlived its lease keeps its tokens reserved.
-- KEYS: as reserve.lua (3 per scope), for every reservation in turn.
-- ARGV: 1 number of reservations, then per reservation: id, reserved tokens, used
--   tokens, reserved cost, real cost, number of scopes, then 3 per scope (1/0): a token
--   limit applies, the request holds a lease, a budget applies
-- Returns a 1 per reservation, or {-1, error message} if it failed.
-- Library functions as locals: a global look-up on every use costs measurably here.
local tonumber, max, call = tonumber, math.max, redis.call
local pack, unpack_state = struct.pack, struct.unpack
local STATE = '<dddddd'
-- Settles the reservation whose arguments follow ARGV[a] and whose keys follow KEYS[k].
local function settle(a, k)
  local id = ARGV[a + 1]
  local delta = tonumber(ARGV[a + 3]) - tonumber(ARGV[a + 2])
  local held_text, real_cost = ARGV[a + 4], ARGV[a + 5]
  local held = tonumber(held_text)
  local n = tonumber(ARGV[a + 6])
  a = a + 6
  for _ = 1, n do
    local tpm, leased, budget = ARGV[a + 1] == '1', ARGV[a + 2] == '1', ARGV[a + 3] == '1'
    local state = KEYS[k + 1]
    -- Only a lease still in place is released (an expired one was when it expired). Its
    -- member is the one reserve.lua wrote: the held cost where the scope has a budget, else 0.
    local raw
    if leased then
      if call('ZREM', KEYS[k + 2], id .. ':' .. (budget and held_text or '0')) == 1 then
        raw = call('GET', state)
      end
    elseif tpm and delta ~= 0 then
      raw = call('GET', state)
    end
    -- A state that is gone (expired) is not brought back without its expiry.
    if raw then
      local rl, tl, ts, h, inflight, x = unpack_state(STATE, raw)
      if tpm then tl = tl + delta end
      if leased then
        inflight = max(inflight - 1, 0)
        if budget then h = max(h - held, 0) end
      end
      call('SET', state, pack(STATE, rl, tl, ts, h, inflight, x), 'KEEPTTL')
    end
    -- A counter that is gone (Redis lost it) is rebuilt from usage events instead.
    if budget and call('EXISTS', KEYS[k + 3]) == 1 then
      call('INCRBY', KEYS[k + 3], real_cost)
    end
    a, k = a + 3, k + 3
  end
end

-- One settlement's failure (a key holding something else) is its own: it answers an error
-- in its place and the others are settled.
local a, k, done = 1, 0, {}
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a + 6])
  local ok, err = pcall(settle, a, k)
  done[r] = ok and 1 or {-1, tostring(type(err) == 'table' and err.err or err)}
  a, k = a + 6 + 3 * n, k + 3 * n
end
return done
