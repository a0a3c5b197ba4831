-- revoked_since: session ids revoked at or after a time (ports.Store.revoked_since). Read only.
--
-- KEYS[1] revoked zset  session id -> revocation time (ms)
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] since (ms, store clock)
-- returns {now_ms, {ids...}}

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
return {now, redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf')}
