-- Settles a reservation to what the request really used, and frees its concurrency slot.
-- KEYS: as reserve.lua. ARGV: 1 reservation id, 2 reserved tokens, 3 used tokens,
--       4 reserved cost, 5 real cost, 6 whether a budget applies (1/0), 7 spend ttl s,
--       8 window ms
local id = ARGV[1]
local reserved = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
local member = id .. ':' .. reserved
local score = redis.call('ZSCORE', KEYS[2], member)
if score then
  redis.call('ZREM', KEYS[2], member)
  if used > 0 then
    redis.call('ZADD', KEYS[2], score, id .. ':' .. used)
  end
  redis.call('INCRBY', KEYS[3], used - reserved)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[8]))
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[8]))
end
redis.call('ZREM', KEYS[4], id)
if ARGV[6] == '1' then
  redis.call('INCRBY', KEYS[5], tonumber(ARGV[5]) - tonumber(ARGV[4]))
  if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', KEYS[5], tonumber(ARGV[7])) end
end
return 1
