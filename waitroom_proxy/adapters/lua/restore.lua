-- restore: re-count sessions after the store lost its data (ports.Store.restore).
-- Only called by a replica that saw the room's incarnation marker vanish: the sessions it
-- knows of are still valid (their tokens verify locally), so the store must count them again.
-- No capacity check: these visitors are already in.
--
-- KEYS[1] active zset    place id -> session deadline (ms)
-- KEYS[2] queue zset     (a place id waiting is not a session)
-- KEYS[3] promoted zset  (nor is one promoted)
-- KEYS[4] counters hash  field seq: the arrival sequence
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] session_ttl_ms
-- ARGV[3] key TTL (ms)
-- ARGV[4] min_seq: the arrival sequence is raised to at least this (newcomers queue behind
--         every waiter of the lost state, whose tickets carry scores up to it)
-- ARGV[5..n] place ids
-- returns the number of sessions added

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local n = 0
local min_seq = tonumber(ARGV[4])
if min_seq > tonumber(redis.call('HGET', KEYS[4], 'seq') or '0') then
  redis.call('HSET', KEYS[4], 'seq', min_seq)
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[3]))
end
for i = 5, #ARGV do
  local id = ARGV[i]
  if not redis.call('ZSCORE', KEYS[1], id)
      and not redis.call('ZSCORE', KEYS[2], id)
      and not redis.call('ZSCORE', KEYS[3], id) then
    redis.call('ZADD', KEYS[1], deadline, id)
    n = n + 1
  end
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return n
