-- An attempt starts, if the job's state allows (ARGV[2]: sources(STARTED)); else 0 (it was
-- cancelled meanwhile). KEYS: its status hash; ARGV: the attempts made, this one included,
-- the sources, the fleet's prefix, and this start's token (its daemon, stream entry and
-- attempt). A start found written already under its token is this one, written before its
-- answer was lost (Redis died after its fsync, the connection broke): 1, nothing written again.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' and redis.call('HGET', KEYS[1], 'start') == ARGV[4] then return 1 end
if not allowed(state, ARGV[2]) then return 0 end
moved(ARGV[3], state, 'running')
redis.call('HSET', KEYS[1], 'state', 'running', 'attempts', ARGV[1], 'start', ARGV[4])
return 1
