-- Intake: for each job (id, payload, due, ordering key), if its id is new, queue it; all or
-- nothing against the backlog bound. KEYS: the stream, the id prefix, the status prefix, the
-- ttl, the fleet's prefix; ARGV: the bound, now, then four values a job.
if redis.call('XLEN', KEYS[1]) + (#ARGV - 2) / 4 > tonumber(ARGV[1]) then return -1 end
local now = tonumber(ARGV[2])
local fresh = {}
for i = 3, #ARGV, 4 do
  local id, payload, due, key = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if redis.call('SET', KEYS[2] .. id, '1', 'NX', 'EX', KEYS[4]) then
    local state = enqueue(KEYS[5], key, id, due, payload, now)
    redis.call('HSET', KEYS[3] .. id, 'state', state, 'payload', payload, 'key', key)
    redis.call('EXPIRE', KEYS[3] .. id, KEYS[4])
    accepted(KEYS[5], id, ARGV[2])  -- the operator's index (scripts/accepted.lua)
    fresh[#fresh + 1] = id
  end
end
return fresh
