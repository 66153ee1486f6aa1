-- A finished job replayed through the API (after scripts/keys.lua): back to running, attempts
-- reset, if it is still in one of the states the replay takes (the lifecycle's sources for
-- `replayed`, narrowed by a filter's state). A dead letter leaves the dead stream; a job of an
-- ordering key joins its key in its place: before the key's waiting jobs accepted after it.
-- KEYS: the fleet's prefix; ARGV: the id, the payload (attempts reset), the states taken
-- (comma separated), the dead stream's entry of the job ('' when none was found), now, the ttl.
-- Returns the state the job was in ('' for an unknown one); it was replayed if that state
-- was one of those taken.
local p, id = KEYS[1], ARGV[1]
local status = p .. ':job:' .. id
local state = redis.call('HGET', status, 'state')
if not state then return '' end
if not string.find(',' .. ARGV[3] .. ',', ',' .. state .. ',', 1, true) then return state end
if ARGV[4] ~= '' then redis.call('XDEL', p .. ':dead', ARGV[4]) end
local key, payload, now = redis.call('HGET', status, 'key') or '', ARGV[2], tonumber(ARGV[5])
local seq = tonumber(redis.call('HGET', status, 'seq'))
local placed = nil
if key ~= '' and seq and redis.call('EXISTS', p .. ':head:' .. key) == 1 then
  local behind = p .. ':behind:' .. key
  for _, item in ipairs(redis.call('LRANGE', behind, 0, -1)) do
    local other = string.sub(item, 1, string.find(item, '\n', 1, true) - 1)
    local later = tonumber(redis.call('HGET', p .. ':job:' .. other, 'seq'))
    if later and later > seq then
      redis.call('LINSERT', behind, 'BEFORE', item, id .. '\n0\n' .. payload)
      placed = 'queued'
      break
    end
  end
end
placed = placed or enqueue(p, key, id, 0, payload, now)
redis.call('HSET', status, 'state', placed, 'payload', payload, 'attempts', 0, 'reason', '', 'due', 0)
redis.call('EXPIRE', status, ARGV[6])
redis.call('SET', p .. ':id:' .. id, '1', 'EX', ARGV[6])
return state
