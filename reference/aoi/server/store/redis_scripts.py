"""The Redis store's writes, each one Lua script: Redis runs a script whole, so a write is
atomic, and with ``appendfsync always`` it is on disk before the reply.

Keys are ``PREFIX{route}:kind:name``. A notification's and a registration's keys take the
route their id or token ends with; its client's keys (queue, tokens, sessions, expiry and
purge indexes) take the client's route, kept in the record as ``cr``. With ids and tokens
made by :mod:`.routes` the two are the same and a script stays in one hash slot.
"""

from __future__ import annotations

from .resp import Script

_HELPERS = """
local P = ARGV[1]
local function key(route, kind, name)
  return P .. '{' .. route .. '}:' .. kind .. ':' .. name
end
local function tail(s) return string.sub(s, -6) end
local function finish(id, status, at)
  local n = key(tail(id), 'n', id)
  local fields = redis.call('HMGET', n, 'status', 'cr', 'client_id', 'token')
  if fields[1] ~= 'queued' then return 0 end
  local cr = fields[2]
  redis.call('HSET', n, 'status', status, 'status_at', at)
  redis.call('LREM', key(cr, 'q', fields[3]), 1, id)
  redis.call('SREM', key(cr, 'tq', fields[4]), id)
  redis.call('ZREM', key(cr, 'exp', ''), id)
  redis.call('ZADD', key(cr, 'done', ''), at, id)
  return 1
end
"""

ADD_REGISTRATION = Script(
    _HELPERS
    + """
local token, client, cr = ARGV[2], ARGV[3], ARGV[7]
local r = key(tail(token), 'reg', token)
if redis.call('EXISTS', r) == 1 then return redis.error_reply('CONFLICT token') end
local seq = redis.call('INCR', key(cr, 'seq', ''))
redis.call('HSET', r, 'client_id', client, 'app_id', ARGV[4], 'created_at', ARGV[5],
  'active', ARGV[6], 'cr', cr, 'seq', seq)
redis.call('RPUSH', key(cr, 'regs', client), token)
redis.call('RPUSH', key(cr, 'tokens', ''), token)
return 1
"""
)

DEACTIVATE_REGISTRATION = Script(
    _HELPERS
    + """
local token, at = ARGV[2], ARGV[3]
local r = key(tail(token), 'reg', token)
local fields = redis.call('HMGET', r, 'active', 'cr', 'client_id')
if fields[1] ~= '1' then return 0 end
redis.call('HSET', r, 'active', '0', 'deactivated_at', at)
redis.call('LREM', key(fields[2], 'regs', fields[3]), 1, token)
for _, id in ipairs(redis.call('SMEMBERS', key(fields[2], 'tq', token))) do
  finish(id, 'cancelled', at)
end
return 1
"""
)

# ARGV: prefix, count, then per notification its 14 fields (the last one the client's
# route), a flag, the number of ids it replaces, and those ids. With the flag set, it also
# replaces the queued notifications of its token with its collapse key that the store holds.
# All are checked before any is written: a token whose registration is inactive refuses the
# lot (GONE). Returns the ids cancelled as replaced.
ADD_NOTIFICATIONS = Script(
    _HELPERS
    + """
local count = tonumber(ARGV[2])
local seen = {}
local i = 3
local items = {}
for _ = 1, count do
  local f = {}
  for j = 0, 14 do f[j + 1] = ARGV[i + j] end
  local nreplaces = tonumber(ARGV[i + 15])
  local replaces = {}
  for j = 1, nreplaces do replaces[j] = ARGV[i + 15 + j] end
  i = i + 16 + nreplaces
  local id, token = f[1], f[2]
  if seen[id] or redis.call('EXISTS', key(tail(id), 'n', id)) == 1 then
    return redis.error_reply('CONFLICT notification ' .. id)
  end
  if redis.call('HGET', key(tail(token), 'reg', token), 'active') == '0' then
    return redis.error_reply('GONE ' .. token)
  end
  seen[id] = true
  items[#items + 1] = {f, replaces}
end
local cancelled = {}
local function replace(old, at)
  if finish(old, 'cancelled', at) == 1 then cancelled[#cancelled + 1] = old end
end
for _, item in ipairs(items) do
  local f, replaces = item[1], item[2]
  local id, token, client, cr = f[1], f[2], f[3], f[14]
  if f[15] == '1' and f[10] ~= '' then
    local wanted = string.sub(f[10], 2)
    for _, old in ipairs(redis.call('SMEMBERS', key(cr, 'tq', token))) do
      if redis.call('HGET', key(tail(old), 'n', old), 'collapse_key') == wanted then
        replace(old, f[8])
      end
    end
  end
  local seq = redis.call('INCR', key(cr, 'seq', ''))
  local n = key(tail(id), 'n', id)
  redis.call('HSET', n, 'token', token, 'client_id', client, 'app_id', f[4],
    'payload', f[5], 'priority', f[6], 'ttl_s', f[7], 'created_at', f[8],
    'expires_at', f[9], 'pushed_by', f[11], 'status', f[12], 'cr', cr, 'seq', seq)
  if f[10] ~= '' then redis.call('HSET', n, 'collapse_key', string.sub(f[10], 2)) end
  if f[13] ~= '' then redis.call('HSET', n, 'status_at', f[13]) end
  if f[12] == 'queued' then
    redis.call('RPUSH', key(cr, 'q', client), id)
    redis.call('SADD', key(cr, 'tq', token), id)
    redis.call('ZADD', key(cr, 'exp', ''), f[9], id)
  else
    redis.call('ZADD', key(cr, 'done', ''), f[13], id)
  end
  for _, old in ipairs(replaces) do replace(old, f[8]) end
end
return cancelled
"""
)

SET_STATUS = Script(
    _HELPERS
    + """
local status, at, changed = ARGV[2], ARGV[3], 0
for i = 4, #ARGV do changed = changed + finish(ARGV[i], status, at) end
return changed
"""
)

SET_SESSION = Script(
    _HELPERS
    + """
redis.call('HSET', key(ARGV[2], 'sessions', ''), ARGV[3], ARGV[4])
return 1
"""
)

# One route at a time: ARGV prefix, route, time.
EXPIRE = Script(
    _HELPERS
    + """
local ids = redis.call('ZRANGEBYSCORE', key(ARGV[2], 'exp', ''), '-inf', '(' .. ARGV[3])
for _, id in ipairs(ids) do finish(id, 'expired', ARGV[3]) end
return ids
"""
)

PURGE = Script(
    _HELPERS
    + """
local done = key(ARGV[2], 'done', '')
local ids = redis.call('ZRANGEBYSCORE', done, '-inf', '(' .. ARGV[3])
for _, id in ipairs(ids) do
  redis.call('DEL', key(tail(id), 'n', id))
  redis.call('ZREM', done, id)
end
return #ids
"""
)
