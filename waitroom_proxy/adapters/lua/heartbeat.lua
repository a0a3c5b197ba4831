-- heartbeat: a waiter's page touches its place (ports.Store.heartbeat). Never adds a place.
-- The cheapest call a waiter makes; the gatekeeper makes it only every few polls far from the
-- front (domain/pacing.py), so the store's core holds as many waiters as it can.
--
-- KEYS[1] queue    zset  place id -> score
-- KEYS[2] seen     hash  place id -> last touch (ms)
-- KEYS[3] promoted zset  place id -> promotion time (ms)
-- KEYS[4] active   zset  place id -> session deadline (ms)
-- KEYS[5] spent    zset  place id -> time it left the queue (ms): tombstones
-- KEYS[6] counters hash  promoted_total: waiters taken from the queue so far
-- KEYS[7] hb       zset  version 0.1's heartbeat set, only kept fresh (XX) for 0.1 replicas
--                        still running during an upgrade; never created here
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] place id
-- ARGV[3] abandon_after_ms: a place untouched for longer is abandoned now (the controller's
--         sweep may not have reached it yet), and answered as unknown
-- returns {status, position, queue_length, score, promoted_total, now_ms} (integers; the last
--   three 0 unless waiting)
--   status: 0 unknown, 1 waiting, 2 promoted, 5 spent (active, or tombstoned)
-- prelude: settled

local queue, seen, promoted, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local spent, counters, hb = KEYS[5], KEYS[6], KEYS[7]
local id = ARGV[2]
local score = redis.call('ZSCORE', queue, id)
if score then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
  local cut = now - tonumber(ARGV[3])
  local last = redis.call('HGET', seen, id)
  if last and tonumber(last) < cut then
    local old = redis.call('ZSCORE', hb, id)
    if not old or tonumber(old) < cut then
      redis.call('ZREM', queue, id)
      redis.call('HDEL', seen, id)
      return {0, 0, redis.call('ZCARD', queue), 0, 0, 0}
    end
  end
  redis.call('HSET', seen, id, now)
  redis.call('ZADD', hb, 'XX', now, id)
  local taken = tonumber(redis.call('HGET', counters, 'promoted_total') or '0')
  local rank = redis.call('ZRANK', queue, id)
  return {1, rank + 1, redis.call('ZCARD', queue), tonumber(score), taken, now}
end
return {settled(promoted, active, spent, id), 0, redis.call('ZCARD', queue), 0, 0, 0}
