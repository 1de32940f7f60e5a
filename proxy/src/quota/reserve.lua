-- Checks every limit of every scope of a request (its key, user and team) and, only if all
-- pass, reserves in each: one request, the estimated tokens, one concurrency slot (a
-- lease) and the estimated maximum cost. Windows are sliding logs: a request counts for
-- exactly `window` ms after it was admitted.
--
-- KEYS, 6 per scope: requests zset, tokens zset (members "id:tokens"), tokens sum,
--   concurrency zset (score = lease expiry), settled spend of the budget period,
--   budget holds zset (members "id:cost", score = lease expiry)
-- ARGV: 1 now ms, 2 window ms, 3 reservation id, 4 tokens, 5 cost, 6 lease ms,
--   7 number of scopes, then 6 per scope: rpm (0 = none), tpm (0 = none),
--   concurrency (0 = none), budget (-1 = none), spend ttl s (0 = keep), ms until the
--   budget resets
-- Returns {allowed, dimension, retry_after_ms, scope (1-based, 0 if allowed),
--   then per scope: rpm_left, rpm_reset_ms, tpm_left, tpm_reset_ms (-1 left = no limit)}
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local id = ARGV[3]
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local cutoff = now - window

local function amount(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

local scopes = {}
for i = 0, n - 1 do
  local k = i * 6
  local a = 7 + i * 6
  local s = {
    req = KEYS[k + 1], tok = KEYS[k + 2], sum = KEYS[k + 3], conc = KEYS[k + 4], spend = KEYS[k + 5],
    holds = KEYS[k + 6],
    rpm = tonumber(ARGV[a + 1]), tpm = tonumber(ARGV[a + 2]), cc = tonumber(ARGV[a + 3]),
    budget = tonumber(ARGV[a + 4]), ttl = tonumber(ARGV[a + 5]), reset = tonumber(ARGV[a + 6]),
  }
  redis.call('ZREMRANGEBYSCORE', s.req, '-inf', cutoff)
  local expired = redis.call('ZRANGEBYSCORE', s.tok, '-inf', cutoff)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do freed = freed + amount(member) end
    redis.call('ZREMRANGEBYSCORE', s.tok, '-inf', cutoff)
    redis.call('DECRBY', s.sum, freed)
  end
  redis.call('ZREMRANGEBYSCORE', s.conc, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', s.holds, '-inf', now)
  s.held = 0
  for _, member in ipairs(redis.call('ZRANGE', s.holds, 0, -1)) do s.held = s.held + amount(member) end
  s.requests = redis.call('ZCARD', s.req)
  s.used = tonumber(redis.call('GET', s.sum) or '0')
  s.inflight = redis.call('ZCARD', s.conc)
  s.spent = tonumber(redis.call('GET', s.spend) or '0')
  scopes[i + 1] = s
end

-- When the oldest request leaves the window.
local function request_reset(s)
  local oldest = redis.call('ZRANGE', s.req, 0, 0, 'WITHSCORES')
  if #oldest == 0 then return 0 end
  return tonumber(oldest[2]) + window - now
end

-- When enough tokens have left the window for `need` more to fit; -1 if they never can.
local function token_reset(s, need)
  if s.tpm <= 0 then return 0 end
  if need > s.tpm then return -1 end
  local over = s.used + need - s.tpm
  if over <= 0 then return 0 end
  local entries = redis.call('ZRANGE', s.tok, 0, -1, 'WITHSCORES')
  local freed = 0
  for j = 1, #entries, 2 do
    freed = freed + amount(entries[j])
    if freed >= over then return tonumber(entries[j + 1]) + window - now end
  end
  return window
end

local function reply(allowed, dimension, wait, which)
  local out = {allowed, dimension, wait, which}
  for _, s in ipairs(scopes) do
    local rpm_left, tpm_left = -1, -1
    if s.rpm > 0 then rpm_left = math.max(s.rpm - s.requests, 0) end
    if s.tpm > 0 then tpm_left = math.max(s.tpm - s.used, 0) end
    table.insert(out, rpm_left)
    table.insert(out, request_reset(s))
    table.insert(out, tpm_left)
    table.insert(out, token_reset(s, 0))
  end
  return out
end

-- A budget's spend counter must exist: a missing one is rebuilt from the usage events
-- by the caller before anything is decided.
for i, s in ipairs(scopes) do
  if s.budget >= 0 and redis.call('EXISTS', s.spend) == 0 then
    return {0, 'unseeded', 0, i}
  end
end

for i, s in ipairs(scopes) do
  if s.rpm > 0 and s.requests + 1 > s.rpm then
    return reply(0, 'rate_limit_requests', request_reset(s), i)
  end
  if s.tpm > 0 and s.used + tokens > s.tpm then
    return reply(0, 'rate_limit_tokens', token_reset(s, tokens), i)
  end
  if s.cc > 0 and s.inflight + 1 > s.cc then
    local first = redis.call('ZRANGE', s.conc, 0, 0, 'WITHSCORES')
    -- Slots free when requests finish; the earliest lease expiry is only the latest bound.
    return reply(0, 'concurrency_limit', math.min(1000, tonumber(first[2]) - now), i)
  end
  if s.budget >= 0 and s.spent + s.held + cost > s.budget then
    return reply(0, 'budget_exceeded', s.reset, i)
  end
end

for _, s in ipairs(scopes) do
  redis.call('ZADD', s.req, now, id)
  redis.call('PEXPIRE', s.req, window)
  if tokens > 0 then
    redis.call('ZADD', s.tok, now, id .. ':' .. tokens)
    redis.call('INCRBY', s.sum, tokens)
  end
  redis.call('PEXPIRE', s.tok, window)
  redis.call('PEXPIRE', s.sum, window)
  redis.call('ZADD', s.conc, now + lease, id)
  redis.call('PEXPIRE', s.conc, lease)
  if s.budget >= 0 then
    -- The maximum cost is held apart from the settled spend until the request ends.
    redis.call('ZADD', s.holds, now + lease, id .. ':' .. cost)
    redis.call('PEXPIRE', s.holds, lease)
  end
  s.requests = s.requests + 1
  s.used = s.used + tokens
end
return reply(1, '', 0, 0)
