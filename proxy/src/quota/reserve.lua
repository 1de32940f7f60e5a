-- Checks every limit of every scope of a request (its key, user, team and deployment)
-- and, only if all pass, reserves in each: one request, the estimated tokens, one
-- concurrency slot (a lease) and the estimated maximum cost.
--
-- Requests and tokens per minute are leaky buckets (GCRA): a scope's level rises by what
-- it admits and drains at `limit` per `window`, so a full bucket admits `limit` at once
-- and then one more every window/limit. The state is a few numbers per scope, so each
-- step costs the same however busy the scope is.
--
-- Several reservations are decided in one call, one after the other, each exactly as if
-- alone: the gateway batches the requests that arrive while a call is under way.
--
-- KEYS, for every reservation in turn: its "landed" marker, then 3 per scope: state (six
--   doubles packed with struct,
--   see STATE: request and token levels, when they were last drained, the cost held by
--   running requests, how many run, when the leases were last swept), leases zset
--   (members "id:cost", score = lease expiry, and the member "~" at +inf that keeps the
--   set and its expiry while no request runs), settled spend of the budget period
-- ARGV: 1 number of reservations, then 6 per reservation:
--   numbers, as little-endian doubles: now ms, window ms, tokens, cost, lease ms, number
--     of scopes, deadline (ms on Redis's clock, 0: none), mark after (ms on Redis's
--     clock, 0: never), then 5 per scope: rpm (0 = none), tpm (0 = none), concurrency (0 =
--     none), budget (-1 = none), ms until the budget resets
--   the lease member with the cost held, the member without, the lease expiry (ms), the
--   state's time to live (ms), the leases' time to live (ms)
-- Returns one reply per reservation: little-endian doubles {allowed, dimension (1 rate
--   of requests, 2 of tokens, 3 concurrency, 4 budget, 5 a spend counter is missing, 6 it
--   came after its deadline; 0 if allowed), retry_after_ms (-1: never), scope (1-based, 0
--   if allowed), then per scope: rpm_left, rpm_reset_ms, tpm_left, tpm_reset_ms (-1 left =
--   no limit), and last Redis's clock (ms)}, or {-1, error message} if it failed
--
-- A reservation that reaches Redis after its deadline is refused with nothing reserved:
-- its caller has given up on it (it was held up on the way, by a stalled network) and
-- served or refused the request without it, so it must not take a slot or count. One
-- reserved close to its deadline ("mark after") leaves its "landed" marker: its caller may
-- have given up on it already (the deadline can only err late), and the gateway, putting
-- such a reservation right, must know it was applied (release.lua).
--
-- At a moderate rate every call finds Redis cold, and then what it costs follows how much
-- the script does: numbers travel packed (no text conversions), the fewest commands run,
-- and a scope is a plain array built once, not a table of named fields.
local max, ceil, floor, call = math.max, math.ceil, math.floor, redis.call
local pack, unpack_packed, unpack = struct.pack, struct.unpack, unpack
local STATE = '<dddddd'
-- Redis's clock (ms), for deadlines and to let the gateway learn how it differs from its own.
local time = call('TIME')
local clock = tonumber(time[1]) * 1000 + floor(tonumber(time[2]) / 1000)
-- Levels are fractions: a hair of float error must not turn a fit into a refusal, nor a
-- whole millisecond into two.
local EPS = 1e-9
-- A scope's fields.
local RL, TL, TS, HELD, INFLIGHT, X, RPM, TPM, CC, BUDGET, RESET, SPENT, RENEW, SWEPT,
  DIRTY = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15

-- Ends the leases of requests that never settled (a crashed replica) and recounts what
-- runs. Stale leases only matter to a check they would fail, so this runs when such a
-- check fails and every half lease, not on every request.
local function sweep(s, leases, now)
  s[SWEPT] = true
  local expired = call('ZRANGEBYSCORE', leases, '-inf', now)
  local held = s[HELD]
  if #expired > 0 then
    for i = 1, #expired do
      held = held - tonumber(string.match(expired[i], ':(%-?%d+)$'))
    end
    call('ZREMRANGEBYSCORE', leases, '-inf', now)
  end
  -- The keeper member is counted out: it is (re)added here, so it is always there.
  call('ZADD', leases, '+inf', '~')
  local inflight = call('ZCARD', leases) - 1
  -- Nothing runs, so nothing is held (heals a sum left by a budget since removed).
  if inflight == 0 or held < 0 then held = 0 end
  if held ~= s[HELD] or inflight ~= s[INFLIGHT] then
    s[HELD], s[INFLIGHT], s[DIRTY] = held, inflight, true
  end
end

-- The expiry is set when the leases' is renewed (every half lease; a new state always is)
-- and kept otherwise: setting it costs Redis more than the write itself.
local function save(s, key, ttl)
  local packed = pack(STATE, s[RL], s[TL], s[TS], s[HELD], s[INFLIGHT], s[X])
  if s[RENEW] then
    call('SET', key, packed, 'PX', ttl)
  else
    call('SET', key, packed, 'KEEPTTL')
  end
end

-- Decides the reservation whose keys follow KEYS[k] and whose arguments follow ARGV[a]:
-- refuses, or reserves in all its scopes. Answers the packed reply.
local function reserve(k, a, landed)
  local numbers = ARGV[a + 1]
  local now, window, tokens, cost, lease, n, deadline, mark_after, at =
    unpack_packed('<dddddddd', numbers)
  if deadline > 0 and clock > deadline then
    local late = {0, 6, -1, 0}
    for i = 1, n do late[4 * i + 1], late[4 * i + 2], late[4 * i + 3], late[4 * i + 4] = -1, 0, -1, 0 end
    late[4 * n + 5] = clock
    return pack('<' .. string.rep('dddd', n + 1) .. 'd', unpack(late))
  end
  local state_ttl = ARGV[a + 5]

  -- Every state and spend counter in one command.
  local names = {}
  for i = 1, n do
    names[2 * i - 1], names[2 * i] = KEYS[k + 3 * i - 2], KEYS[k + 3 * i]
  end
  local read = call('MGET', unpack(names))

  local scopes = {}
  for i = 1, n do
    local rpm, tpm, cc, budget, reset
    rpm, tpm, cc, budget, reset, at = unpack_packed('<ddddd', numbers, at)
    local rl, tl, since, held, inflight, x = 0, 0, now, 0, 0, -math.huge
    local raw = read[2 * i - 1]
    if raw then rl, tl, since, held, inflight, x = unpack_packed(STATE, raw) end
    -- Levels drained to now; a clock behind the last writer's drains nothing. Without a
    -- limit the level is kept as it was (as the in-process store keeps it).
    local idle = max(now - since, 0)
    if rpm > 0 then rl = max(rl - idle * rpm / window, 0) end
    if tpm > 0 then tl = max(tl - idle * tpm / window, 0) end
    local s = {rl, tl, max(since, now), held, inflight, x, rpm, tpm, cc, budget, reset,
      read[2 * i], now - x >= lease / 2, false, false}
    if (cc > 0 or budget >= 0) and s[RENEW] then sweep(s, KEYS[k + 3 * i - 1], now) end
    scopes[i] = s
  end

  -- Why the request is refused, if it is: dimension, retry-after ms (-1: never), scope.
  local dimension, retry, which = 0, 0, 0
  -- A budget's spend counter must exist: a missing one is rebuilt from the usage events
  -- by the caller before anything is decided.
  for i = 1, n do
    local s = scopes[i]
    if s[BUDGET] >= 0 then
      if not s[SPENT] then
        dimension, which = 5, i
        break
      end
      s[SPENT] = tonumber(s[SPENT])
    end
  end
  if dimension == 0 then
    for i = 1, n do
      local s = scopes[i]
      local rpm, tpm = s[RPM], s[TPM]
      if rpm > 0 and s[RL] + 1 > rpm + EPS then
        dimension, retry = 1, max(ceil((s[RL] + 1 - rpm) * window / rpm - 1e-6), 0)
      elseif tpm > 0 and s[TL] + tokens > tpm + EPS then
        dimension, retry = 2, -1
        if tokens <= tpm then retry = max(ceil((s[TL] + tokens - tpm) * window / tpm - 1e-6), 0) end
      else
        -- Slots and budgets are checked again after a sweep, which only ever frees them.
        for _ = 1, 2 do
          if s[CC] > 0 and s[INFLIGHT] + 1 > s[CC] then
            dimension = 3
          elseif s[BUDGET] >= 0 and s[SPENT] + s[HELD] + cost > s[BUDGET] then
            dimension = 4
          else
            dimension = 0
          end
          if dimension == 0 or s[SWEPT] then break end
          sweep(s, KEYS[k + 3 * i - 1], now)
        end
        if dimension == 3 then
          -- Slots free when requests finish; the earliest lease expiry is only the latest
          -- bound.
          local first = call('ZRANGE', KEYS[k + 3 * i - 1], 0, 0, 'WITHSCORES')
          retry = math.min(1000, (tonumber(first[2]) or now + 1000) - now)
        elseif dimension == 4 then
          retry = s[RESET]
        end
      end
      if dimension ~= 0 then
        which = i
        break
      end
    end
  end

  if dimension ~= 0 then
    -- A refused request reserves nothing, but what a sweep found is kept.
    for i = 1, n do
      if scopes[i][DIRTY] then save(scopes[i], KEYS[k + 3 * i - 2], state_ttl) end
    end
  else
    local expiry, leases_ttl = ARGV[a + 4], ARGV[a + 6]
    for i = 1, n do
      local s = scopes[i]
      if s[RPM] > 0 then s[RL] = s[RL] + 1 end
      if s[TPM] > 0 then s[TL] = s[TL] + tokens end
      -- The maximum cost is held apart from the settled spend until the request ends.
      local budget = s[BUDGET] >= 0
      if budget then s[HELD] = s[HELD] + cost end
      -- The leases' expiry is renewed every half lease, not on every request: it lives
      -- two leases, so a lease taken now ends before its set does; the keeper member
      -- keeps the set (and its expiry) when the last request settles.
      if s[RENEW] then s[X] = now end
      local leased = s[CC] > 0 or budget
      if leased then s[INFLIGHT] = s[INFLIGHT] + 1 end
      save(s, KEYS[k + 3 * i - 2], state_ttl)
      if leased then
        local leases = KEYS[k + 3 * i - 1]
        call('ZADD', leases, expiry, budget and ARGV[a + 2] or ARGV[a + 3])
        if s[RENEW] then call('PEXPIRE', leases, leases_ttl) end
      end
    end
    if mark_after > 0 and clock > mark_after then
      call('SET', landed, '1', 'PX', state_ttl)
    end
  end

  -- Per scope, what fits now and when the bucket is empty again.
  local out = {dimension == 0 and 1 or 0, dimension, retry, which}
  for i = 1, n do
    local s = scopes[i]
    local rpm, tpm, rl, tl = s[RPM], s[TPM], s[RL], s[TL]
    local j = 4 * i
    if rpm > 0 then
      out[j + 1], out[j + 2] = max(floor(rpm - rl + EPS), 0), max(ceil(rl * window / rpm - 1e-6), 0)
    else
      out[j + 1], out[j + 2] = -1, 0
    end
    if tpm > 0 then
      out[j + 3], out[j + 4] = max(floor(tpm - tl + EPS), 0), max(ceil(tl * window / tpm - 1e-6), 0)
    else
      out[j + 3], out[j + 4] = -1, 0
    end
  end
  out[4 * n + 5] = clock
  return pack('<' .. string.rep('dddd', n + 1) .. 'd', unpack(out))
end

-- One reservation's failure (a key holding something else) is its own: it answers an
-- error in its place and the others are decided.
local replies, k, a = {}, 0, 1
for r = 1, tonumber(ARGV[1]) do
  local ok, reply = pcall(reserve, k + 1, a, KEYS[k + 1])
  replies[r] = ok and reply or {-1, tostring(type(reply) == 'table' and reply.err or reply)}
  k, a = k + 1 + 3 * unpack_packed('<d', ARGV[a + 1], 41), a + 6
end
return replies
