-- arrive: a visitor without a session asks to get in (ports.Store.arrive).
--
-- KEYS[1] queue      zset  place id -> score (arrival sequence or lottery draw)
-- KEYS[2] seen       hash  place id -> last touch (ms)
-- KEYS[3] promoted   zset  place id -> promotion time (ms)
-- KEYS[4] active     zset  place id -> session deadline (ms)
-- KEYS[5] counters   hash  admitted_total, promoted_total, seq, tokens (1/60000 token units),
--                          tokens_ts (ms)
-- KEYS[6] spent      zset  place id -> time it left the queue (ms): tombstones
-- KEYS[7] hb         zset  version 0.1's heartbeat set, only kept fresh (XX) for 0.1 replicas
--                          still running during an upgrade; never created here
-- KEYS[8] meta       hash  the room's meta map: its 'incarnation' marker (read only)
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] place id
-- ARGV[3] capacity
-- ARGV[4] admit_rate (admissions per minute, 0 = unlimited)
-- ARGV[5] session_ttl_ms
-- ARGV[6] max_queue_length
-- ARGV[7] direct_admit (1 or 0)
-- ARGV[8] count_only (1 or 0)
-- ARGV[9] score ("" = next arrival sequence)
-- ARGV[10] key TTL (ms), refreshed on every key this call writes
-- ARGV[11] marker: admit directly only while meta's 'incarnation' is this one ('' no check):
--          a room whose state the store lost looks empty, and its lost sessions re-assert
--          at the replicas' next controller pass (ports.RoomLimits.marker)
-- returns {status, position, queue_length, score, promoted_total, now_ms} (integers; the last
--   three 0 unless waiting)
--   status: 1 waiting, 2 promoted, 3 active (admitted by this call), 4 full,
--           5 spent (active already, or tombstoned: the place id takes no position again)
-- prelude: bucket
-- prelude: settled

local queue, seen, promoted, active, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local spent, hb, meta = KEYS[6], KEYS[7], KEYS[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local id = ARGV[2]
local capacity = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local session_ttl = tonumber(ARGV[5])
local max_len = tonumber(ARGV[6])
local key_ttl = tonumber(ARGV[10])

local function taken()
  return tonumber(redis.call('HGET', counters, 'promoted_total') or '0')
end

local score = redis.call('ZSCORE', queue, id)
if score then
  -- Already waiting (even if silent for long: the gatekeeper passes a place id only for a
  -- ticket it lets keep its place): a touch.
  redis.call('HSET', seen, id, now)
  redis.call('PEXPIRE', seen, key_ttl)
  redis.call('ZADD', hb, 'XX', now, id)
  local rank = redis.call('ZRANK', queue, id)
  return {1, rank + 1, redis.call('ZCARD', queue), tonumber(score), taken(), now}
end
local qlen = redis.call('ZCARD', queue)
local known = settled(promoted, active, spent, id)
if known ~= 0 then
  return {known, 0, qlen, 0, 0, 0}
end

local function admit()
  redis.call('ZADD', active, now + session_ttl, id)
  redis.call('PEXPIRE', active, key_ttl)
  redis.call('ZADD', spent, now, id)
  redis.call('PEXPIRE', spent, key_ttl)
  redis.call('HINCRBY', counters, 'admitted_total', 1)
  redis.call('PEXPIRE', counters, key_ttl)
  return {3, 0, qlen, 0, 0, 0}
end

if ARGV[8] == '1' then
  return admit()
end

local function marked()
  return ARGV[11] == '' or redis.call('HGET', meta, 'incarnation') == ARGV[11]
end

if ARGV[7] == '1' and qlen == 0 and marked() then
  local used = redis.call('ZCARD', active) + redis.call('ZCARD', promoted)
  if used < capacity then
    if rate <= 0 then
      return admit()
    end
    local b = redis.call('HMGET', counters, 'tokens', 'tokens_ts')
    local units, ts = bucket_refill(b[1], b[2], rate, now)
    if units >= TOKEN then
      redis.call('HSET', counters, 'tokens', units - TOKEN, 'tokens_ts', ts)
      return admit()
    end
    redis.call('HSET', counters, 'tokens', units, 'tokens_ts', ts)
    redis.call('PEXPIRE', counters, key_ttl)
  end
end

if qlen >= max_len then
  return {4, 0, qlen, 0, 0, 0}
end

local s
if ARGV[9] ~= '' then
  s = tonumber(ARGV[9])
  local seq = tonumber(redis.call('HGET', counters, 'seq') or '0')
  if s > seq then
    redis.call('HSET', counters, 'seq', s)
  end
else
  s = redis.call('HINCRBY', counters, 'seq', 1)
end
redis.call('PEXPIRE', counters, key_ttl)
redis.call('ZADD', queue, s, id)
redis.call('HSET', seen, id, now)
redis.call('PEXPIRE', queue, key_ttl)
redis.call('PEXPIRE', seen, key_ttl)
return {1, redis.call('ZRANK', queue, id) + 1, qlen + 1, s, taken(), now}
