-- Prepended to add.lua: a job accepted goes into the index `GET /v1/jobs` reads
-- (redis_operations): the sorted set P:accepted, scored by the time of acceptance, its
-- member the job's place in the order accepted (P:seq, 16 digits: equal times sort in the
-- order accepted) and its id; the status hash keeps both (accepted_at, seq).
local function accepted(p, id, now, seq)
  redis.call('ZADD', p .. ':accepted', now, string.format('%016d', seq) .. id)
end
