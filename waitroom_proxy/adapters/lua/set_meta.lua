-- set_meta: set keys of the room's runtime state map (ports.Store.set_meta).
--
-- KEYS[1] meta hash
-- ARGV[1] key TTL (ms)
-- ARGV[2..n] field, value pairs; an empty value deletes the field
-- returns the number of fields in the map afterwards

local meta = KEYS[1]
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', meta, ARGV[i])
  else
    redis.call('HSET', meta, ARGV[i], ARGV[i + 1])
  end
end
if redis.call('EXISTS', meta) == 1 then
  redis.call('PEXPIRE', meta, tonumber(ARGV[1]))
end
return redis.call('HLEN', meta)
