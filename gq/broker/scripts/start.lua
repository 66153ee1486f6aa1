-- An attempt starts, if the job's state allows (ARGV[2]: sources(STARTED)); else 0 (it was
-- cancelled meanwhile). KEYS: its status hash; ARGV: the attempts made, this one included.
if not allowed(redis.call('HGET', KEYS[1], 'state'), ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'attempts', ARGV[1])
return 1
