-- A consumer leaves: every entry still pending for it (read, maybe never seen: a reply lost
-- when the daemon stopped) goes back on the stream as a new entry, then the consumer goes.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 100000, ARGV[2])
for _, p in ipairs(pending) do
  local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])
  if entry[1] then redis.call('XADD', KEYS[1], '*', unpack(entry[1][2])) end
  redis.call('XACK', KEYS[1], ARGV[1], p[1])
  redis.call('XDEL', KEYS[1], p[1])
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return #pending
