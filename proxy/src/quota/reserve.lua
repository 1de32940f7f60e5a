-- Checks every limit of one scope and, only if all pass, reserves: one request, the
-- estimated tokens, one concurrency slot (a lease) and the estimated maximum cost.
-- Windows are sliding logs: a request counts for exactly `window` ms after it was admitted.
--
-- KEYS: 1 requests zset, 2 tokens zset (members "id:tokens"), 3 tokens sum,
--       4 concurrency zset (score = lease expiry), 5 spend counter of the budget period
-- ARGV: 1 now ms, 2 window ms, 3 reservation id, 4 rpm (0 = none), 5 tpm (0 = none),
--       6 tokens, 7 concurrency (0 = none), 8 lease ms, 9 budget (-1 = none), 10 cost,
--       11 spend counter ttl s, 12 ms until the budget period resets
-- Returns {allowed, dimension, retry_after_ms, rpm_remaining, rpm_reset_ms,
--          tpm_remaining, tpm_reset_ms}
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local id = ARGV[3]
local rpm = tonumber(ARGV[4])
local tpm = tonumber(ARGV[5])
local tokens = tonumber(ARGV[6])
local conc = tonumber(ARGV[7])
local lease = tonumber(ARGV[8])
local budget = tonumber(ARGV[9])
local cost = tonumber(ARGV[10])
local spend_ttl = tonumber(ARGV[11])
local budget_reset = tonumber(ARGV[12])

local cutoff = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
if #expired > 0 then
  local freed = 0
  for _, member in ipairs(expired) do
    freed = freed + tonumber(string.match(member, ':(%d+)$'))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  redis.call('DECRBY', KEYS[3], freed)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)

local requests = redis.call('ZCARD', KEYS[1])
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
local inflight = redis.call('ZCARD', KEYS[4])
local spent = tonumber(redis.call('GET', KEYS[5]) or '0')

-- When the oldest request leaves the window.
local function request_reset()
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #oldest == 0 then return 0 end
  return tonumber(oldest[2]) + window - now
end

-- When enough tokens have left the window for `need` more to fit; -1 if they never can.
local function token_reset(need)
  if tpm <= 0 then return 0 end
  if need > tpm then return -1 end
  local over = used + need - tpm
  if over <= 0 then return 0 end
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local freed = 0
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
    if freed >= over then return tonumber(entries[i + 1]) + window - now end
  end
  return window
end

local rpm_left = -1
local tpm_left = -1
if rpm > 0 then rpm_left = rpm - requests end
if tpm > 0 then tpm_left = tpm - used end

if rpm > 0 and requests + 1 > rpm then
  local wait = request_reset()
  return {0, 'rate_limit_requests', wait, 0, wait, tpm_left, token_reset(0)}
end
if tpm > 0 and used + tokens > tpm then
  local wait = token_reset(tokens)
  return {0, 'rate_limit_tokens', wait, rpm_left, request_reset(), math.max(tpm_left, 0), token_reset(0)}
end
if conc > 0 and inflight + 1 > conc then
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  -- Slots free when requests finish; the earliest lease expiry is only the latest bound.
  local wait = math.min(1000, tonumber(first[2]) - now)
  return {0, 'concurrency_limit', wait, rpm_left, request_reset(), tpm_left, token_reset(0)}
end
if budget >= 0 and spent + cost > budget then
  return {0, 'budget_exceeded', budget_reset, rpm_left, request_reset(), tpm_left, token_reset(0)}
end

redis.call('ZADD', KEYS[1], now, id)
redis.call('PEXPIRE', KEYS[1], window)
if tokens > 0 then
  redis.call('ZADD', KEYS[2], now, id .. ':' .. tokens)
  redis.call('INCRBY', KEYS[3], tokens)
end
redis.call('PEXPIRE', KEYS[2], window)
redis.call('PEXPIRE', KEYS[3], window)
redis.call('ZADD', KEYS[4], now + lease, id)
redis.call('PEXPIRE', KEYS[4], lease)
if budget >= 0 then
  redis.call('INCRBY', KEYS[5], cost)
  if spend_ttl > 0 then redis.call('EXPIRE', KEYS[5], spend_ttl) end
end
if rpm > 0 then rpm_left = rpm_left - 1 end
if tpm > 0 then tpm_left = tpm_left - tokens end
return {1, '', 0, rpm_left, request_reset(), tpm_left, token_reset(0)}
