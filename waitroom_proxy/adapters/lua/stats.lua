-- stats: a consistent snapshot of one room (ports.Store.stats). Read only.
--
-- KEYS[1] queue    zset
-- KEYS[2] promoted zset
-- KEYS[3] active   zset
-- KEYS[4] counters hash  admitted_total, promoted_total
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- returns {queue_length, active, promoted, admitted_total, now_ms, promoted_total, has_head,
--   head_score} (integers; has_head 0 and head_score 0 when nobody waits)

local queue, counters = KEYS[1], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local c = redis.call('HMGET', counters, 'admitted_total', 'promoted_total')
local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
local has_head, head_score = 0, 0
if #head == 2 then
  has_head, head_score = 1, tonumber(head[2])
end
return {
  redis.call('ZCARD', queue),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[2]),
  tonumber(c[1]) or 0,
  now,
  tonumber(c[2]) or 0,
  has_head,
  head_score,
}
