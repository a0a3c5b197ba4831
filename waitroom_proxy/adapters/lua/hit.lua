-- Sliding-window rate limit of one client (same arithmetic as domain/ratelimit.py).
-- KEYS[1]  hash of one client: i = window index, c = hits in window i, p = hits in window i-1
-- ARGV[1]  clock offset in ms added to TIME (tests only; production passes 0)
-- ARGV[2]  limit: hits allowed per sliding window
-- ARGV[3]  window length in ms
-- returns  0 when the hit is allowed (and recorded), else the ms to wait before a retry
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local win = tonumber(ARGV[3])
local idx = math.floor(now / win)
local h = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local cur, prev = 0, 0
local i = tonumber(h[1])
if i ~= nil then
  if i == idx then
    cur = tonumber(h[2]) or 0
    prev = tonumber(h[3]) or 0
  elseif i == idx - 1 then
    prev = tonumber(h[2]) or 0
  end
end
local elapsed = now - idx * win
local weighted = prev * (win - elapsed) + cur * win
if weighted + win > limit * win then
  local wait
  if cur + 1 > limit or prev == 0 then
    wait = win - elapsed
  else
    local need = win - math.floor(((limit - cur - 1) * win) / prev)
    wait = need - elapsed
  end
  if wait < 1 then wait = 1 end
  return wait
end
redis.call('HSET', KEYS[1], 'i', idx, 'c', cur + 1, 'p', prev)
redis.call('PEXPIRE', KEYS[1], win * 2)
return 0
