-- 0001_init: marks this Redis database as an fxb store and records when it
-- was first set up. Runs inside the migration wrapper (store/migrate.c) with
-- KEYS[1] = the schema-version key. 'fxb:meta' is FXB_KEY_META in
-- store/keys.h. Idempotent: created_at keeps the first run's time.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSETNX', 'fxb:meta', 'created_at', tostring(ms))
redis.call('HSET', 'fxb:meta', 'schema', 'fxb')
