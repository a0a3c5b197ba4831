-- leave: give up the place or end the session, freeing the slot at once (ports.Store.leave).
--
-- KEYS[1] queue       zset  place id -> score
-- KEYS[2] heartbeats  zset  place id -> last heartbeat (ms)
-- KEYS[3] promoted    zset  place id -> promotion time (ms)
-- KEYS[4] active      zset  place id -> session deadline (ms)
-- KEYS[5] revoked     zset  session id -> revocation time (ms)
-- KEYS[6] revoked_exp zset  session id -> time the revocation may be forgotten (ms)
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] place id
-- ARGV[3] revoke_for_ms (an active session is revoked until now + this; <= 0: not recorded)
-- ARGV[4] key TTL (ms)
-- returns the status the place had: 0 unknown, 1 waiting, 2 promoted, 3 active

local queue, heartbeats, promoted, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local revoked, revoked_exp = KEYS[5], KEYS[6]
local id = ARGV[2]
if redis.call('ZREM', queue, id) == 1 then
  redis.call('ZREM', heartbeats, id)
  return 1
end
redis.call('ZREM', heartbeats, id)
if redis.call('ZREM', promoted, id) == 1 then
  return 2
end
if redis.call('ZREM', active, id) == 1 then
  local revoke_for = tonumber(ARGV[3])
  if revoke_for > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
    local key_ttl = tonumber(ARGV[4])
    redis.call('ZADD', revoked, now, id)
    redis.call('ZADD', revoked_exp, now + revoke_for, id)
    redis.call('PEXPIRE', revoked, key_ttl)
    redis.call('PEXPIRE', revoked_exp, key_ttl)
  end
  return 3
end
return 0
