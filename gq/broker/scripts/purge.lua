-- A dead letter purged (`gq dlq purge`): its status goes now, and the fleet's ledger has it
-- forgotten, unless its ttl ran out first (then forget.lua did). KEYS: the fleet's prefix;
-- ARGV: the id.
local p, id = KEYS[1], ARGV[1]
local status = p .. ':job:' .. id
if redis.call('HGET', status, 'state') == 'dead' then
  moved(p, 'dead', 'forgotten')
  redis.call('ZREM', p .. ':ending', 'dead\n' .. id)
end
redis.call('DEL', status)
