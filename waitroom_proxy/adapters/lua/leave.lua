-- leave: give up the place or end the session, freeing the slot at once (ports.Store.leave).
-- Whatever the place was, it is tombstoned: its ticket takes no position again.
--
-- KEYS[1] queue       zset  place id -> score
-- KEYS[2] heartbeats  zset  place id -> last heartbeat (ms)
-- KEYS[3] promoted    zset  place id -> promotion time (ms)
-- KEYS[4] active      zset  place id -> session deadline (ms)
-- KEYS[5] revoked     zset  session id -> revocation time (ms)
-- KEYS[6] revoked_exp zset  session id -> time the revocation may be forgotten (ms)
-- KEYS[7] spent       zset  place id -> time it left the queue (ms): tombstones
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] place id
-- ARGV[3] revoke_for_ms (an active or unknown place is revoked until now + this; <= 0: not
--         recorded)
-- ARGV[4] key TTL (ms)
-- returns the status the place had: 0 unknown, 1 waiting, 2 promoted, 3 active

local queue, heartbeats, promoted, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local revoked, revoked_exp, spent = KEYS[5], KEYS[6], KEYS[7]
local id = ARGV[2]
local key_ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])

local was = 0
if redis.call('ZREM', queue, id) == 1 then
  was = 1
elseif redis.call('ZREM', promoted, id) == 1 then
  was = 2
elseif redis.call('ZREM', active, id) == 1 then
  was = 3
end
-- An ended session is revoked; so is a place the store does not know: it may be a session the
-- store lost, which must not be re-asserted (reassert.lua) after its end.
local revoke_for = tonumber(ARGV[3])
if (was == 3 or was == 0) and revoke_for > 0 then
  redis.call('ZADD', revoked, now, id)
  redis.call('ZADD', revoked_exp, now + revoke_for, id)
  redis.call('PEXPIRE', revoked, key_ttl)
  redis.call('PEXPIRE', revoked_exp, key_ttl)
end
redis.call('ZREM', heartbeats, id)
-- The first time the place left the queue counts (a later leave does not move the tombstone).
redis.call('ZADD', spent, 'NX', now, id)
redis.call('PEXPIRE', spent, key_ttl)
return was
