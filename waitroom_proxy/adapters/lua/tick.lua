-- tick: one pass of the admission controller (ports.Store.tick). Bounded work: at most
-- ARGV[8] members are removed from each set and at most ARGV[8] waiters promoted per call,
-- and at most ARGV[11] waiters' last touches are read by the sweep.
--
-- KEYS[1] queue       zset  place id -> score
-- KEYS[2] seen        hash  place id -> last touch (ms)
-- KEYS[3] promoted    zset  place id -> promotion time (ms)
-- KEYS[4] active      zset  place id -> session deadline (ms)
-- KEYS[5] counters    hash  admitted_total, promoted_total, seq, tokens (1/60000 token units),
--                           tokens_ts (ms), sweep_rank, sweep_ms
-- KEYS[6] revoked     zset  session id -> revocation time (ms)
-- KEYS[7] revoked_exp zset  session id -> time the revocation may be forgotten (ms)
-- KEYS[8] meta        hash  runtime room state (only its TTL is refreshed here)
-- KEYS[9] spent       zset  place id -> time it left the queue (ms): tombstones
-- KEYS[10] hb         zset  version 0.1's heartbeat set (0.1 replicas during an upgrade): a
--                           touch recorded only there still counts; never created here
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] capacity
-- ARGV[3] admit_rate (admissions per minute, 0 = unlimited)
-- ARGV[4] abandon_after_ms
-- ARGV[5] claim_timeout_ms
-- ARGV[6] promote (1 or 0)
-- ARGV[7] force: extra promotions ignoring the bucket and ARGV[6], within capacity
-- ARGV[8] limit per list
-- ARGV[9] key TTL (ms), refreshed on every key of the room (not on KEYS[10])
-- ARGV[10] spent_for_ms: tombstones older than this are removed
-- ARGV[11] sweep limit: most waiters whose last touch the sweep reads in one call
-- returns {promoted ids, expired session ids, no-show ids, abandoned ids}
--
-- Abandonment: a waiter untouched for longer than abandon_after_ms is abandoned. Touches are
-- a hash (O(1) to record, ~85 bytes a waiter), so there is no index by time: the sweep reads
-- the queue in rank order, a slice per call, sized so that the whole queue is read about once
-- per abandon_after_ms of store time whichever replicas tick (the cursor and the time of the
-- last sweep live in counters). The head is read again before anyone is promoted, so nobody
-- abandoned is ever promoted, and heartbeat abandons a silent place it is asked about: an
-- abandoned waiter is out at abandon_after, and its entry is gone within about twice that.
-- A waiter with no touch recorded (a place queued by version 0.1) gets one now.
-- prelude: bucket

