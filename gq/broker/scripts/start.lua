-- An attempt starts, if the job's state allows (ARGV[2]: sources(STARTED)); else 0 (it was
-- cancelled meanwhile). KEYS: its status hash; ARGV: the attempts made, this one included,
-- the sources, the fleet's prefix.
local state = redis.call('HGET', KEYS[1], 'state')
if not allowed(state, ARGV[2]) then return 0 end
moved(ARGV[3], state, 'running')
redis.call('HSET', KEYS[1], 'state', 'running', 'attempts', ARGV[1])
return 1
