-- draw_release: at start_at, move the whole pre-queue into the queue in the drawn order, once
-- (ports.DrawStore.draw_release). The order comes from the replica (the draw's HMAC is not
-- in Lua); the store checks that the clock passed start_at, that the pre-queue still holds
-- exactly these places (entries frozen), and that nobody released it before.
--
-- KEYS[1] prequeue   zset  place id -> pre-queue arrival number
-- KEYS[2] draw       hash  released, revealed_at are set here
-- KEYS[3] queue      zset  place id -> score
-- KEYS[4] heartbeats zset  place id -> last heartbeat (ms)
-- KEYS[5] counters   hash  seq (raised past the pre-queue)
-- KEYS[6] audit      string the published audit document (JSON)
-- KEYS[7] spent      zset  tombstones: a place that left during the pre-queue is not queued
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] start_at (Unix ms)
-- ARGV[3] key TTL (ms)
-- ARGV[4] audit document (JSON)
-- ARGV[5] n: how many place ids follow
-- ARGV[6..] place ids, first admitted first
-- returns n planned (the tombstoned ones keep their draw position but are not queued); -1 released already; -2 too early; -3 the pre-queue changed

local prequeue, draw, queue, heartbeats, counters, audit = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[6]
local spent = KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local key_ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[5])
if now < tonumber(ARGV[2]) then
  return -2
end
if redis.call('HEXISTS', draw, 'released') == 1 then
  return -1
end
if redis.call('ZCARD', prequeue) ~= n then
  return -3
end
for i = 1, n do
  if not redis.call('ZSCORE', prequeue, ARGV[5 + i]) then
    return -3
  end
end
local seq = tonumber(redis.call('HGET', counters, 'seq') or '0')
local chunk = 500
for first = 1, n, chunk do
  local last = math.min(n, first + chunk - 1)
  local scores, beats = {}, {}
  for i = first, last do
    local id = ARGV[5 + i]
    if not redis.call('ZSCORE', spent, id) then
      scores[#scores + 1] = seq + i
      scores[#scores + 1] = id
      beats[#beats + 1] = now
      beats[#beats + 1] = id
    end
  end
  if #scores > 0 then
    redis.call('ZADD', queue, unpack(scores))
    redis.call('ZADD', heartbeats, unpack(beats))
  end
end
redis.call('HSET', counters, 'seq', seq + n)
redis.call('HSET', draw, 'released', '1', 'revealed_at', now)
redis.call('SET', audit, ARGV[4], 'PX', key_ttl)
redis.call('DEL', prequeue)
for i = 2, 5 do
  redis.call('PEXPIRE', KEYS[i], key_ttl)
end
return n
