-- A dead letter replayed: to run again, behind its key's head if it has one. KEYS: the
-- fleet's prefix; ARGV: the id, the payload (attempts reset), the key, now, the ttl.
local p, id = KEYS[1], ARGV[1]
local status = p .. ':job:' .. id
redis.call('HSET', status, 'state', enqueue(p, ARGV[3], id, 0, ARGV[2], tonumber(ARGV[4])), 'payload', ARGV[2],
           'attempts', 0, 'reason', '', 'key', ARGV[3])
redis.call('EXPIRE', status, ARGV[5])
return 1
