-- touch: coalesced session activity (ports.Store.touch). Never resurrects a session.
--
-- KEYS[1] active zset  place id -> session deadline (ms)
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] session_ttl_ms
-- ARGV[3] key TTL (ms)
-- ARGV[4..n] place ids
-- returns the number of ids that were active (each now has deadline >= now + session_ttl_ms)

local active = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local n = 0
for i = 4, #ARGV do
  local current = redis.call('ZSCORE', active, ARGV[i])
  if current then
    n = n + 1
    if tonumber(current) < deadline then
      redis.call('ZADD', active, deadline, ARGV[i])
    end
  end
end
if n > 0 then
  redis.call('PEXPIRE', active, tonumber(ARGV[3]))
end
return n
