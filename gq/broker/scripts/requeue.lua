-- A dead letter replayed, if its state allows (ARGV[6]: sources(REPLAYED); a status gone
-- after the ttl allows it): to run again, behind its key's head if it has one, in its place
-- in the order accepted (its seq; last if its status is gone); unfinished
-- again, its id and status kept until it ends. KEYS: the fleet's prefix; ARGV: the id, the
-- payload (attempts reset), the key, now, the ttl, the sources. Returns 1 if replayed.
local p, id = KEYS[1], ARGV[1]
local status = p .. ':job:' .. id
local state = redis.call('HGET', status, 'state')
if not allowed(state, ARGV[6]) then return 0 end
-- A status gone after the ttl: the job was (or is about to be) forgotten as dead.
if not state and redis.call('ZREM', p .. ':ending', 'dead\n' .. id) == 0 then state = 'forgotten' end
local seq = tonumber(redis.call('HGET', status, 'seq')) or redis.call('INCR', p .. ':seq')
redis.call('HSET', status, 'state', enqueue(p, ARGV[3], id, 0, ARGV[2], tonumber(ARGV[4]), seq), 'payload', ARGV[2],
           'attempts', 0, 'reason', '', 'key', ARGV[3], 'due', 0, 'seq', seq)
moved(p, state or 'dead', 'queued')
if state == 'dead' then unfinished_again(p, id, 'dead') end
redis.call('PERSIST', status)
redis.call('SET', p .. ':id:' .. id, '1')
redis.call('INCR', p .. ':unfinished')
return 1
