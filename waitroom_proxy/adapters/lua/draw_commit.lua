-- draw_commit: keep the seed of a scheduled room's draw and publish its commitment, once
-- (ports.DrawStore.draw_commit). Replicas race at the pre-queue's opening; the first wins and
-- every later call changes nothing.
--
-- KEYS[1] draw hash  commitment, seed, committed_at, ...
-- ARGV[1] seed (hex)
-- ARGV[2] commitment (hex SHA-256 of the seed)
-- ARGV[3] committed_at (RFC 3339)
-- ARGV[4] key TTL (ms)
-- returns 1 if this call committed, 0 if a commitment was already there

local draw = KEYS[1]
if redis.call('HEXISTS', draw, 'commitment') == 1 then
  return 0
end
redis.call('HSET', draw, 'seed', ARGV[1], 'commitment', ARGV[2], 'committed_at', ARGV[3])
redis.call('PEXPIRE', draw, tonumber(ARGV[4]))
return 1
