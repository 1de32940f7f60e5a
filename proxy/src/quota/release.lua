-- Puts right reservations the gateway gave up on when Redis did not answer in time: the
-- request was then served under the gateway's local limiter, or refused. Whether the
-- reserve was applied is told by its leases (reserve.lua takes them in all scopes at
-- once), or by the "landed" marker reserve.lua leaves when it reserves close to the
-- reservation's deadline; one without either that was applied (just before a stall, its
-- answer lost) is taken as not applied, which can only count a request twice, never not
-- at all. Idempotent: a marker
-- per reservation, kept for a window, makes a repeated call (after a lost answer) a no-op.
--   served and not applied: its requests and tokens are counted (as if at the scope's
--     last change);
--   served and applied: its tokens are settled to what it used;
--   refused and applied: its requests and tokens are taken back;
--   and every lease it holds is ended.
-- A release is applied only once its reservation's deadline has passed on Redis's clock
-- (the caller gives the latest its reserves had): a reserve held up on the network can land
-- until then, and must find itself released, not the release find nothing.
-- KEYS, for every reservation in turn: its "released" marker, its "landed" marker, then as
-- reserve.lua (3 per scope).
-- ARGV: 1 number of reservations, then 3 per reservation:
--   numbers, as little-endian doubles: reserved tokens, used tokens, reserved cost, number
--     of scopes, served (1/0), now ms, the state's time to live ms, the marker's time to
--     live ms, not before (ms on Redis's clock), applied (1: known to have been applied,
--     as a step of a Cluster reservation taken back; 0: found out here), then 4 per scope
--     (1/0): a request limit, a token limit, a lease, a budget
--   its lease member with the cost held, the member without (as reserve.lua wrote them)
-- Returns per reservation 1 (done), 2 (too early: its deadline has not passed), or
--   {-1, error message} if it failed.
local max, call, unpack = math.max, redis.call, unpack
local pack, unpack_packed = struct.pack, struct.unpack
local STATE = '<dddddd'
local time = call('TIME')
local clock = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function release(k, numbers, with_cost, without)
  local reserved, used, cost, n, served, now, ttl, marker_ttl, not_before, known, at =
    unpack_packed('<dddddddddd', numbers)
  if clock < not_before then return 2 end
  if not call('SET', KEYS[k], '1', 'NX', 'PX', marker_ttl) then return 1 end
  served = served == 1
  local flags, applied = {}, call('DEL', KEYS[k + 1]) == 1 or known == 1
  for i = 1, n do
    local rpm, tpm, leased, budget
    rpm, tpm, leased, budget, at = unpack_packed('<dddd', numbers, at)
    local ended = leased == 1 and
      call('ZREM', KEYS[k + 3 * i], budget == 1 and with_cost or without) == 1
    applied = applied or ended
    flags[i] = {rpm == 1, tpm == 1, budget == 1, ended}
  end
  for i = 1, n do
    local rpm, tpm, budget, ended = unpack(flags[i])
    local requests, tokens = 0, 0
    if served and not applied then
      requests, tokens = 1, used
    elseif served then
      tokens = used - reserved
    elseif applied then
      requests, tokens = -1, -reserved
    end
    if not rpm then requests = 0 end
    if not tpm then tokens = 0 end
    if requests ~= 0 or tokens ~= 0 or ended then
      local key = KEYS[k + 3 * i - 1]
      local raw = call('GET', key)
      if raw then
        local rl, tl, ts, held, inflight, x = unpack_packed(STATE, raw)
        rl, tl = max(rl + requests, 0), max(tl + tokens, 0)
        if ended then
          inflight = max(inflight - 1, 0)
          if budget then held = max(held - cost, 0) end
        end
        call('SET', key, pack(STATE, rl, tl, ts, held, inflight, x), 'KEEPTTL')
      elseif requests > 0 or tokens > 0 then
        -- No state (it expired): a new one, as reserve.lua would make it.
        call('SET', key, pack(STATE, requests, tokens, now, 0, 0, -math.huge), 'PX', ttl)
      end
    end
  end
  return 1
end

local k, a, done = 1, 1, {}
for r = 1, tonumber(ARGV[1]) do
  local numbers = ARGV[a + 1]
  local ok, result = pcall(release, k, numbers, ARGV[a + 2], ARGV[a + 3])
  done[r] = ok and result or {-1, tostring(type(result) == 'table' and result.err or result)}
  k, a = k + 2 + 3 * unpack_packed('<d', numbers, 25), a + 3
end
return done
