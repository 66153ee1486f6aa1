-- Intake: for each job, if its id is new, queue it; all or nothing against the backlog bound.
if redis.call('XLEN', KEYS[1]) + #ARGV / 2 - 1 > tonumber(ARGV[1]) then return -1 end
local fresh = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('SET', KEYS[2] .. id, '1', 'NX', 'EX', KEYS[4]) then
    redis.call('XADD', KEYS[1], '*', 'payload', ARGV[i + 1])
    redis.call('HSET', KEYS[3] .. id, 'state', 'queued', 'payload', ARGV[i + 1])
    redis.call('EXPIRE', KEYS[3] .. id, KEYS[4])
    fresh[#fresh + 1] = id
  end
end
return fresh
