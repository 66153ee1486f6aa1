-- An attempt starts, unless the job was cancelled meanwhile (then 0). KEYS: its status hash;
-- ARGV: the attempts made, this one included.
if redis.call('HGET', KEYS[1], 'state') == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'attempts', ARGV[1])
return 1
