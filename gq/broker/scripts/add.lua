-- Intake: for each job (id, payload, due, ordering key), if its id is new, queue it; all or
-- nothing against the backlog bound (every unfinished job counts: P:unfinished). KEYS: the
-- stream, the id prefix, the status prefix, the ttl (unused: no expiry until finished), the
-- fleet's prefix; ARGV: the bound, now, then four values a job.
local unfinished = tonumber(redis.call('GET', KEYS[5] .. ':unfinished') or '0')
if unfinished + (#ARGV - 2) / 4 > tonumber(ARGV[1]) then return -1 end
local now = tonumber(ARGV[2])
local fresh = {}
for i = 3, #ARGV, 4 do
  local id, payload, due, key = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if redis.call('SET', KEYS[2] .. id, '1', 'NX') then
    local seq = redis.call('INCR', KEYS[5] .. ':seq')
    local state = enqueue(KEYS[5], key, id, due, payload, now, seq)
    moved(KEYS[5], false, state)
    redis.call('HSET', KEYS[3] .. id, 'state', state, 'payload', payload, 'key', key,
               'accepted_at', ARGV[2], 'due', due, 'seq', seq)
    accepted(KEYS[5], id, ARGV[2], seq)  -- the operators' index (scripts/accepted.lua)
    fresh[#fresh + 1] = id
  end
end
if #fresh > 0 then redis.call('INCRBY', KEYS[5] .. ':unfinished', #fresh) end
return fresh
