-- prelude bucket: the admission token bucket, for the scripts whose header says
-- "-- prelude: bucket" (arrive and tick); the loader puts it after their header.
-- Integer units: one token = TOKEN units, refill = rate units per ms (rate: admissions per
-- minute), at most ceil(rate / 60) tokens. Pure: the caller reads and writes the hash fields
-- tokens / tokens_ts.

local TOKEN = 60000

-- The bucket (units, ts) refilled up to now, from the stored fields (nil: a full bucket).
local function bucket_refill(units, ts, rate, now)
  local cap = math.max(1, math.ceil(rate / 60)) * TOKEN
  units, ts = tonumber(units), tonumber(ts)
  if units == nil or ts == nil then
    return cap, now
  end
  if now > ts then
    return math.min(cap, units + (now - ts) * rate), now
  end
  return units, ts
end
