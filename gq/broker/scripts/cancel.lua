-- Cancel a queued, scheduled or retrying job: never attempted again (a daemon that reads it
-- from the stream finds it cancelled at start: start.lua). Returns the state it was in, or
-- 'unknown'. KEYS: the fleet's prefix; ARGV: the id, now, the ttl.
local p, id = KEYS[1], ARGV[1]
local status = p .. ':job:' .. id
local state = redis.call('HGET', status, 'state')
if not state then return 'unknown' end
if state ~= 'queued' and state ~= 'scheduled' and state ~= 'retrying' then return state end
redis.call('HSET', status, 'state', 'cancelled')
redis.call('ZREM', p .. ':retry', redis.call('HGET', status, 'payload'))
local key = redis.call('HGET', status, 'key')
if key and key ~= '' then release(p, key, id, tonumber(ARGV[2]), ARGV[3]) end
return state
