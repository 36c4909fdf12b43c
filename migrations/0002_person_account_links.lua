-- 0002_person_account_links: every person whose ID number is bound to an
-- account (fxb:idnum:<blind index> -> account id, services/identity) gets
-- the link the benefit notices follow: {p:p<first 24 hex of the index>}:account
-- -> the account id (services/benefit/entitlement.h). From this version on
-- the identity service writes the link when it binds a number; this fills
-- it in for identities verified before. Idempotent: it sets the same value
-- again. Runs inside the migration wrapper (store/migrate.c).
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', 'fxb:idnum:*', 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local idx = string.sub(key, 11)
    local account = redis.call('GET', key)
    if account and string.match(idx, '^[0-9a-f]+$') and #idx >= 24 then
      redis.call('SET', '{p:p' .. string.sub(idx, 1, 24) .. '}:account', account)
    end
  end
until cursor == '0'
