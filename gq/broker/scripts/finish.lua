-- A job of an ordering key is finished (succeeded or dead): the key's next job goes.
-- KEYS: the fleet's prefix; ARGV: the key, the id, now, the ttl.
release(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4])
return 1
