-- draw_reset: forget a scheduled room's draw (ports.DrawStore.draw_reset): the operator set
-- a new schedule or cancelled it. Places still in the pre-queue are released in arrival order
-- (FIFO), behind the queue, so nobody holding a ticket loses it.
--
-- KEYS[1] prequeue   zset  place id -> pre-queue arrival number
-- KEYS[2] draw       hash
-- KEYS[3] queue      zset  place id -> score
-- KEYS[4] heartbeats zset  place id -> last heartbeat (ms)
-- KEYS[5] counters   hash  seq
-- KEYS[6] audit      string
-- KEYS[7] spent      zset  tombstones: a place that left during the pre-queue is not queued
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] key TTL (ms)
-- returns how many pre-queue places were moved to the queue

local prequeue, draw, queue, heartbeats, counters, audit = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[6]
local spent = KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local key_ttl = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', prequeue, 0, -1)
local seq = tonumber(redis.call('HGET', counters, 'seq') or '0')
for i = 1, #ids do
  if not redis.call('ZSCORE', spent, ids[i]) then
    redis.call('ZADD', queue, seq + i, ids[i])
    redis.call('ZADD', heartbeats, now, ids[i])
  end
end
if #ids > 0 then
  redis.call('HSET', counters, 'seq', seq + #ids)
  for i = 3, 5 do
    redis.call('PEXPIRE', KEYS[i], key_ttl)
  end
end
redis.call('DEL', prequeue, draw, audit)
return #ids
