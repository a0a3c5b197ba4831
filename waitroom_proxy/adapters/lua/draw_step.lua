-- draw_step: a scheduled room's phase by the store's clock, and a pre-queue entry
-- (ports.DrawStore.draw_step). The store decides the phase, not a replica's clock.
--
-- KEYS[1] prequeue zset  place id -> pre-queue arrival number
-- KEYS[2] draw     hash  commitment, seed, committed_at, released, revealed_at, ended, pseq
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] prequeue_at (Unix ms, 0 = none)
-- ARGV[3] start_at (Unix ms, 0 = none)
-- ARGV[4] end_at (Unix ms, 0 = none)
-- ARGV[5] place id to enter in the pre-queue ("" = none)
-- ARGV[6] max pre-queue length
-- ARGV[7] key TTL (ms)
-- returns {phase, now, commitment, released, ended, prequeue length, joined}
--   phase: 0 idle, 1 prequeue, 2 open, 3 ended
--   joined: 0 nothing asked, 1 in the pre-queue, 2 pre-queue full, 3 no commitment yet

local prequeue, draw = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local pre, start, stop = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local id = ARGV[5]
local key_ttl = tonumber(ARGV[7])

local phase
if stop > 0 and now >= stop then
  phase = 3
elseif start == 0 or now >= start then
  phase = 2
elseif pre > 0 and now >= pre then
  phase = 1
else
  phase = 0
end
local d = redis.call('HMGET', draw, 'commitment', 'released', 'ended')
local commitment = d[1] or ''
local joined = 0
if phase == 1 and id ~= '' then
  if commitment == '' then
    joined = 3
  elseif redis.call('ZSCORE', prequeue, id) then
    joined = 1
  elseif redis.call('ZCARD', prequeue) >= tonumber(ARGV[6]) then
    joined = 2
  else
    local n = redis.call('HINCRBY', draw, 'pseq', 1)
    redis.call('ZADD', prequeue, n, id)
    redis.call('PEXPIRE', prequeue, key_ttl)
    redis.call('PEXPIRE', draw, key_ttl)
    joined = 1
  end
end
local released = 0
if d[2] then
  released = 1
end
local ended = 0
if d[3] then
  ended = 1
end
return {phase, now, commitment, released, ended, redis.call('ZCARD', prequeue), joined}
