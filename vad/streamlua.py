"""The Lua scripts every change of a stream's ownership and every owner's write go through (atomic in Redis).

Each script takes the keys of :meth:`vad.keys.Keys.stream_script_keys`, in this order::

    KEYS[1] record   KEYS[2] lease    KEYS[3] fence      KEYS[4] timeline
    KEYS[5] events   KEYS[6] active   KEYS[7] webhooks   KEYS[8] the owner's index
    KEYS[9] the owner's events index   KEYS[10] the stream's events index   KEYS[11] prefix of event records
    KEYS[12] the latest frame

Record fields are JSON (a status is ``'"live"'``, a missing value ``'null'``). The lease holds
``<worker>/<token>``; the fence holds the last token given out. An owner's write is accepted only while the fence
still equals its token **and** the lease is still its own: a claim by another worker and a stop both increment
the fence, so whatever an old owner sends afterwards is refused (``fenced``), and an owner whose lease expired is
refused too (``lease lost``) even before anyone took the stream over. A deletion removes the fence with the record:
no token equals a missing fence, and every script reads the record before it writes one, so nothing an old owner
(or a claim that raced the deletion) sends can bring a key of a deleted stream back.

An event entry and its webhook job are written in one step: a webhook is queued exactly once per recorded event,
by whoever recorded it, and sent by one worker (``LPOP``). The same step writes the event's record in the event
history (:mod:`vad.events`): every open and close, whoever writes it (the owner, a claim closing a dead owner's
event, a ``DELETE``), so the history never disagrees with the events stream.
"""

from __future__ import annotations

_COMMON = """
local function is_terminal(status)
  return status == '"stopped"' or status == '"failed"'
end

-- The event's record in the history (vad/events.py): JSON-encoded fields, kept as long as the events stream keeps
-- its entries (the MINID's age); its member in the owner's and the stream's index, by the time it opened.
local function index_event(stream_id, kind, event_json, now, minid)
  local event = cjson.decode(event_json)
  if type(event['id']) ~= 'string' then return end
  local at = tonumber(event['opened_at']) or tonumber(now)
  local member = string.format('%015d', math.floor(at * 1000)) .. ':' .. event['id']
  local key = KEYS[11] .. event['id']
  local state = '"open"'
  if kind ~= 'open' then state = '"closed"' end
  redis.call('HSET', key, 'source', '"stream"', 'source_id', cjson.encode(stream_id),
             'source_name', redis.call('HGET', KEYS[1], 'name') or '""',
             'owner', redis.call('HGET', KEYS[1], 'owner') or '""',
             'threshold', redis.call('HGET', KEYS[1], 'threshold') or 'null',
             'event', event_json, 'state', state, 'at', cjson.encode(at), 'member', cjson.encode(member))
  local keep = math.max(1, math.ceil(tonumber(now) - tonumber(minid) / 1000))
  redis.call('EXPIRE', key, keep)
  redis.call('ZREMRANGEBYLEX', KEYS[10], '-', '(' .. string.format('%015d', tonumber(minid)))
  redis.call('ZADD', KEYS[9], 0, member)
  redis.call('ZADD', KEYS[10], 0, member)
end

-- XADD an event entry, keep the record's open event and counters in step, queue its webhook, index it.
local function add_event(stream_id, kind, event_json, reason, now, minid, token)
  local args = {'XADD', KEYS[5]}
  if minid ~= '' then
    table.insert(args, 'MINID'); table.insert(args, '~'); table.insert(args, minid)
  end
  for _, v in ipairs({'*', 'kind', kind, 'event', event_json, 'reason', reason, 'at', now, 'token', token}) do
    table.insert(args, v)
  end
  local id = redis.call(unpack(args))
  if kind == 'open' then
    redis.call('HSET', KEYS[1], 'open_event', event_json)
    redis.call('HINCRBY', KEYS[1], 'events_opened', 1)
  else
    redis.call('HSET', KEYS[1], 'open_event', 'null')
    redis.call('HINCRBY', KEYS[1], 'events_closed', 1)
  end
  local callback = redis.call('HGET', KEYS[1], 'callback_url')
  if callback and callback ~= 'null' and callback ~= '""' then
    redis.call('RPUSH', KEYS[7], stream_id .. ' ' .. id)
  end
  if minid ~= '' then index_event(stream_id, kind, event_json, now, minid) end
  return id
end

-- Close the event the record has open (its owner is gone or the stream stops): it ends with the last scored
-- snippet, on the stream clock (end_s) and as a Unix time (end_at: its start_at moved as far as end_s is from
-- start_s). Returns the entry id, or false when none was open.
local function close_open_event(stream_id, now, reason, minid, token)
  local raw = redis.call('HGET', KEYS[1], 'open_event')
  if not raw or raw == 'null' then return false end
  local event = cjson.decode(raw)
  local last_end = redis.call('HGET', KEYS[1], 'last_end_s')
  if last_end and last_end ~= 'null' then event['end_s'] = tonumber(last_end) else event['end_s'] = event['start_s'] end
  if type(event['start_at']) == 'number' and type(event['start_s']) == 'number' then
    event['end_at'] = event['start_at'] + (event['end_s'] - event['start_s'])
  end
  event['closed_at'] = tonumber(now)
  return add_event(stream_id, 'close', cjson.encode(event), reason, now, minid, token)
end

-- What a stopped or failed stream keeps: record, fence, timeline and events, for the retention; no lease.
local function retire(stream_id, now, retention)
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[6], stream_id)
  for _, i in ipairs({1, 3, 4, 5, 10}) do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], retention) end
  end
  redis.call('ZADD', KEYS[8], 'XX', tonumber(now) + tonumber(retention), stream_id)
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. now)
end
"""

