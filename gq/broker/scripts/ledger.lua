-- The fleet's ledger begun, once (a fleet whose Redis an earlier gq wrote has none): every job
-- whose status Redis still holds is counted by its state, as accepted; a finished one is to be
-- forgotten when its status expires. Atomic, and a few seconds per million jobs, once.
-- KEYS: the fleet's prefix; ARGV: now. Returns 1 if it was begun now.
local p, now = KEYS[1], tonumber(ARGV[1])
if redis.call('HEXISTS', p .. ':counts', 'accepted') == 1 then return 0 end
local counts = {}
local cursor = '0'
repeat
  local reply = redis.call('SCAN', cursor, 'MATCH', p .. ':job:*', 'COUNT', 1000)
  cursor = reply[1]
  for _, status in ipairs(reply[2]) do
    local state = redis.call('HGET', status, 'state')
    if state then
      counts[state] = (counts[state] or 0) + 1
      local ttl = redis.call('TTL', status)
      if ttl >= 0 and (state == 'succeeded' or state == 'dead' or state == 'cancelled') then
        redis.call('ZADD', p .. ':ending', now + ttl, state .. '\n' .. string.sub(status, #p + 6))
      end
    end
  end
until cursor == '0'
local accepted = 0
redis.call('DEL', p .. ':counts')
for state, n in pairs(counts) do
  redis.call('HSET', p .. ':counts', state, n)
  accepted = accepted + n
end
redis.call('HSET', p .. ':counts', 'accepted', accepted, 'forgotten', 0)
return 1