local queue, seen, promoted, active, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local revoked, revoked_exp, meta, spent, hb = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local abandon_after = tonumber(ARGV[4])
local claim_timeout = tonumber(ARGV[5])
local force = tonumber(ARGV[7])
local limit = tonumber(ARGV[8])
local key_ttl = tonumber(ARGV[9])
local sweep_limit = tonumber(ARGV[11])
local cut = now - abandon_after
local CHUNK = 1000 -- ids per HMGET / ZREM (Lua's unpack has a limit)

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

-- Which of ids (at most CHUNK) are abandoned (1), alive (0) or have no touch recorded (2).
local function judge(ids)
  local times = redis.call('HMGET', seen, unpack(ids))
  local out, late = {}, {}
  for i = 1, #ids do
    if not times[i] then
      out[i] = 2
    elseif tonumber(times[i]) < cut then
      out[i] = 1
      late[#late + 1] = i
    else
      out[i] = 0
    end
  end
  if #late > 0 then
    -- A 0.1 replica may have recorded a touch in the old set only.
    local names = {}
    for j = 1, #late do
      names[j] = ids[late[j]]
    end
    local old = redis.call('ZMSCORE', hb, unpack(names))
    for j = 1, #late do
      if old[j] and tonumber(old[j]) >= cut then
        out[late[j]] = 0
      end
    end
  end
  return out
end

local abandoned = {}
local unseen = {}
local function drop(ids)
  for lo = 1, #ids, CHUNK do
    local part = {unpack(ids, lo, math.min(#ids, lo + CHUNK - 1))}
    redis.call('ZREM', queue, unpack(part))
    redis.call('HDEL', seen, unpack(part))
    redis.call('ZREM', hb, unpack(part))
  end
end

-- 2. The sweep: a slice of the queue in rank order, the whole queue once per abandon_after.
local qlen = redis.call('ZCARD', queue)
if qlen > 0 then
  local sw = redis.call('HMGET', counters, 'sweep_rank', 'sweep_ms')
  local rank, since = tonumber(sw[1]) or 0, tonumber(sw[2])
  local budget = qlen
  if since ~= nil and now - since < abandon_after then
    budget = math.ceil(qlen * math.max(0, now - since) / abandon_after)
  end
  budget = math.min(budget, sweep_limit)
  if budget > 0 then
    if rank >= qlen then
      rank = 0
    end
    local ids = redis.call('ZRANGE', queue, rank, rank + budget - 1)
    for lo = 1, #ids, CHUNK do
      local part = {unpack(ids, lo, math.min(#ids, lo + CHUNK - 1))}
      local verdict = judge(part)
      for i = 1, #part do
        if verdict[i] == 1 and #abandoned < limit then
          abandoned[#abandoned + 1] = part[i]
        elseif verdict[i] == 2 then
          unseen[#unseen + 1] = part[i]
        end
      end
    end
    rank = rank + #ids - #abandoned
    if #ids < budget then
      rank = 0 -- the end of the queue: start again from the head
    end
    redis.call('HSET', counters, 'sweep_rank', rank, 'sweep_ms', now)
    if #abandoned > 0 then
      drop(abandoned)
    end
  end
end
if #unseen > 0 then
  -- Places with no touch recorded (queued by version 0.1): a full abandon_after from now.
  for lo = 1, #unseen, CHUNK do
    local args = {}
    for i = lo, math.min(#unseen, lo + CHUNK - 1) do
      args[#args + 1] = unseen[i]
      args[#args + 1] = now
    end
    redis.call('HSET', seen, unpack(args))
  end
end

-- 3. Promote from the head within capacity and the token bucket, skipping (and removing) the
--    abandoned: never more of them than the limit per call.
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
local late = {}
local pos = 0
local function take(count)
  while count > 0 and #late + #abandoned < limit do
    local ids = redis.call('ZRANGE', queue, pos, pos + math.min(count, CHUNK) - 1)
    if #ids == 0 then
      return
    end
    local verdict = judge(ids)
    for i = 1, #ids do
      if verdict[i] == 1 then
        if #late + #abandoned >= limit then
          return
        end
        late[#late + 1] = ids[i]
      else
        head[#head + 1] = ids[i]
        count = count - 1
      end
      pos = pos + 1
      if count == 0 then
        return
      end
    end
  end
end
take(n)
if rate > 0 then
  units = units - #head * TOKEN
end
-- Operator "admit N now": more, ignoring the bucket, still within capacity.
if force > 0 then
  local extra = math.min(force, free - #head, limit - #head)
  if extra > 0 then
    take(extra)
  end
end
if rate > 0 then
  redis.call('HSET', counters, 'tokens', units, 'tokens_ts', ts)
end
if #late > 0 then
  drop(late)
  for i = 1, #late do
    abandoned[#abandoned + 1] = late[i]
  end
end
if #head > 0 then
  local args = {}
  for i = 1, #head do
    args[2 * i - 1] = now
    args[2 * i] = head[i]
  end
  drop(head)
  redis.call('ZADD', promoted, unpack(args))
  redis.call('ZADD', spent, 'NX', unpack(args))
  redis.call('HINCRBY', counters, 'admitted_total', #head)
  redis.call('HINCRBY', counters, 'promoted_total', #head)
end
for i = 1, 9 do
  redis.call('PEXPIRE', KEYS[i], key_ttl)
end
return {head, expired, no_shows, abandoned}