CLAIM = _COMMON + """
-- ARGV: stream id, worker, lease ms, now, events MINID. Returns the token, or false when not claimable.
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local status = redis.call('HGET', KEYS[1], 'status')
if not status or is_terminal(status) then
  redis.call('ZREM', KEYS[6], ARGV[1])
  return false
end
local previous = redis.call('HGET', KEYS[1], 'worker')
local token = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2] .. '/' .. token, 'PX', ARGV[3])
close_open_event(ARGV[1], ARGV[4], 'owner lost', ARGV[5], tostring(token))
local reason = 'null'
if previous and previous ~= 'null' then
  reason = cjson.encode('taken over from ' .. cjson.decode(previous) .. ', which stopped renewing its lease')
end
redis.call('HSET', KEYS[1], 'status', '"connecting"', 'reason', reason, 'since', ARGV[4],
           'worker', cjson.encode(ARGV[2]), 'token', token)
return token
"""

RENEW = """
-- ARGV: holder, token, lease ms. 1 when the lease was renewed, 0 when it is no longer this owner's.
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

WRITE = _COMMON + """
-- ARGV: stream id, holder, token, op, now, MINID ('' = no trimming), then what the op needs:
--   status  field, value, ...                        (record fields)
--   score   n, field, value, ... (n pairs), then entry field, value, ...  (record fields, then a timeline entry)
--   event   kind, event JSON, reason                 (an event entry, its webhook)
--   finish  status JSON, reason JSON, retention s, events MINID   (close the open event, retire the stream)
-- Returns {'ok', entry id or ''} or {refusal}: 'fenced', 'lease lost' or 'gone'.
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {'fenced'} end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {'lease lost'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local op, now, minid = ARGV[4], ARGV[5], ARGV[6]
if op == 'status' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 7))
  return {'ok', ''}
elseif op == 'score' then
  local n = tonumber(ARGV[7])
  if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 8, 7 + 2 * n)) end
  redis.call('HINCRBY', KEYS[1], 'snippets_scored', 1)
  local args = {'XADD', KEYS[4]}
  if minid ~= '' then
    table.insert(args, 'MINID'); table.insert(args, '~'); table.insert(args, minid)
  end
  table.insert(args, '*')
  for i = 8 + 2 * n, #ARGV do table.insert(args, ARGV[i]) end
  return {'ok', redis.call(unpack(args))}
elseif op == 'event' then
  return {'ok', add_event(ARGV[1], ARGV[7], ARGV[8], ARGV[9], now, minid, ARGV[3])}
elseif op == 'finish' then
  local reason = cjson.decode(ARGV[8])
  if type(reason) ~= 'string' then reason = 'stopped' end
  close_open_event(ARGV[1], now, reason, ARGV[10], ARGV[3])
  redis.call('HSET', KEYS[1], 'status', ARGV[7], 'reason', ARGV[8], 'since', now, 'stopped_at', now, 'worker', 'null')
  retire(ARGV[1], now, ARGV[9])
  return {'ok', ''}
end
return redis.error_reply('unknown op ' .. op)
"""

RELEASE = """
-- ARGV: holder, token, now, reason JSON. A worker that stops gives the stream back (queued) for another.
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= '"stopped"' and status ~= '"failed"' then
  redis.call('HSET', KEYS[1], 'status', '"queued"', 'reason', ARGV[4], 'since', ARGV[3], 'worker', 'null')
end
return 1
"""

STOP = _COMMON + """
-- ARGV: stream id, now, retention s, reason JSON, events MINID, control channel. Stops the stream for good
-- (POST .../stop): fences its owner off, closes its open event, keeps the rest for the retention and tells the owner.
-- Returns the status it had.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local token = redis.call('INCR', KEYS[3])
if not is_terminal(status) then
  close_open_event(ARGV[1], ARGV[2], 'stopped', ARGV[5], tostring(token))
  redis.call('HSET', KEYS[1], 'status', '"stopped"', 'reason', ARGV[4], 'since', ARGV[2], 'stopped_at', ARGV[2],
             'worker', 'null')
end
retire(ARGV[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return status
"""

DELETE = """
-- ARGV: stream id, control channel. Deletes the stream (DELETE): its record, lease, fence, timeline, events and
-- latest frame, its place among the active streams and in its API key's index, and tells its owner to stop. Nothing
-- is closed or recorded first (there is nothing left to read it). Returns the status it had, or false when there was
-- no stream.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[12])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[8], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return status
"""

FRAME = """
-- ARGV: JPEG bytes, unix time written, the frame's stream time, TTL in seconds. The stream's latest frame
-- (workers/evidence/stream.py), written only while its record exists: once DELETE has run, nothing brings it back.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[12], 'jpeg', ARGV[1], 'at', ARGV[2], 'source_s', ARGV[3])
redis.call('EXPIRE', KEYS[12], ARGV[4])
return 1
"""

SET_ALERT = """
-- ARGV: the alert JSON (vad.alerts.AlertThreshold), the JSON it replaces ('' = whatever is there). Puts a stream's
-- threshold in force from the API (a calibration, a verdict): only while the stream exists (a deleted one is not
-- brought back as a partial record), and only if its alert is still the one the API read (a verdict and a
-- calibration at the same moment: the later one is refused and retried on the new value). Its owner reads the
-- field every tick. Returns 1, 0 (the alert changed meanwhile) or false (no stream).
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[1], 'alert') or 'null') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'alert', ARGV[1])
return 1
"""
