-- Prepended to add.lua: a job accepted goes into the index `GET /v1/jobs` reads
-- (redis_operations): the sorted set P:accepted, scored by the time of acceptance, its
-- member the job's acceptance sequence (P:accepted:seq, 16 digits: equal times sort in
-- the order accepted) and id; the status hash keeps both, to be found and read back.
local function accepted(p, id, now)
  local seq = redis.call('INCR', p .. ':accepted:seq')
  redis.call('ZADD', p .. ':accepted', now, string.format('%016d', seq) .. id)
  redis.call('HSET', p .. ':job:' .. id, 'accepted', now, 'seq', seq)
end
