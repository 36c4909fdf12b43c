-- Demo data for development (fxb-admin demo-load; refused in production).
-- Each file is idempotent. This first one only marks the store as a demo
-- store, so that an operator can tell one apart; the catalogue, calendar
-- and accounts add their demo data with their own issues.
redis.call('HSET', 'fxb:meta', 'demo', 'xinxiang-dev')
return 'ok'
