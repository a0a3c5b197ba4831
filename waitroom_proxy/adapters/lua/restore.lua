-- restore: count sessions the store does not know, tombstone places known to be spent
-- (ports.Store.restore). Called by a replica that saw the room's state vanish (the sessions it
-- knows are still valid: their tokens verify locally), and for sessions admitted while the
-- store was down. No capacity check: these visitors are already in.
--
-- KEYS[1] active zset     place id -> session deadline (ms)
-- KEYS[2] queue zset      place id -> score
-- KEYS[3] promoted zset   (a place id promoted is left as it is)
-- KEYS[4] counters hash   field seq: the arrival sequence
-- KEYS[5] seen hash       place id -> last touch (ms)
-- KEYS[6] spent zset      place id -> time it left the queue (ms): tombstones
-- KEYS[7] hb zset         version 0.1's heartbeat set (0.1 replicas during an upgrade)
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] session_ttl_ms
-- ARGV[3] key TTL (ms)
-- ARGV[4] min_seq: the arrival sequence is raised to at least this (newcomers queue behind
--         every waiter of the lost state, whose tickets carry scores up to it)
-- ARGV[5] n: how many of the ids that follow are sessions; the rest are only tombstoned
-- ARGV[6..n+5] session place ids; ARGV[n+6..] spent place ids
-- returns the number of sessions added

local active, queue, promoted, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local seen, spent, hb = KEYS[5], KEYS[6], KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local key_ttl = tonumber(ARGV[3])
local min_seq = tonumber(ARGV[4])
local sessions = tonumber(ARGV[5])
if min_seq > tonumber(redis.call('HGET', counters, 'seq') or '0') then
  redis.call('HSET', counters, 'seq', min_seq)
  redis.call('PEXPIRE', counters, key_ttl)
end
local n = 0
local touched = false
for i = 6, #ARGV do
  local id = ARGV[i]
  if not redis.call('ZSCORE', promoted, id) then
    -- A place known to be spent found waiting: a replayed ticket slipped in after the loss.
    if redis.call('ZREM', queue, id) == 1 then
      redis.call('HDEL', seen, id)
      redis.call('ZREM', hb, id)
    end
    if i < 6 + sessions and not redis.call('ZSCORE', active, id) then
      redis.call('ZADD', active, deadline, id)
      n = n + 1
    end
    redis.call('ZADD', spent, 'NX', now, id)
    touched = true
  end
end
if n > 0 then
  redis.call('PEXPIRE', active, key_ttl)
end
if touched then
  redis.call('PEXPIRE', spent, key_ttl)
end
return n
