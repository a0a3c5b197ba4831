-- prelude settled: what became of a place id that is not in the queue, for the scripts whose
-- header says "-- prelude: settled" (arrive and heartbeat). The caller passes its own KEYS, so
-- every key a script touches stays named in the script's own text.
-- returns 2 promoted (waiting to claim), 5 spent (active, or tombstoned), 0 unknown

local function settled(promoted, active, spent, id)
  if redis.call('ZSCORE', promoted, id) then
    return 2
  end
  if redis.call('ZSCORE', active, id) or redis.call('ZSCORE', spent, id) then
    return 5
  end
  return 0
end
