-- Cancel a job, if its state allows (ARGV[4]: sources(CANCELLED)): never attempted again (a
-- daemon holding it finds it cancelled at start: start.lua; handing it back is refused:
-- settle.lua). Returns the state it was in, or 'unknown'. KEYS: the fleet's prefix; ARGV: the
-- id, now, the ttl, the sources.
local p, id = KEYS[1], ARGV[1]
local status = p .. ':job:' .. id
local state = redis.call('HGET', status, 'state')
if not state then return 'unknown' end
if not allowed(state, ARGV[4]) then return state end
redis.call('HSET', status, 'state', 'cancelled')
moved(p, state, 'cancelled')
redis.call('ZREM', p .. ':retry', redis.call('HGET', status, 'payload'))
local key = redis.call('HGET', status, 'key')
if key and key ~= '' then release(p, key, id, tonumber(ARGV[2])) end
finished(p, id, 'cancelled', ARGV[3], tonumber(ARGV[2]))
return state
