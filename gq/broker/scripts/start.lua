-- An attempt starts, if its stream entry is still this daemon's and the job's state allows
-- (ARGV[2]: sources(STARTED)). KEYS: its status hash; ARGV: the attempts made, this one
-- included, the sources, the fleet's prefix, and this start's token (its daemon's consumer,
-- stream entry and attempt). A start found written already under its token is this one,
-- written before its answer was lost (Redis died after its fsync, the connection broke): 1,
-- nothing written again. An entry another daemon took over (this one paused past
-- claim_idle) is that daemon's to run: 'taken', nothing written. A state that does not allow
-- it (cancelled meanwhile): 0.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' and redis.call('HGET', KEYS[1], 'start') == ARGV[4] then return 1 end
local p = ARGV[3]
local consumer, handle = string.match(ARGV[4], '^(%S+) (%S+) ')
if #redis.call('XPENDING', p .. ':jobs', p .. ':workers', handle, handle, 1, consumer) == 0 then
  return 'taken'
end
if not allowed(state, ARGV[2]) then return 0 end
moved(p, state, 'running')
redis.call('HSET', KEYS[1], 'state', 'running', 'attempts', ARGV[1], 'start', ARGV[4])
return 1
