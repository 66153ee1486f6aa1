-- Finished jobs whose status ttl has run out are forgotten in the fleet's ledger (their status
-- and id expire by themselves at that time), up to ARGV[2] of them, atomically (any number of
-- daemons may run this). KEYS: the fleet's prefix; ARGV: now, the most to forget. Returns how many.
local p = KEYS[1]
local due = redis.call('ZRANGEBYSCORE', p .. ':ending', '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local cut = string.find(member, '\n', 1, true)
  moved(p, string.sub(member, 1, cut - 1), 'forgotten')
  redis.call('ZREM', p .. ':ending', member)
end
return #due
