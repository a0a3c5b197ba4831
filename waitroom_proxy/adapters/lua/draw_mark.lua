-- draw_mark: set one field of a scheduled room's draw state if absent
-- (ports.DrawStore.draw_mark), e.g. "ended": the replica whose call wrote it publishes the
-- event, so it is published once whatever the number of replicas.
--
-- KEYS[1] draw hash
-- ARGV[1] field
-- ARGV[2] value
-- ARGV[3] key TTL (ms)
-- returns 1 if this call wrote the field, 0 if it was there

local draw = KEYS[1]
local wrote = redis.call('HSETNX', draw, ARGV[1], ARGV[2])
redis.call('PEXPIRE', draw, tonumber(ARGV[3]))
return wrote
