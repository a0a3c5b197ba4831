-- heartbeat: a waiter's page polls (ports.Store.heartbeat). Never adds a place.
--
-- KEYS[1] queue      zset  place id -> score
-- KEYS[2] heartbeats zset  place id -> last heartbeat (ms)
-- KEYS[3] promoted   zset  place id -> promotion time (ms)
-- KEYS[4] active     zset  place id -> session deadline (ms)
-- KEYS[5] spent      zset  place id -> time it left the queue (ms): tombstones
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] place id
-- ARGV[3] key TTL (ms), set on the heartbeats key only if it has none
-- returns {status, position, queue_length, score} (integers)
--   status: 0 unknown, 1 waiting, 2 promoted, 5 spent (active, or tombstoned)

local queue, heartbeats, promoted, active, spent = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[2]
local score = redis.call('ZSCORE', queue, id)
local qlen = redis.call('ZCARD', queue)
if score then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
  redis.call('ZADD', heartbeats, now, id)
  if redis.call('PTTL', heartbeats) < 0 then
    redis.call('PEXPIRE', heartbeats, tonumber(ARGV[3]))
  end
  return {1, redis.call('ZRANK', queue, id) + 1, qlen, tonumber(score)}
end
if redis.call('ZSCORE', promoted, id) then
  return {2, 0, qlen, 0}
end
if redis.call('ZSCORE', active, id) or redis.call('ZSCORE', spent, id) then
  return {5, 0, qlen, 0}
end
return {0, 0, qlen, 0}
