-- stats: a consistent snapshot of one room (ports.Store.stats). Read only.
--
-- KEYS[1] queue    zset
-- KEYS[2] promoted zset
-- KEYS[3] active   zset
-- KEYS[4] counters hash  admitted_total
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- returns {queue_length, active, promoted, admitted_total, now_ms} (integers)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local admitted = tonumber(redis.call('HGET', KEYS[4], 'admitted_total') or '0')
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[2]),
  admitted,
  now,
}
