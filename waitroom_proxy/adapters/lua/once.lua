-- once: accept a one-time id once (ports.Store.once): a solved proof-of-work challenge, so one
-- solution buys one ticket. The key expires with the challenge: memory stays bounded.
--
-- KEYS[1] marker string  wr:{room}:once:<id>
-- ARGV[1] time to keep the marker (ms, > 0)
-- returns 1 if this call recorded the id, 0 if it was recorded already

if redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[1])) then
  return 1
end
return 0
