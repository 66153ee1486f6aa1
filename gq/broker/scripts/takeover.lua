-- The jobs of consumers whose liveness key expired (dead daemons), claimed for ARGV[2], at most
-- ARGV[3]; atomic, so two daemons never both take one. Returns [id, fields] pairs.
local taken = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local room = tonumber(ARGV[3]) - #taken
  if room <= 0 then break end
  if info['name'] ~= ARGV[2] and info['pending'] > 0 and redis.call('EXISTS', ARGV[4] .. info['name']) == 0 then
    local ids = {}
    for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', room, info['name'])) do
      ids[#ids + 1] = p[1]
    end
    if #ids > 0 then
      for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))) do
        taken[#taken + 1] = e
      end
    end
  end
end
return taken
