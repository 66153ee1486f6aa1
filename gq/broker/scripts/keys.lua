-- Shared by the scripts that move jobs (prepended to them: see redis_link.lua_script).
-- Under the fleet's prefix P: a job goes onto the stream P:jobs, or into P:retry when it is
-- due later. Of an ordering key K's unfinished jobs, only the one P:head:K names is placed;
-- the others wait in the sorted set P:behind:K ("id\ndue\npayload" each), scored by their
-- place in the order accepted (P:seq, counted at intake, kept in P:job:ID as seq): a replayed
-- job takes its place again, before the jobs of its key accepted after it. (A list, from an
-- earlier gq, is read first in, first out, until it is empty.)
-- P:unfinished counts the jobs accepted and not finished (the backlog bound reads it). A
-- job's P:id:ID and P:job:ID do not expire while it is unfinished: from its end, after the
-- status ttl. Each move is guarded by the states gq.lifecycle allows it from, passed in as
-- one argument, '|'-joined (sources(event)).

-- The job's state allows the move (a job whose status is gone, from an earlier gq that let
-- it expire, is let through: as before the guard).
local function allowed(state, sources)
  if not state then return true end
  for s in string.gmatch(sources, '[^|]+') do
    if s == state then return true end
  end
  return false
end

-- A job moves from one state to another (false: it is new, accepted; 'forgotten': gone): the
-- fleet's ledger P:counts counts every job accepted and, by state or forgotten, where each is
-- (gq.core.lifecycle.moved); the metrics read the unfinished ones from it.
local function moved(p, from, to)
  if from == to then return end
  redis.call('HINCRBY', p .. ':counts', from or 'accepted', from and -1 or 1)
  redis.call('HINCRBY', p .. ':counts', to, 1)
end

-- Job `id` is finished in `state`: one unfinished job less; its id and status go after the
-- ttl, when P:ending (scored by that time, "state\nid" each) has it forgotten (forget.lua).
local function finished(p, id, state, ttl, now)
  redis.call('EXPIRE', p .. ':job:' .. id, ttl)
  redis.call('EXPIRE', p .. ':id:' .. id, ttl)
  redis.call('ZADD', p .. ':ending', now + tonumber(ttl), state .. '\n' .. id)
  if tonumber(redis.call('GET', p .. ':unfinished') or '0') > 0 then
    redis.call('DECR', p .. ':unfinished')
  end
end

-- A finished job runs again (replayed): it is not to be forgotten at the end of its ttl.
local function unfinished_again(p, id, state)
  redis.call('ZREM', p .. ':ending', state .. '\n' .. id)
end

local function place(p, due, payload, now)
  if due > now then
    redis.call('ZADD', p .. ':retry', due, payload)
    return 'scheduled'
  end
  redis.call('XADD', p .. ':jobs', '*', 'payload', payload)
  return 'queued'
end

-- A job to run: placed, or behind its key's head (at `seq`, its place in the order accepted).
-- Returns its state.
local function enqueue(p, key, id, due, payload, now, seq)
  if key ~= '' then
    local head = p .. ':head:' .. key
    if redis.call('EXISTS', head) == 1 then
      local behind, item = p .. ':behind:' .. key, id .. '\n' .. due .. '\n' .. payload
      if redis.call('TYPE', behind).ok == 'list' then
        redis.call('RPUSH', behind, item)
      else
        redis.call('ZADD', behind, seq, item)
      end
      return 'queued'
    end
    redis.call('SET', head, id)
  end
  return place(p, due, payload, now)
end

-- The first of the jobs behind a key, taken out; nil when there is none.
local function next_behind(behind)
  if redis.call('TYPE', behind).ok == 'list' then
    return redis.call('LPOP', behind) or nil
  end
  local first = redis.call('ZPOPMIN', behind)
  return first[1]
end

-- Job `id` of `key` is finished: if it was the key's head, the next one not cancelled goes.
local function release(p, key, id, now)
  local head = p .. ':head:' .. key
  if redis.call('GET', head) ~= id then return end
  while true do
    local item = next_behind(p .. ':behind:' .. key)
    if not item then
      redis.call('DEL', head)
      return
    end
    local a = string.find(item, '\n', 1, true)
    local b = string.find(item, '\n', a + 1, true)
    local next_id, due, payload = string.sub(item, 1, a - 1), tonumber(string.sub(item, a + 1, b - 1)), string.sub(item, b + 1)
    local status = p .. ':job:' .. next_id
    if redis.call('HGET', status, 'state') ~= 'cancelled' then
      redis.call('SET', head, next_id)
      local state = place(p, due, payload, now)
      moved(p, 'queued', state)
      redis.call('HSET', status, 'state', state, 'payload', payload, 'key', key)
      return
    end
  end
end
