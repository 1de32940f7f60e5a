-- Checks every limit of every scope of a request (its key, user, team and deployment)
-- and, only if all pass, reserves in each: one request, the estimated tokens, one
-- concurrency slot (a lease) and the estimated maximum cost.
--
-- Requests and tokens per minute are leaky buckets (GCRA): a scope's level rises by what
-- it admits and drains at `limit` per `window`, so a full bucket admits `limit` at once
-- and then one more every window/limit. The state is a few numbers per scope, so each
-- step costs the same however busy the scope is.
--
-- KEYS, 3 per scope: state hash (rl, tl: request and token levels; ts: when they were
--   last drained; held: cost held by running requests; n: how many run; x: when
--   expiries were last renewed), leases zset (members "id:cost",
--   score = lease expiry), settled spend of the budget period
-- ARGV: 1 now ms, 2 window ms, 3 reservation id, 4 tokens, 5 cost, 6 lease ms,
--   7 number of scopes, then 5 per scope: rpm (0 = none), tpm (0 = none),
--   concurrency (0 = none), budget (-1 = none), ms until the budget resets
-- Returns {allowed, dimension, retry_after_ms (-1: never), scope (1-based, 0 if allowed),
--   then per scope: rpm_left, rpm_reset_ms, tpm_left, tpm_reset_ms (-1 left = no limit)}
-- Library functions as locals: a global look-up on every use costs measurably here.
local tonumber, max, min, floor, ceil, call, insert, unpack = tonumber, math.max, math.min, math.floor, math.ceil, redis.call, table.insert, unpack
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
-- A lease names the cost it holds in its scope: none where the scope has no budget, so a
-- budget set later never releases a hold it did not count.
local function lease_member(s)
  if s.budget >= 0 then return ARGV[3] .. ':' .. ARGV[5] end
  return ARGV[3] .. ':0'
end
local lease = tonumber(ARGV[6])
local n = tonumber(ARGV[7])

-- A level drained to now; a clock behind the last writer's drains nothing.
local function drained(level, since, limit)
  if limit <= 0 then return 0 end
  local l = (tonumber(level) or 0) - max(now - since, 0) * limit / window
  if l < 0 then return 0 end
  return l
end

-- Levels are fractions: a hair of float error must not turn a fit into a refusal, nor a
-- whole millisecond into two.
local EPS = 1e-9

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
  local inflight = call('ZCARD', s.leases)
  -- Nothing runs, so nothing is held (heals a sum left by a budget since removed).
  if inflight == 0 or held < 0 then held = 0 end
  if held ~= s.held or inflight ~= s.inflight then
    s.held, s.inflight = held, inflight
    call('HSET', s.state, 'held', held, 'n', inflight)
  end
end

local scopes = {}
for i = 0, n - 1 do
  local k = i * 3
  local a = 7 + i * 5
  local s = {
    state = KEYS[k + 1], leases = KEYS[k + 2], spend = KEYS[k + 3],
    rpm = tonumber(ARGV[a + 1]), tpm = tonumber(ARGV[a + 2]), cc = tonumber(ARGV[a + 3]),
    budget = tonumber(ARGV[a + 4]), reset = tonumber(ARGV[a + 5]),
  }
  local f = call('HMGET', s.state, 'rl', 'tl', 'ts', 'held', 'n', 'x')
  local since = tonumber(f[3]) or now
  s.ts = max(since, now)
  s.rl = drained(f[1], since, s.rpm)
  s.tl = drained(f[2], since, s.tpm)
  s.held = tonumber(f[4]) or 0
  s.inflight = tonumber(f[5]) or 0
  s.renew = now - (tonumber(f[6]) or -math.huge) >= lease / 2
  s.leased = s.cc > 0 or s.budget >= 0
  if s.leased and s.renew then sweep(s) end
  scopes[i + 1] = s
end

local function reply(allowed, dimension, retry, which)
  local out = {allowed, dimension, retry, which}
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
    insert(out, rpm_left)
    insert(out, rpm_reset)
    insert(out, tpm_left)
    insert(out, tpm_reset)
  end
  return out
end

-- A budget's spend counter must exist: a missing one is rebuilt from the usage events
-- by the caller before anything is decided.
for i, s in ipairs(scopes) do
  if s.budget >= 0 then
    local spent = call('GET', s.spend)
    if not spent then return {0, 'unseeded', 0, i} end
    s.spent = tonumber(spent)
  end
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
    return 'concurrency_limit', min(1000, tonumber(first[2] or now + 1000) - now)
  end
  if s.budget >= 0 and s.spent + s.held + cost > s.budget then
    if not s.swept then return 'sweep' end
    return 'budget_exceeded', s.reset
  end
end

for i, s in ipairs(scopes) do
  local dimension, retry = refusal(s)
  if dimension == 'sweep' then
    sweep(s)
    dimension, retry = refusal(s)
  end
  if dimension then return reply(0, dimension, retry, i) end
end

for _, s in ipairs(scopes) do
  local fields = {'ts', s.ts}
  if s.rpm > 0 then
    s.rl = s.rl + 1
    insert(fields, 'rl'); insert(fields, s.rl)
  end
  if s.tpm > 0 then
    s.tl = s.tl + tokens
    insert(fields, 'tl'); insert(fields, s.tl)
  end
  if s.budget >= 0 then
    -- The maximum cost is held apart from the settled spend until the request ends.
    insert(fields, 'held'); insert(fields, s.held + cost)
  end
  if s.leased then
    insert(fields, 'n'); insert(fields, s.inflight + 1)
  end
  -- Expiries are renewed every half lease, not on every request: each lives two leases,
  -- so a lease taken now ends before its set does.
  if s.renew then
    insert(fields, 'x'); insert(fields, now)
  end
  call('HSET', s.state, unpack(fields))
  if s.renew then call('PEXPIRE', s.state, window + 2 * lease) end
  if s.leased then
    call('ZADD', s.leases, now + lease, lease_member(s))
    -- An empty set was deleted: this one is new and has no expiry yet.
    if s.renew or s.inflight == 0 then call('PEXPIRE', s.leases, 2 * lease) end
  end
end
return reply(1, '', 0, 0)
