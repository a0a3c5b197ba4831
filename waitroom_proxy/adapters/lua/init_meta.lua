-- init_meta: set one key of the room's runtime state map only if it is absent
-- (ports.Store.init_meta). Replicas (or worker processes) starting on an empty store race to
-- write the room's incarnation marker: HSETNX lets exactly one win, and every caller gets the
-- winner's value back.
--
-- KEYS[1] meta hash
-- ARGV[1] key TTL (ms)
-- ARGV[2] field
-- ARGV[3] value (non-empty)
-- returns the field's value afterwards: ARGV[3] if it was absent, else the value already there

local meta = KEYS[1]
redis.call('HSETNX', meta, ARGV[2], ARGV[3])
redis.call('PEXPIRE', meta, tonumber(ARGV[1]))
return redis.call('HGET', meta, ARGV[2])
