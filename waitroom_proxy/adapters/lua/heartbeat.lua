-- heartbeat: waiters' pages touch their places (ports.Store.heartbeat). Never adds a place.
-- The cheapest call a waiter makes; the gatekeeper makes it only every few polls far from the
-- front (domain/pacing.py), and a replica sends a room's heartbeats of a short window as one
-- call with many ids (adapters/redis_heartbeats.py): TIME, the counters and the queue's length
-- are read once a call, and the call's own cost (the request, the script's start, the reply)
-- is shared, so the store's core holds as many waiters as it can.
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
-- ARGV[2] abandon_after_ms: a place untouched for longer is abandoned now (the controller's
--         sweep may not have reached it yet), and answered as unknown
-- ARGV[3..] place ids, one or more (an id given twice is touched twice, in order)
-- returns six integers per id, in the ids' order:
--   {status, position, queue_length, score, promoted_total, now_ms} (the last three 0 unless
--   waiting; queue_length as it is after that id's touch)
--   status: 0 unknown, 1 waiting, 2 promoted, 5 spent (active, or tombstoned)
-- prelude: settled

local queue, seen, promoted, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local spent, counters, hb = KEYS[5], KEYS[6], KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local cut = now - tonumber(ARGV[2])
local old_hb = redis.call('EXISTS', hb) == 1
local taken = tonumber(redis.call('HGET', counters, 'promoted_total') or '0')
local length = redis.call('ZCARD', queue)
local out, k = {}, 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local status, rank, score = 0, 0, redis.call('ZSCORE', queue, id)
  if score then
    status = 1
    local last = redis.call('HGET', seen, id)
    if last and tonumber(last) < cut then
      local old = old_hb and redis.call('ZSCORE', hb, id)
      if not old or tonumber(old) < cut then
        redis.call('ZREM', queue, id)
        redis.call('HDEL', seen, id)
        length = length - 1
        status = 0
      end
    end
  else
    status = settled(promoted, active, spent, id)
  end
  if status == 1 then
    redis.call('HSET', seen, id, now)
    if old_hb then
      redis.call('ZADD', hb, 'XX', now, id)
    end
    rank = redis.call('ZRANK', queue, id) + 1
    out[k + 1], out[k + 2], out[k + 3] = 1, rank, length
    out[k + 4], out[k + 5], out[k + 6] = tonumber(score), taken, now
  else
    out[k + 1], out[k + 2], out[k + 3] = status, 0, length
    out[k + 4], out[k + 5], out[k + 6] = 0, 0, 0
  end
  k = k + 6
end
return out
