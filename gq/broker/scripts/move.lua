-- Due retries back onto the stream, atomically (any number of daemons may run this).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, payload in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'payload', payload)
  redis.call('ZREM', KEYS[1], payload)
end
return #due
