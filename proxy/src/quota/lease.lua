-- Leases one replica slices of scopes' request and token allowances, takes back what it
-- returns, and applies its settled token differences. A slice is taken from the same leaky
-- buckets reserve.lua checks: the levels rise now by the whole slice, so every request a
-- replica admits from its lease was counted before it was admitted, and the fleet never
-- admits more than a limit. Allowance a replica holds and never uses (it died, or demand
-- stopped) only makes the fleet admit fewer.
-- KEYS: per scope: its state (as reserve.lua), its lessees (zset: replica -> lease expiry)
-- ARGV: 1 number of scopes, 2 the replica's id, 3 packed little-endian doubles: now ms,
--   window ms, lease ms, state ttl ms, then 7 per scope: rpm (0: none), tpm (0: none),
--   requests wanted, tokens wanted, fewest tokens worth a lease, requests returned, token
--   change (settled minus reserved, less tokens returned; may be negative)
-- Returns packed doubles, 5 per scope: requests granted, tokens granted, requests left,
--   tokens left (-1: no such limit), replicas holding a lease in the scope.
local max, min, floor, call = math.max, math.min, math.floor, redis.call
local pack, unpack_packed = struct.pack, struct.unpack
local STATE = '<dddddd'
local EPS = 1e-9

local n, replica = tonumber(ARGV[1]), ARGV[2]
local numbers = ARGV[3]
local now, window, lease, state_ttl, at = unpack_packed('<dddd', numbers)
local out = {}
for i = 1, n do
  local rpm, tpm, want_r, want_t, min_t, back_r, change_t
  rpm, tpm, want_r, want_t, min_t, back_r, change_t, at = unpack_packed('<ddddddd', numbers, at)
  local key, lessees = KEYS[2 * i - 1], KEYS[2 * i]
  local rl, tl, since, held, inflight, x = 0, 0, now, 0, 0, -math.huge
  local raw = call('GET', key)
  if raw then rl, tl, since, held, inflight, x = unpack_packed(STATE, raw) end
  -- Drained to now, exactly as reserve.lua drains.
  local idle = max(now - since, 0)
  if rpm > 0 then rl = max(rl - idle * rpm / window, 0) end
  if tpm > 0 then tl = max(tl - idle * tpm / window, 0) end
  rl = max(rl - back_r, 0)
  tl = max(tl + change_t, 0)
  local got_r, got_t = 0, 0
  if want_r > 0 or want_t > 0 then
    if rpm > 0 then got_r = min(want_r, max(floor(rpm - rl + EPS), 0)) end
    if tpm > 0 then got_t = min(want_t, max(floor(tpm - tl + EPS), 0)) end
    -- A lease must hold some of every limit the scope has: a slice of one alone admits
    -- nothing, and would only be stranded.
    if (rpm > 0 and got_r < 1) or (tpm > 0 and got_t < max(min_t, 1)) then
      got_r, got_t = 0, 0
    end
    rl, tl = rl + got_r, tl + got_t
  end
  call('SET', key, pack(STATE, rl, tl, max(since, now), held, inflight, x), 'PX', state_ttl)
  call('ZREMRANGEBYSCORE', lessees, '-inf', now)
  if got_r > 0 or got_t > 0 then
    call('ZADD', lessees, now + lease, replica)
    call('PEXPIRE', lessees, 2 * lease)
  elseif want_r == 0 and want_t == 0 then
    call('ZREM', lessees, replica)
  end
  local j = 5 * (i - 1)
  out[j + 1], out[j + 2] = got_r, got_t
  out[j + 3] = rpm > 0 and max(floor(rpm - rl + EPS), 0) or -1
  out[j + 4] = tpm > 0 and max(floor(tpm - tl + EPS), 0) or -1
  out[j + 5] = call('ZCARD', lessees)
end
return pack('<' .. string.rep('d', 5 * n), unpack(out))
