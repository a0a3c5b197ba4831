-- tick: one pass of the admission controller (ports.Store.tick). Bounded work: at most
-- ARGV[8] members are removed from each set and at most ARGV[8] waiters promoted per call.
--
-- KEYS[1] queue       zset  place id -> score
-- KEYS[2] heartbeats  zset  place id -> last heartbeat (ms)
-- KEYS[3] promoted    zset  place id -> promotion time (ms)
-- KEYS[4] active      zset  place id -> session deadline (ms)
-- KEYS[5] counters    hash  admitted_total, seq, tokens (1/60000 token units), tokens_ts (ms)
-- KEYS[6] revoked     zset  session id -> revocation time (ms)
-- KEYS[7] revoked_exp zset  session id -> time the revocation may be forgotten (ms)
-- KEYS[8] meta        hash  runtime room state (only its TTL is refreshed here)
-- KEYS[9] spent       zset  place id -> time it left the queue (ms): tombstones
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] capacity
-- ARGV[3] admit_rate (admissions per minute, 0 = unlimited)
-- ARGV[4] abandon_after_ms
-- ARGV[5] claim_timeout_ms
-- ARGV[6] promote (1 or 0)
-- ARGV[7] force: extra promotions ignoring the bucket and ARGV[6], within capacity
-- ARGV[8] limit per list
-- ARGV[9] key TTL (ms), refreshed on every key of the room
-- ARGV[10] spent_for_ms: tombstones older than this are removed
-- returns {promoted ids, expired session ids, no-show ids, abandoned ids}
-- prelude: bucket

local queue, heartbeats, promoted, active, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local revoked, revoked_exp, meta, spent = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local abandon_after = tonumber(ARGV[4])
local claim_timeout = tonumber(ARGV[5])
local force = tonumber(ARGV[7])
local limit = tonumber(ARGV[8])
local key_ttl = tonumber(ARGV[9])

-- 1. Remove what is past its time (strictly older than the cut-off).
local expired = redis.call('ZRANGEBYSCORE', active, '-inf', '(' .. now, 'LIMIT', 0, limit)
if #expired > 0 then
  redis.call('ZREM', active, unpack(expired))
end
local no_shows = redis.call(
  'ZRANGEBYSCORE', promoted, '-inf', '(' .. (now - claim_timeout), 'LIMIT', 0, limit)
if #no_shows > 0 then
  redis.call('ZREM', promoted, unpack(no_shows))
end
local abandoned = redis.call(
  'ZRANGEBYSCORE', heartbeats, '-inf', '(' .. (now - abandon_after), 'LIMIT', 0, limit)
if #abandoned > 0 then
  redis.call('ZREM', heartbeats, unpack(abandoned))
  redis.call('ZREM', queue, unpack(abandoned))
end
local forgotten = redis.call('ZRANGEBYSCORE', revoked_exp, '-inf', '(' .. now, 'LIMIT', 0, limit)
if #forgotten > 0 then
  redis.call('ZREM', revoked_exp, unpack(forgotten))
  redis.call('ZREM', revoked, unpack(forgotten))
end
local buried = redis.call(
  'ZRANGEBYSCORE', spent, '-inf', '(' .. (now - tonumber(ARGV[10])), 'LIMIT', 0, limit)
if #buried > 0 then
  redis.call('ZREM', spent, unpack(buried))
end

-- 2. Promote from the head within capacity and the token bucket.
local free = capacity - redis.call('ZCARD', active) - redis.call('ZCARD', promoted)
local n = 0
local units, ts
if rate > 0 then
  local b = redis.call('HMGET', counters, 'tokens', 'tokens_ts')
  units, ts = bucket_refill(b[1], b[2], rate, now)
end
if ARGV[6] == '1' and free > 0 then
  n = math.min(free, limit)
  if rate > 0 then
    n = math.min(n, math.floor(units / TOKEN))
  end
end
local head = {}
if n > 0 then
  head = redis.call('ZRANGE', queue, 0, n - 1)
  if rate > 0 then
    units = units - #head * TOKEN
  end
end
-- 3. Operator "admit N now": more, ignoring the bucket, still within capacity.
if force > 0 then
  local extra = math.min(force, free - #head, limit - #head)
  if extra > 0 then
    local more = redis.call('ZRANGE', queue, #head, #head + extra - 1)
    for i = 1, #more do
      head[#head + 1] = more[i]
    end
  end
end
if rate > 0 then
  redis.call('HSET', counters, 'tokens', units, 'tokens_ts', ts)
end
if #head > 0 then
  local args = {}
  for i = 1, #head do
    args[2 * i - 1] = now
    args[2 * i] = head[i]
  end
  redis.call('ZREM', queue, unpack(head))
  redis.call('ZREM', heartbeats, unpack(head))
  redis.call('ZADD', promoted, unpack(args))
  redis.call('ZADD', spent, 'NX', unpack(args))
  redis.call('HINCRBY', counters, 'admitted_total', #head)
end

for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], key_ttl)
end
return {head, expired, no_shows, abandoned}
