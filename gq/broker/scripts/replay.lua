-- A finished job replayed through the API (after scripts/keys.lua): to run again, attempts
-- reset, if it is still in one of the states the replay takes (the lifecycle's sources for
-- `replayed`, narrowed by a filter's state). A dead letter leaves the dead stream; a job of an
-- ordering key takes its place in its key again, in the order accepted (its seq); unfinished
-- again, its id and status are kept until it ends.
-- KEYS: the fleet's prefix; ARGV: the id, the payload (attempts reset), the states taken
-- ('|'-joined), the dead stream's entry of the job ('' when none was found), now.
-- Returns the state the job was in ('' for an unknown one); it was replayed if that state
-- was one of those taken.
local p, id = KEYS[1], ARGV[1]
local status = p .. ':job:' .. id
local state = redis.call('HGET', status, 'state')
if not state then return '' end
if not allowed(state, ARGV[3]) then return state end
if ARGV[4] ~= '' then redis.call('XDEL', p .. ':dead', ARGV[4]) end
local key, payload, now = redis.call('HGET', status, 'key') or '', ARGV[2], tonumber(ARGV[5])
local seq = tonumber(redis.call('HGET', status, 'seq')) or redis.call('INCR', p .. ':seq')
redis.call('HSET', status, 'state', enqueue(p, key, id, 0, payload, now, seq), 'payload', payload,
           'attempts', 0, 'reason', '', 'due', 0, 'seq', seq)
moved(p, state, 'queued')
unfinished_again(p, id, state)
redis.call('PERSIST', status)
redis.call('SET', p .. ':id:' .. id, '1')
redis.call('INCR', p .. ':unfinished')
return state
