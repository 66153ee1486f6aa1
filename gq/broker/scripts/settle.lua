-- A held job's stream entry is done with: an attempt's outcome (succeeded, retrying, dead), a
-- job handed back unattempted (queued: deferred, due later), or one that cannot be read back
-- as a job (dead: unreadable). Only by the daemon that holds it (ARGV[11]: its consumer): one
-- whose entry another daemon took over (this one paused past claim_idle) writes nothing, as
-- the job runs there now. The entry is acknowledged and deleted whatever happens then; the
-- move is written only if the job's state allows it (ARGV[4]: the event's sources): a
-- cancelled job handed back is dropped, its key already released by the cancel.
-- KEYS: the fleet's prefix; ARGV: the stream entry, the id, the state it goes to, the
-- sources, now, the ttl, the ordering key, when due, the payload, the reason, the consumer,
-- then the status hash's other fields and values. Returns 1 if written, else the state it was
-- in, or 'taken' (not this daemon's entry: taken over, or settled already).
local p, handle, id, target, consumer = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[11]
if #redis.call('XPENDING', p .. ':jobs', p .. ':workers', handle, handle, 1, consumer) == 0 then
  return 'taken'
end
redis.call('XACK', p .. ':jobs', p .. ':workers', handle)
redis.call('XDEL', p .. ':jobs', handle)
local status = p .. ':job:' .. id
local state = redis.call('HGET', status, 'state')
if not allowed(state, ARGV[4]) then return state end
local now, ttl, key, due, payload, reason = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if target == 'retrying' or target == 'queued' then
  redis.call('ZADD', p .. ':retry', due, payload)
elseif target == 'dead' then
  redis.call('XADD', p .. ':dead', '*', 'payload', payload, 'reason', reason, 'id', id)
end
moved(p, state, target)
redis.call('HSET', status, 'state', target, 'payload', payload, 'reason', reason, 'due', due, 'key', key)
if #ARGV > 11 then redis.call('HSET', status, unpack(ARGV, 12)) end
if target == 'succeeded' or target == 'dead' then
  if key ~= '' then release(p, key, id, now) end
  finished(p, id, target, ttl, now)
end
return 1
