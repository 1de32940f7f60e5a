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
-- KEYS, 3 per scope of every reservation in turn: state (six doubles packed with struct,
--   see STATE: request and token levels, when they were last drained, the cost held by
--   running requests, how many run, when the leases were last swept), leases zset
--   (members "id:cost", score = lease expiry, and the member "~" at +inf that keeps the
--   set and its expiry while no request runs), settled spend of the budget period
-- ARGV: 1 number of reservations, then 6 per reservation:
--   numbers, as little-endian doubles: now ms, window ms, tokens, cost, lease ms, number
--     of scopes, then 5 per scope: rpm (0 = none), tpm (0 = none), concurrency (0 = none),
--     budget (-1 = none), ms until the budget resets
--   the lease member with the cost held, the member without, the lease expiry (ms), the
--   state's time to live (ms), the leases' time to live (ms)
-- Returns one reply per reservation: little-endian doubles {allowed, dimension (see
--   DIMENSIONS, 0 if allowed), retry_after_ms (-1: never), scope (1-based, 0 if allowed),
--   then per scope: rpm_left, rpm_reset_ms, tpm_left, tpm_reset_ms (-1 left = no limit)},
--   or {-1, error message} if it failed
--
-- Numbers travel packed and the fewest commands run: at a moderate rate every call finds
-- Redis cold, and converting text to numbers and back, and each command, cost it most.
local max, min, floor, ceil, call, unpack = math.max, math.min, math.floor, math.ceil, redis.call, unpack
local pack, unpack_packed = struct.pack, struct.unpack
local STATE = '<dddddd'
local DIMENSIONS = {rate_limit_requests = 1, rate_limit_tokens = 2, concurrency_limit = 3,
  budget_exceeded = 4, unseeded = 5}
-- The reservation being decided (set per reservation below).
local now, window, tokens, cost, lease, member_with_cost, member_without, expiry, state_ttl, leases_ttl

-- Levels are fractions: a hair of float error must not turn a fit into a refusal, nor a
-- whole millisecond into two.
local EPS = 1e-9

-- A level drained to now; a clock behind the last writer's drains nothing. Without a
-- limit the level is kept as it was (as the in-process store keeps it).
local function drained(level, since, limit)
  if limit <= 0 then return level end
  local l = level - max(now - since, 0) * limit / window
  if l < 0 then return 0 end
  return l
end

local function over(level, need, limit)
  return limit > 0 and level + need > limit + EPS
end

-- Milliseconds until a level drains enough for `need` more to fit under `limit`.
local function wait(level, need, limit)
  return max(ceil((level + need - limit) * window / limit - 1e-6), 0)
end

-- Milliseconds until a level has drained to nothing.
local function empty_in(level, limit)
  return max(ceil(level * window / limit - 1e-6), 0)
end

local function save(s)
  call('SET', s.state, pack(STATE, s.rl, s.tl, s.ts, s.held, s.inflight, s.x), 'PX', state_ttl)
end

-- Ends the leases of requests that never settled (a crashed replica) and recounts what
-- runs. Stale leases only matter to a check they would fail, so this runs when such a
-- check fails and every half lease, not on every request.
local function sweep(s)
  s.swept = true
  local expired = call('ZRANGEBYSCORE', s.leases, '-inf', now)
  local held = s.held
  if #expired > 0 then
    for _, member in ipairs(expired) do
      held = held - tonumber(string.match(member, ':(%-?%d+)$'))
    end
    call('ZREMRANGEBYSCORE', s.leases, '-inf', now)
  end
  -- The keeper member is counted out: it is (re)added here, so it is always there.
  call('ZADD', s.leases, '+inf', '~')
  local inflight = call('ZCARD', s.leases) - 1
  -- Nothing runs, so nothing is held (heals a sum left by a budget since removed).
  if inflight == 0 or held < 0 then held = 0 end
  if held ~= s.held or inflight ~= s.inflight then
    s.held, s.inflight, s.dirty = held, inflight, true
  end
end

local scopes

-- Reads the n scopes whose keys follow KEYS[k] and whose limits follow position `at` of
-- the packed numbers: every state and spend counter in one command.
local function load(n, k, numbers, at)
  scopes = {}
  local names = {}
  for i = 1, n do
    names[2 * i - 1], names[2 * i] = KEYS[k + 3 * i - 2], KEYS[k + 3 * i]
  end
  local read = call('MGET', unpack(names))
  for i = 1, n do
    local rpm, tpm, cc, budget, reset
    rpm, tpm, cc, budget, reset, at = unpack_packed('<ddddd', numbers, at)
    local raw = read[2 * i - 1]
    local rl, tl, since, held, inflight, x = 0, 0, now, 0, 0, -math.huge
    if raw then rl, tl, since, held, inflight, x = unpack_packed(STATE, raw) end
    local s = {
      state = names[2 * i - 1], leases = KEYS[k + 3 * i - 1],
      rpm = rpm, tpm = tpm, cc = cc, budget = budget, reset = reset,
      ts = max(since, now), rl = drained(rl, since, rpm), tl = drained(tl, since, tpm),
      held = held, inflight = inflight, x = x,
      renew = now - x >= lease / 2, leased = cc > 0 or budget >= 0,
      swept = false, dirty = false, spent = read[2 * i],
    }
    if s.leased and s.renew then sweep(s) end
    scopes[i] = s
  end
