-- An attempt to a host asks for a lease, shared by the fleet (destinations.scope = "fleet").
-- KEYS[1]: the host's leases (sorted set: lease id -> expiry); KEYS[2]: its token bucket (hash).
-- ARGV: max_in_flight (0: no cap), rate (0: no limit), burst, lease seconds, lease id.
-- Returns {1, "0"} with the lease taken, or {0, wait}: seconds before asking again ("-1": when
-- a lease ends). Time is Redis's own, so the daemons' clocks do not matter.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cap, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)  -- leases of attempts that outlived their daemon
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then
  return {0, '-1'}
end
if rate > 0 then
  local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'at', tostring(now))
    return {0, tostring((1 - tokens) / rate)}
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('EXPIRE', KEYS[2], 3600)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[5])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 60)
return {1, '0'}
