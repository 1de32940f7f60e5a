-- Settles reservations to what their requests really used, in every scope, and ends their
-- leases. Many settle in one call: one request's settlement is the same steps as alone.
-- Tokens count from the moment they were reserved, so the token level changes by the
-- difference alone; a request that outlived its lease keeps its tokens reserved.
-- A settlement applies once, however often it is sent (a retry after a lost answer, and
-- the first attempt arriving late after a stall): one that holds a lease applies only if it
-- ends it; one that holds none but changes a token level leaves a "settled" marker, and
-- applies only if it finds none.
-- KEYS, for every reservation in turn: its "settled" marker, then as reserve.lua (3 per
--   scope).
-- ARGV: 1 number of reservations, then 4 per reservation:
--   numbers, as little-endian doubles: reserved tokens, used tokens, reserved cost, number
--     of scopes, gated (1: a retry of a settlement that may have been applied already, so
--     it applies only if it finds a lease of its own to end, or, holding none, no marker;
--     0: it applies), the marker's time to live (ms), then 3 per scope (1/0): a token
--     limit applies, the request holds a lease, a budget applies
--   its lease member with the cost held, the member without (as reserve.lua wrote them),
--   and the real cost (micro-USD, as text: INCRBY takes it as it is)
-- Returns a 1 per reservation, or {-1, error message} if it failed.
local max, call, unpack = math.max, redis.call, unpack
local pack, unpack_packed = struct.pack, struct.unpack
local STATE = '<dddddd'

-- Settles the reservation whose keys follow KEYS[k].
local function settle(k, n, numbers, at, delta, held, gated, marker_ttl, with_cost, without,
    real_cost)
  local marker = KEYS[k + 1]
  k = k + 1
  local flags, names, ended, leases = {}, {}, false, false
  for i = 1, n do
    local tpm, leased, budget
    tpm, leased, budget, at = unpack_packed('<ddd', numbers, at)
    tpm, leased, budget = tpm == 1, leased == 1, budget == 1
    -- Only a lease still in place is released (an expired one was when it expired).
    local update = false
    if leased then
      leases = true
      update = call('ZREM', KEYS[k + 3 * i - 1], budget and with_cost or without) == 1
      ended = ended or update
    elseif tpm and delta ~= 0 then
      update = true
    end
    flags[i] = {tpm, leased, budget, update}
    if update then names[#names + 1] = KEYS[k + 3 * i - 2] end
    if budget then names[#names + 1] = KEYS[k + 3 * i] end
  end
  -- A retry that finds no lease of its own: the first attempt was applied.
  if leases and gated and not ended then return end
  if #names == 0 then return end
  -- No lease to tell by: the marker tells whether this settlement was applied already.
  if not leases and not call('SET', marker, '1', 'NX', 'PX', marker_ttl) then return end
  -- Every state to change and every spend counter in one command.
  local read, j = call('MGET', unpack(names)), 0
  for i = 1, n do
    local tpm, leased, budget, update = unpack(flags[i])
    if update then
      j = j + 1
      local raw = read[j]
      -- A state that is gone (expired) is not brought back without its expiry.
      if raw then
        local rl, tl, ts, h, inflight, x = unpack_packed(STATE, raw)
        if tpm then tl = tl + delta end
        if leased then
          inflight = max(inflight - 1, 0)
          if budget then h = max(h - held, 0) end
        end
        call('SET', names[j], pack(STATE, rl, tl, ts, h, inflight, x), 'KEEPTTL')
      end
    end
    if budget then
      j = j + 1
      -- A counter that is gone (Redis lost it) is rebuilt from usage events instead.
      if read[j] then call('INCRBY', names[j], real_cost) end
    end
  end
end

-- One settlement's failure (a key holding something else) is its own: it answers an error
-- in its place and the others are settled.
local k, a, done = 0, 1, {}
for r = 1, tonumber(ARGV[1]) do
  local numbers = ARGV[a + 1]
  local reserved, used, held, n, gated, marker_ttl, at = unpack_packed('<dddddd', numbers)
  local ok, err = pcall(settle, k, n, numbers, at, used - reserved, held, gated == 1,
    marker_ttl, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  done[r] = ok and 1 or {-1, tostring(type(err) == 'table' and err.err or err)}
  k, a = k + 1 + 3 * n, a + 4
end
return done