end

local function reply(allowed, dimension, retry, which)
  local out, j = {allowed, DIMENSIONS[dimension] or 0, retry, which}, 4
  for _, s in ipairs(scopes) do
    -- Left: what fits now; reset: when the bucket is empty again.
    local rpm_left, rpm_reset, tpm_left, tpm_reset = -1, 0, -1, 0
    if s.rpm > 0 then
      rpm_left = max(floor(s.rpm - s.rl + EPS), 0)
      rpm_reset = empty_in(s.rl, s.rpm)
    end
    if s.tpm > 0 then
      tpm_left = max(floor(s.tpm - s.tl + EPS), 0)
      tpm_reset = empty_in(s.tl, s.tpm)
    end
    out[j + 1], out[j + 2], out[j + 3], out[j + 4] = rpm_left, rpm_reset, tpm_left, tpm_reset
    j = j + 4
  end
  return pack('<' .. string.rep('d', j), unpack(out))
end

-- A refused request reserves nothing, but what a sweep found is kept.
local function refuse(dimension, retry, which)
  for _, s in ipairs(scopes) do
    if s.dirty then save(s) end
  end
  return reply(0, dimension, retry, which)
end

-- Why a scope refuses the request, if it does: dimension and retry-after ms (-1: never).
local function refusal(s)
  if over(s.rl, 1, s.rpm) then
    return 'rate_limit_requests', wait(s.rl, 1, s.rpm)
  end
  if over(s.tl, tokens, s.tpm) then
    if tokens > s.tpm then return 'rate_limit_tokens', -1 end
    return 'rate_limit_tokens', wait(s.tl, tokens, s.tpm)
  end
  if s.cc > 0 and s.inflight + 1 > s.cc then
    if not s.swept then return 'sweep' end
    local first = call('ZRANGE', s.leases, 0, 0, 'WITHSCORES')
    -- Slots free when requests finish; the earliest lease expiry is only the latest bound.
    return 'concurrency_limit', min(1000, (tonumber(first[2]) or now + 1000) - now)
  end
  if s.budget >= 0 and s.spent + s.held + cost > s.budget then
    if not s.swept then return 'sweep' end
    return 'budget_exceeded', s.reset
  end
end

-- Decides one reservation with the scopes just loaded: refuses, or reserves in all.
local function decide()
  -- A budget's spend counter must exist: a missing one is rebuilt from the usage events
  -- by the caller before anything is decided.
  for i, s in ipairs(scopes) do
    if s.budget >= 0 then
      if not s.spent then return refuse('unseeded', 0, i) end
      s.spent = tonumber(s.spent)
    end
  end
  for i, s in ipairs(scopes) do
    local dimension, retry = refusal(s)
    if dimension == 'sweep' then
      sweep(s)
      dimension, retry = refusal(s)
    end
    if dimension then return refuse(dimension, retry, i) end
  end
  for _, s in ipairs(scopes) do
    if s.rpm > 0 then s.rl = s.rl + 1 end
    if s.tpm > 0 then s.tl = s.tl + tokens end
    -- The maximum cost is held apart from the settled spend until the request ends.
    if s.budget >= 0 then s.held = s.held + cost end
    if s.leased then s.inflight = s.inflight + 1 end
    -- The leases' expiry is renewed every half lease, not on every request: it lives two
    -- leases, so a lease taken now ends before its set does; the keeper member keeps the
    -- set (and its expiry) when the last request settles.
    if s.renew then s.x = now end
    save(s)
    if s.leased then
      call('ZADD', s.leases, expiry, s.budget >= 0 and member_with_cost or member_without)
      if s.renew then call('PEXPIRE', s.leases, leases_ttl) end
    end
  end
  return reply(1, '', 0, 0)
end

-- One reservation's failure (a key holding something else) is its own: it answers an
-- error in its place and the others are decided.
local replies, k, a = {}, 0, 1
for r = 1, tonumber(ARGV[1]) do
  local numbers, n, at = ARGV[a + 1]
  now, window, tokens, cost, lease, n, at = unpack_packed('<dddddd', numbers)
  member_with_cost, member_without, expiry, state_ttl, leases_ttl =
    ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local ok, reply = pcall(function()
    load(n, k, numbers, at)
    return decide()
  end)
  replies[r] = ok and reply or {-1, tostring(type(reply) == 'table' and reply.err or reply)}
  k, a = k + 3 * n, a + 6
end
return replies
