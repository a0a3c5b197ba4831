-- reassert: live sessions re-assert themselves, recent ends are applied again
-- (ports.Store.reassert). A replica sends the sessions whose tokens it verified; the store
-- counts again those it lost (a restart without persistence, a shard or a failover that
-- missed writes). No capacity check: they were admitted and pass on their tokens anyway.
--
-- KEYS[1] active      zset  place id -> session deadline (ms)
-- KEYS[2] promoted    zset  place id -> promotion time (ms)
-- KEYS[3] queue       zset  place id -> score
-- KEYS[4] heartbeats  zset  place id -> last heartbeat (ms)
-- KEYS[5] spent       zset  place id -> time it left the queue (ms): tombstones
-- KEYS[6] revoked     zset  session id -> revocation time (ms)
-- KEYS[7] revoked_exp zset  session id -> time the revocation may be forgotten (ms)
-- ARGV[1] test-only clock offset (ms) added to TIME; production always passes 0
-- ARGV[2] key TTL (ms)
-- ARGV[3] revoke_for_ms for the ended ids (<= 0: their revocation is not recorded)
-- ARGV[4] n: how many (id, lease ms) pairs follow
-- ARGV[5..4+2n] id, lease ms, ...; ARGV[5+2n..] ended ids
-- returns {kept, readded, refused, dropped}

local active, promoted, queue, heartbeats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local spent, revoked, revoked_exp = KEYS[5], KEYS[6], KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local key_ttl = tonumber(ARGV[2])
local revoke_for = tonumber(ARGV[3])
local pairs_n = tonumber(ARGV[4])
local first_ended = 5 + 2 * pairs_n
local kept, readded, refused, dropped = 0, 0, 0, 0
local wrote_active, wrote_spent, wrote_revoked = false, false, false

-- Ends first: an end the store lost frees its slot again and is recorded once more.
for i = first_ended, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', active, id) == 1 then
    dropped = dropped + 1
  end
  redis.call('ZREM', promoted, id)
  if redis.call('ZREM', queue, id) == 1 then
    redis.call('ZREM', heartbeats, id)
  end
  redis.call('ZADD', spent, 'NX', now, id)
  wrote_spent = true
  if revoke_for > 0 and not redis.call('ZSCORE', revoked, id) then
    redis.call('ZADD', revoked, now, id)
    redis.call('ZADD', revoked_exp, now + revoke_for, id)
    wrote_revoked = true
  end
end

for i = 5, first_ended - 1, 2 do
  local id = ARGV[i]
  local deadline = now + tonumber(ARGV[i + 1])
  local current = redis.call('ZSCORE', active, id)
  if current then
    kept = kept + 1
    if tonumber(current) < deadline then
      redis.call('ZADD', active, deadline, id)
      wrote_active = true
    end
  elseif redis.call('ZSCORE', revoked, id) then
    refused = refused + 1
  elseif not redis.call('ZSCORE', promoted, id) then
    -- The store lost this session: count it again (a replayed ticket of it leaves the queue).
    if redis.call('ZREM', queue, id) == 1 then
      redis.call('ZREM', heartbeats, id)
    end
    redis.call('ZADD', active, deadline, id)
    redis.call('ZADD', spent, 'NX', now, id)
    readded = readded + 1
    wrote_active, wrote_spent = true, true
  end
end

if wrote_active then
  redis.call('PEXPIRE', active, key_ttl)
end
if wrote_spent then
  redis.call('PEXPIRE', spent, key_ttl)
end
if wrote_revoked then
  redis.call('PEXPIRE', revoked, key_ttl)
  redis.call('PEXPIRE', revoked_exp, key_ttl)
end
return {kept, readded, refused, dropped}
