-- claim: a promoted waiter takes its slot (ports.Store.claim). A place is claimed once.
--
-- KEYS[1] promoted zset  place id -> promotion time (ms)
-- KEYS[2] active   zset  place id -> session deadline (ms)
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] place id
-- ARGV[3] session_ttl_ms
-- ARGV[4] key TTL (ms)
-- returns 1 if this call made the place active, else 0 (not promoted, or claimed already)

local promoted, active = KEYS[1], KEYS[2]
local id = ARGV[2]
if redis.call('ZREM', promoted, id) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
redis.call('ZADD', active, now + tonumber(ARGV[3]), id)
redis.call('PEXPIRE', active, tonumber(ARGV[4]))
return 1
