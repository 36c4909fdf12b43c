/* Entitlements (entitlement.h): every transition is one Lua script on the
 * policy's slot {b:<pid>}, so the state change, the policy's counters, the
 * quota and budget check, the log entry, the confirmation queue and the
 * disbursement outbox move together or not at all. The matching script is
 * the hot path of a city-wide publish (a million subjects): it reads the
 * batch's current values with one HMGET, writes them back with one HSET,
 * the counters with a few HINCRBYs and the log with one entry per kind of
 * transition and the disbursements with one entry per batch (a 批量代发
 * file: every grant's idempotency key in one XADD), so each subject costs
 * its share of those writes plus a little Lua.
 *
 * Counters are gauges of the entitlements by state (n_matched ... n_ended)
 * plus what the grants hold: grants_used = GRANTED + PAID, budget_used_fen =
 * grants_used x amount_fen. Everything that leaves GRANTED other than to
 * PAID (a decline, the end of a non-cash grant) gives its place and amount
 * back. */
#include "services/benefit/entitlement.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/benefit/policy.h"
#include "store/keys.h"

#define SUBJECT_LEN     25 /* "p" / "e" + 24 hex */
#define BY_MAX          64
#define REFERENCE_MAX   64
#define LOG_MAXLEN      "2000000"
#define ZH_BUSY         "系统繁忙，请稍后重试"
#define ZH_NOT_FOUND    "未找到该享受记录"
#define ZH_STATE        "该享受记录的当前状态不允许此操作"
#define ZH_NOT_OPEN     "该政策未发布或不在有效期内"
#define ZH_NO_PAYOUT    "未找到该笔发放记录"
#define ZH_PAY_CONFLICT "该笔发放已登记了其他支付流水号"

/* --- ids and values ------------------------------------------------------- */

static bool hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* "b" + 16 lower-case hex (policy.h; checked here too so that this module
 * stands on its own). */
bool fxb_ent_policy_id_ok(const char *id)
{
    return id != NULL && strnlen(id, FXB_POLICY_ID_LEN + 1) == FXB_POLICY_ID_LEN && id[0] == 'b' &&
           hex_run(id + 1, FXB_POLICY_ID_LEN - 1);
}

/* A person ("p") or enterprise ("e") subject: the letter + 24 lower-case hex. */
bool fxb_ent_subject_ok(const char *s)
{
    return s != NULL && (s[0] == 'p' || s[0] == 'e') &&
           strnlen(s, SUBJECT_LEN + 1) == SUBJECT_LEN && hex_run(s + 1, SUBJECT_LEN - 1);
}

/* "" (not computed) or up to FXB_ENT_HELD_MAX of T / F / U. */
static bool held_ok(const char *h)
{
    if (h == NULL)
        return true;
    size_t n = strnlen(h, FXB_ENT_HELD_MAX + 1);
    if (n > FXB_ENT_HELD_MAX)
        return false;
    return strspn(h, "TFU") == n;
}

static bool by_ok(const char *by)
{
    if (by == NULL)
        return false;
    size_t n = strnlen(by, BY_MAX + 1);
    if (n == 0 || n > BY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)by[i] <= ' ' || by[i] == ',' || (unsigned char)by[i] == 0x7f)
            return false;
    return true;
}

/* A decimal of at most max_digits digits without leading zeros (or "0"
 * when zero_ok) ending at end; *out receives it. */
static bool parse_dec(const char *s, const char *end, size_t max_digits, bool zero_ok,
                      uint64_t *out)
{
    size_t n = (size_t)(end - s);
    if (n == 0 || n > max_digits || (s[0] == '0' && (n > 1 || !zero_ok)))
        return false;
    uint64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

bool fxb_ent_parse(const char *subject, const char *value, size_t len, fxb_ent *out)
{
    if (value == NULL || out == NULL)
        return false;
    memset(out, 0, sizeof *out);
    if (subject != NULL) {
        size_t sn = strnlen(subject, sizeof out->subject);
        if (sn >= sizeof out->subject)
            return false;
        memcpy(out->subject, subject, sn + 1);
    }
    const char *p = value, *end = value + len;
    const char *field[6];
    size_t flen[6];
    for (int i = 0; i < 6; i++) {
        const char *c = i < 5 ? memchr(p, ',', (size_t)(end - p)) : end;
        if (c == NULL)
            return false;
        field[i] = p;
        flen[i] = (size_t)(c - p);
        p = c + 1;
    }
    if (memchr(field[5], ',', flen[5]) != NULL)
        return false;
    uint64_t state, round, created, updated;
    if (!parse_dec(field[0], field[0] + flen[0], 1, false, &state) || state < FXB_ENT_MATCHED ||
        state > FXB_ENT_ENDED || !parse_dec(field[1], field[1] + flen[1], 10, false, &round) ||
        round > UINT32_MAX || !parse_dec(field[2], field[2] + flen[2], 18, true, &created) ||
        !parse_dec(field[3], field[3] + flen[3], 18, true, &updated))
        return false;
    out->state = (int)state;
    out->round = (uint32_t)round;
    out->created_ms = (int64_t)created;
    out->updated_ms = (int64_t)updated;
    if (!(flen[4] == 1 && field[4][0] == '-')) {
        if (flen[4] == 0 || flen[4] > FXB_ENT_REASON_MAX)
            return false;
        for (size_t i = 0; i < flen[4]; i++)
            if (!((field[4][i] >= 'A' && field[4][i] <= 'Z') || field[4][i] == '_'))
                return false;
        memcpy(out->reason, field[4], flen[4]);
    }
    if (!(flen[5] == 1 && field[5][0] == '-')) {
        if (flen[5] > FXB_ENT_HELD_MAX)
            return false;
        for (size_t i = 0; i < flen[5]; i++)
            if (field[5][i] != 'T' && field[5][i] != 'F' && field[5][i] != 'U')
                return false;
        memcpy(out->held, field[5], flen[5]);
    }
    return true;
}

void fxb_ent_disbursement_key(char out[FXB_ENT_KEY_MAX + 1], const char *policy_id,
                              const char *subject, uint32_t round)
{
    snprintf(out, FXB_ENT_KEY_MAX + 1, "%.17s:%.25s:%" PRIu32, policy_id, subject, round);
}

/* --- the scripts ------------------------------------------------------------ */

/* What every script shares: the value format (entitlement.h), the log entry
 * and the window test. A value that does not parse is never touched. */
#define LUA_COMMON                                                                                 \
    "local function parse(v)\n"                                                                    \
    "  return string.match(v, '^(%d),(%d+),(%d+),%d+,([^,]*),([^,]*)$')\n"                         \
    "end\n"                                                                                        \
    "local function logx(log, s, f, t, r, by, now)\n"                                              \
    "  redis.call('XADD', log, 'MAXLEN', '~', '" LOG_MAXLEN "', '*', 'subject', s, 'from', f,\n"   \
    "    'to', t, 'reason', r, 'by', by, 'at_ms', now)\n"                                          \
    "end\n"                                                                                        \
    "local function logbatch(log, by, now)\n"                                                      \
    "  local groups, order, last = {}, {}, nil\n"                                                  \
    "  local function note(s, f, t, r)\n"                                                          \
    "    local g = last\n"                                                                         \
    "    if not (g and g.f == f and g.t == t and g.r == r) then\n"                                 \
    "      local k = f .. ',' .. t .. ',' .. r\n"                                                  \
    "      g = groups[k]\n"                                                                        \
    "      if not g then\n"                                                                        \
    "        g = {f = f, t = t, r = r, n = 0, s = {}}\n"                                           \
    "        groups[k] = g\n"                                                                      \
    "        order[#order + 1] = g\n"                                                              \
    "      end\n"                                                                                  \
    "      last = g\n"                                                                             \
    "    end\n"                                                                                    \
    "    g.n = g.n + 1\n"                                                                          \
    "    g.s[g.n] = s\n"                                                                           \
    "  end\n"                                                                                      \
    "  local function flush()\n"                                                                   \
    "    for _, g in ipairs(order) do\n"                                                           \
    "      redis.call('XADD', log, 'MAXLEN', '~', '" LOG_MAXLEN "', '*',\n"                        \
    "        'from', g.f, 'to', g.t, 'reason', g.r, 'by', by, 'at_ms', now,\n"                     \
    "        'n', string.format('%d', g.n), 'subjects', table.concat(g.s, ','))\n"                 \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  return note, flush\n"                                                                       \
    "end\n"                                                                                        \
    "local function disburse(k, op, n, keys, amt, now)\n"                                          \
    "  redis.call('XADD', k, '*', 'op', op, 'n', string.format('%d', n), 'keys', keys,\n"          \
    "    'amount_fen', amt, 'at_ms', now)\n"                                                       \
    "end\n"                                                                                        \
    "local function open(p, t)\n"                                                                  \
    "  local from, till = tonumber(p[2]) or 0, tonumber(p[3]) or 0\n"                              \
    "  return p[1] == '2' and t >= from and (till == 0 or t < till)\n"                             \
    "end\n"                                                                                        \
    "local function incr(k, f, d)\n"                                                               \
    "  if d ~= 0 then redis.call('HINCRBY', k, f, string.format('%d', d)) end\n"                   \
    "end\n"                                                                                        \
    "local POLICY = {'status', 'valid_from_ms', 'valid_until_ms', 'quota', 'budget_fen',\n"        \
    "  'amount_fen', 'benefit_kind', 'confirm', 'grants_used', 'budget_used_fen'}\n"

/* KEYS: policy, ent, queue, log, payouts, unlisted. ARGV: now, by, pid, n,
 * flags ("r": repair, "h": held strings follow, "d": the list entries of
 * the subjects it creates are deferred: one entry n, subjects, at_ms in
 * the unlisted stream for them, entitlement.h), the n subjects, then (with "h")
 * their n held strings (a full match computes none: 1,000 empty arguments
 * cost Redis 0.1-0.2 us per subject). Returns one digit per subject: the
 * fxb_ent_outcome; with repair, an array: that string, then
 * per subject the created_ms of an entitlement left UNCHANGED ("" for the
 * others), for the ZADD NX that repairs its list entry. The log gets one
 * entry per kind of transition (from, to, reason) of the batch. */
static fxb_script match_script = FXB_SCRIPT(
    "ent_match", LUA_COMMON
    "local now, by, pid, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])\n"
    "local repair = string.find(ARGV[5], 'r', 1, true)\n"
    "local helds = string.find(ARGV[5], 'h', 1, true)\n"
    "local defer = string.find(ARGV[5], 'd', 1, true)\n"
    "local t = tonumber(now)\n"
    "local p = redis.call('HMGET', KEYS[1], unpack(POLICY))\n"
    "if not open(p, t) then return string.rep('5', n) end\n"
    "local quota, budget, amount = tonumber(p[4]) or 0, tonumber(p[5]) or 0, tonumber(p[6]) or 0\n"
    "local cash, confirm, amt = p[7] == '1', p[8] == '1', p[6] or '0'\n"
    "local used, spent = tonumber(p[9]) or 0, tonumber(p[10]) or 0\n"
    "local cur = redis.call('HMGET', KEYS[2], unpack(ARGV, 6, 5 + n))\n"
    "local out, hset, queue, seen, kept, unl = {}, {}, {}, {}, {}, {}\n"
    "local dm, dc, dg, de, du = 0, 0, 0, 0, 0\n"
    "local pays, np, pfx = {}, 0, pid .. ':'\n"
    "local fresh = '3,1,' .. now .. ',' .. now .. ',-,-'\n"
    "local note, flush = logbatch(KEYS[4], by, now)\n"
    "local function full()\n"
    "  if quota > 0 and used >= quota then return 'QUOTA_EXHAUSTED' end\n"
    "  if budget > 0 and spent + amount > budget then return 'BUDGET_EXHAUSTED' end\n"
    "  return nil\n"
    "end\n"
    "local function grant(s, rd)\n"
    "  used, spent, du = used + 1, spent + amount, du + 1\n"
    "  if cash then\n"
    "    if np > 0 then np = np + 1; pays[np] = ',' end\n"
    "    pays[np + 1], pays[np + 2], pays[np + 3], pays[np + 4] = pfx, s, ':', rd\n"
    "    np = np + 4\n"
    "  end\n"
    "end\n"
    "for i = 1, n do\n"
    "  local s, o, c = ARGV[5 + i], '0', ''\n"
    "  if not seen[s] then\n"
    "    seen[s] = true\n"
    "    local v, hd = cur[i], helds and ARGV[5 + n + i] or ''\n"
    "    local go, from, rd = not v, '0', '1'\n"
    "    if v then\n"
    "      local st, r0, c0, rs, h0 = parse(v)\n"
    "      c = c0 or ''\n"
    "      if (st == '1' or st == '2') and (rs == 'QUOTA_EXHAUSTED' or rs == 'BUDGET_EXHAUSTED') "
    "then\n"
    "        if not full() then\n"
    "          grant(s, r0)\n"
    "          if hd == '' then hd = h0 end\n"
    "          hset[#hset + 1] = s\n"
    "          hset[#hset + 1] = '3,' .. r0 .. ',' .. c0 .. ',' .. now .. ',-,' .. hd\n"
    "          if st == '1' then dm = dm - 1 else dc = dc - 1 end\n"
    "          dg = dg + 1\n"
    "          note(s, st, '3', '-')\n"
    "          o = '1'\n"
    "        end\n"
    "      elseif st == '6' and (rs == 'NO_LONGER_ELIGIBLE' or rs == 'POLICY_EXPIRED') then\n"
    "        go, from, rd, de = true, '6', tostring(tonumber(r0) + 1), de - 1\n"
    "      end\n"
    "    end\n"
    "    if go then\n"
    "      if hd == '' then hd = '-' end\n"
    "      local to, rs\n"
    "      if confirm then\n"
    "        to, rs, o, dm = '1', 'AWAITING_CONFIRMATION', '2', dm + 1\n"
    "        queue[#queue + 1] = now\n"
    "        queue[#queue + 1] = s\n"
    "      else\n"
    "        local f = full()\n"
    "        if f then\n"
    "          to, rs, o, dm = '1', f, '3', dm + 1\n"
    "        else\n"
    "          to, rs, o, dg = '3', '-', '1', dg + 1\n"
    "          grant(s, rd)\n"
    "        end\n"
    "      end\n"
    "      local nh = #hset\n"
    "      hset[nh + 1] = s\n"
    "      if to == '3' and rd == '1' and hd == '-' then hset[nh + 2] = fresh\n"
    "      else\n"
    "        hset[nh + 2] = to .. ',' .. rd .. ',' .. now .. ',' .. now .. ',' .. rs .. ',' .. hd\n"
    "      end\n"
    "      note(s, from, to, rs)\n"
    "    end\n"
    "  end\n"
    "  out[i] = o\n"
    "  if defer and o ~= '0' then unl[#unl + 1] = s end\n"
    "  if repair then kept[i] = o == '0' and c or '' end\n"
    "end\n"
    "if #hset > 0 then redis.call('HSET', KEYS[2], unpack(hset)) end\n"
    "if #queue > 0 then redis.call('ZADD', KEYS[3], unpack(queue)) end\n"
    "if np > 0 then disburse(KEYS[5], 'pay', du, table.concat(pays), amt, now) end\n"
    "if #unl > 0 then\n"
    "  redis.call('XADD', KEYS[6], '*', 'n', string.format('%d', #unl), 'subjects',\n"
    "    table.concat(unl, ','), 'at_ms', now)\n"
    "end\n"
    "flush()\n"
    "incr(KEYS[1], 'n_matched', dm)\n"
    "incr(KEYS[1], 'n_confirmed', dc)\n"
    "incr(KEYS[1], 'n_granted', dg)\n"
    "incr(KEYS[1], 'n_ended', de)\n"
    "incr(KEYS[1], 'grants_used', du)\n"
    "incr(KEYS[1], 'budget_used_fen', du * amount)\n"
    "if repair then return {table.concat(out), unpack(kept)} end\n"
    "return table.concat(out)\n");

/* KEYS: policy, ent, queue, log. ARGV: now, by, reason, n, the n subjects.
 * Returns one digit per subject (0 unchanged, 4 ended). The log gets one
 * entry per state left (from) of the batch. */
static fxb_script end_script = FXB_SCRIPT(
    "ent_end", LUA_COMMON
    "local now, by, why, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])\n"
    "local p = redis.call('HMGET', KEYS[1], 'benefit_kind', 'amount_fen')\n"
    "local amount = tonumber(p[2]) or 0\n"
    "local granted_too = p[1] ~= '1' and why ~= 'POLICY_CLOSED'\n"
    "local cur = redis.call('HMGET', KEYS[2], unpack(ARGV, 5, 4 + n))\n"
    "local out, hset, zrem, seen = {}, {}, {}, {}\n"
    "local dm, dc, dg = 0, 0, 0\n"
    "local note, flush = logbatch(KEYS[4], by, now)\n"
    "for i = 1, n do\n"
    "  local s, v, o = ARGV[4 + i], cur[i], '0'\n"
    "  if v and not seen[s] then\n"
    "    seen[s] = true\n"
    "    local st, r0, c0, rs, h0 = parse(v)\n"
    "    if st == '1' or st == '2' or (st == '3' and granted_too) then\n"
    "      if st == '1' then dm = dm - 1; zrem[#zrem + 1] = s\n"
    "      elseif st == '2' then dc = dc - 1 else dg = dg - 1 end\n"
    "      hset[#hset + 1] = s\n"
    "      hset[#hset + 1] = '6,' .. r0 .. ',' .. c0 .. ',' .. now .. ',' .. why .. ',' .. h0\n"
    "      note(s, st, '6', why)\n"
    "      o = '4'\n"
    "    end\n"
    "  end\n"
    "  out[i] = o\n"
    "end\n"
    "if #hset > 0 then redis.call('HSET', KEYS[2], unpack(hset)) end\n"
    "if #zrem > 0 then redis.call('ZREM', KEYS[3], unpack(zrem)) end\n"
    "flush()\n"
    "incr(KEYS[1], 'n_matched', dm)\n"
    "incr(KEYS[1], 'n_confirmed', dc)\n"
    "incr(KEYS[1], 'n_granted', dg)\n"
    "incr(KEYS[1], 'n_ended', -(dm + dc + dg))\n"
    "incr(KEYS[1], 'grants_used', dg)\n"
    "incr(KEYS[1], 'budget_used_fen', dg * amount)\n"
    "return table.concat(out)\n");

/* KEYS: policy, ent, queue, log, payouts. ARGV: op (confirm / reject /
 * decline), subject, now, by, pid. Returns the entitlement's new value. */
static fxb_script step_script = FXB_SCRIPT(
    "ent_step", LUA_COMMON
    "local op, s, now, by, pid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "local v = redis.call('HGET', KEYS[2], s)\n"
    "if not v then\n"
    "  return redis.error_reply('FXB 5 ENTITLEMENT_NOT_FOUND no entitlement of this subject')\n"
    "end\n"
    "local st, rd, cr, rs, hd = parse(v)\n"
    "local function refuse()\n"
    "  return redis.error_reply('FXB 9 ENTITLEMENT_STATE the entitlement is in state ' ..\n"
    "    (st or '?') .. ' (' .. (rs or '?') .. '): cannot ' .. op)\n"
    "end\n"
    "local p = redis.call('HMGET', KEYS[1], unpack(POLICY))\n"
    "local amount, cash = tonumber(p[6]) or 0, p[7] == '1'\n"
    "local key = pid .. ':' .. s .. ':' .. (rd or '')\n"
    "local to, why\n"
    "if op == 'confirm' then\n"
    "  if st ~= '1' or rs ~= 'AWAITING_CONFIRMATION' then return refuse() end\n"
    "  if not open(p, tonumber(now)) then\n"
    "    return redis.error_reply('FXB 9 POLICY_NOT_OPEN the policy is not published or outside '\n"
    "      .. 'its validity window')\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[3], s)\n"
    "  logx(KEYS[4], s, '1', '2', '-', by, now)\n"
    "  incr(KEYS[1], 'n_matched', -1)\n"
    "  local quota, budget = tonumber(p[4]) or 0, tonumber(p[5]) or 0\n"
    "  local used, spent = tonumber(p[9]) or 0, tonumber(p[10]) or 0\n"
    "  if quota > 0 and used >= quota then why = 'QUOTA_EXHAUSTED'\n"
    "  elseif budget > 0 and spent + amount > budget then why = 'BUDGET_EXHAUSTED' end\n"
    "  if why then\n"
    "    to = '2'\n"
    "    incr(KEYS[1], 'n_confirmed', 1)\n"
    "  else\n"
    "    to, why = '3', '-'\n"
    "    if cash then\n"
    "      disburse(KEYS[5], 'pay', 1, key, p[6] or '0', now)\n"
    "    end\n"
    "    incr(KEYS[1], 'n_granted', 1)\n"
    "    incr(KEYS[1], 'grants_used', 1)\n"
    "    incr(KEYS[1], 'budget_used_fen', amount)\n"
    "  end\n"
    "  logx(KEYS[4], s, '2', to, why, by, now)\n"
    "elseif op == 'reject' then\n"
    "  if st ~= '1' then return refuse() end\n"
    "  to, why = '6', 'REJECTED_BY_DEPARTMENT'\n"
    "  redis.call('ZREM', KEYS[3], s)\n"
    "  incr(KEYS[1], 'n_matched', -1)\n"
    "  incr(KEYS[1], 'n_ended', 1)\n"
    "  logx(KEYS[4], s, st, to, why, by, now)\n"
    "elseif op == 'decline' then\n"
    "  if st ~= '1' and st ~= '2' and st ~= '3' then return refuse() end\n"
    "  to, why = '5', 'DECLINED_BY_SUBJECT'\n"
    "  if st == '1' then\n"
    "    redis.call('ZREM', KEYS[3], s)\n"
    "    incr(KEYS[1], 'n_matched', -1)\n"
    "  elseif st == '2' then\n"
    "    incr(KEYS[1], 'n_confirmed', -1)\n"
    "  else\n"
    "    if cash then\n"
    "      disburse(KEYS[5], 'cancel', 1, key, p[6] or '0', now)\n"
    "    end\n"
    "    incr(KEYS[1], 'n_granted', -1)\n"
    "    incr(KEYS[1], 'grants_used', -1)\n"
    "    incr(KEYS[1], 'budget_used_fen', -amount)\n"
    "  end\n"
    "  incr(KEYS[1], 'n_declined', 1)\n"
    "  logx(KEYS[4], s, st, to, why, by, now)\n"
    "else\n"
    "  return redis.error_reply('FXB 13 ENTITLEMENT_OP unknown step')\n"
    "end\n"
    "local nv = to .. ',' .. rd .. ',' .. cr .. ',' .. now .. ',' .. why .. ',' .. hd\n"
    "redis.call('HSET', KEYS[2], s, nv)\n"
    "return nv\n");

/* KEYS: policy, ent, log, paid. ARGV: subject, round, key, reference,
 * paid_at, now. Returns the entitlement's value after the payment. */
static fxb_script pay_script = FXB_SCRIPT(
    "ent_pay", LUA_COMMON
    "local s, round, key, ref, paid_at, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],\n"
    "  ARGV[6]\n"
    "local v = redis.call('HGET', KEYS[2], s)\n"
    "local prior = redis.call('HGET', KEYS[4], key)\n"
    "if prior then\n"
    "  if string.match(prior, '^([^,]*),') ~= ref then\n"
    "    return redis.error_reply('FXB 6 PAYMENT_CONFLICT this disbursement was paid with '\n"
    "      .. 'another reference')\n"
    "  end\n"
    "  if v then return v end\n"
    "end\n"
    "local function none()\n"
    "  return redis.error_reply('FXB 5 DISBURSEMENT_NOT_FOUND no disbursement has this key')\n"
    "end\n"
    "if not v then return none() end\n"
    "local st, rd, cr, rs, hd = parse(v)\n"
    "if rd ~= round then return none() end\n"
    "if st == '5' or st == '6' then\n"
    "  return redis.error_reply('FXB 9 ENTITLEMENT_STATE the entitlement was declined or ended')\n"
    "end\n"
    "if st ~= '3' or redis.call('HGET', KEYS[1], 'benefit_kind') ~= '1' then return none() end\n"
    "redis.call('HSET', KEYS[4], key, ref .. ',' .. paid_at)\n"
    "local nv = '4,' .. rd .. ',' .. cr .. ',' .. now .. ',-,' .. hd\n"
    "redis.call('HSET', KEYS[2], s, nv)\n"
    "incr(KEYS[1], 'n_granted', -1)\n"
    "incr(KEYS[1], 'n_paid', 1)\n"
    "logx(KEYS[3], s, '3', '4', '-', 'payment', now)\n"
    "return nv\n");

/* --- helpers ------------------------------------------------------------------ */

static fxb_code invalid(fxb_err *err, const char *reason, const char *what)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, reason, "请求参数有误", "%s", what);
}

static fxb_code oom(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                       "out of memory building an entitlement call");
}

/* Replaces the generic zh text fxb_store_eval gives business errors. */
static void localize(fxb_err *err)
{
    static const struct {
        const char *reason, *zh;
    } zh[] = {
        {"ENTITLEMENT_NOT_FOUND", ZH_NOT_FOUND}, {"ENTITLEMENT_STATE", ZH_STATE},
        {"POLICY_NOT_OPEN", ZH_NOT_OPEN},        {"DISBURSEMENT_NOT_FOUND", ZH_NO_PAYOUT},
        {"PAYMENT_CONFLICT", ZH_PAY_CONFLICT},
    };
    if (err == NULL)
        return;
    for (size_t i = 0; i < sizeof zh / sizeof zh[0]; i++)
        if (strcmp(err->reason, zh[i].reason) == 0) {
            snprintf(err->message_zh, sizeof err->message_zh, "%s", zh[i].zh);
            return;
        }
}

static fxb_code corrupt(fxb_err *err)
{
    return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                       "an entitlement script answered in an unexpected shape");
}

/* The policy's keys: [0] policy, [1] ent, [2] queue, [3] log, [4] payouts,
 * [5] paid, [6] unlisted. False on allocation failure. */
static bool policy_keys(fxb_arena *a, const char *pid, const char *keys[7])
{
    static const char *const suffix[7] = {"policy",  "ent",  "queue",   "log",
                                          "payouts", "paid", "unlisted"};
    for (int i = 0; i < 7; i++) {
        keys[i] = fxb_key_owned(a, "b", pid, suffix[i]);
        if (keys[i] == NULL)
            return false;
    }
    return true;
}

/* --- matching ------------------------------------------------------------------- */

fxb_code fxb_ent_match_batch(fxb_store *s, const char *policy_id, const fxb_ent_match *m, size_t n,
                             int64_t now_ms, const char *by, fxb_ent_outcome *outcomes,
                             fxb_err *err)
{
    return fxb_ent_match_batch_with(s, policy_id, m, n, now_ms, by, outcomes, 0, 0, NULL, NULL,
                                    err);
}

fxb_code fxb_ent_match_batch_with(fxb_store *s, const char *policy_id, const fxb_ent_match *m,
                                  size_t n, int64_t now_ms, const char *by,
                                  fxb_ent_outcome *outcomes, unsigned flags, size_t n_extra,
                                  const fxb_store_cmd *extra, redisReply **extra_replies,
                                  fxb_err *err)
{
    bool defer = (flags & FXB_ENT_DEFER_LISTS) != 0;
    for (size_t i = 0; i < n_extra && extra_replies != NULL; i++)
        extra_replies[i] = NULL;
    if (n_extra > 0 && (extra == NULL || extra_replies == NULL))
        return invalid(err, "BATCH_INVALID", "extra commands without room for their replies");
    if (!fxb_ent_policy_id_ok(policy_id))
        return invalid(err, "POLICY_ID_INVALID", "policy id must be b + 16 hex digits");
    if (n > FXB_ENT_BATCH_MAX)
        return invalid(err, "BATCH_TOO_LARGE", "at most FXB_ENT_BATCH_MAX subjects per batch");
    if (!by_ok(by))
        return invalid(err, "ACTOR_INVALID", "by must be 1..64 printable characters");
    if (now_ms < 0)
        return invalid(err, "TIME_INVALID", "now_ms must not be negative");
    if (n == 0)
        return n_extra > 0 ? fxb_store_pipeline(s, err, n_extra, extra, extra_replies) : FXB_OK;
    if (m == NULL || outcomes == NULL)
        return invalid(err, "BATCH_INVALID", "no subjects or no room for the outcomes");
    for (size_t i = 0; i < n; i++) {
        if (!fxb_ent_subject_ok(m[i].subject))
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SUBJECT_ID_INVALID", "请求参数有误",
                               "subject %zu is not p / e + 24 hex digits", i);
        if (!held_ok(m[i].held))
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "HELD_INVALID", "请求参数有误",
                               "held of subject %zu is not up to %d of T / F / U", i,
                               FXB_ENT_HELD_MAX);
    }
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_code rc = FXB_OK;
    const char *keys[7];
    const char **args = fxb_arena_alloc(&a, (5 + 2 * n) * sizeof *args);
    bool helds = false;
    for (size_t i = 0; i < n && !helds; i++)
        helds = m[i].held != NULL && m[i].held[0] != '\0';
    fxb_store_cmd *cmds = fxb_arena_alloc(&a, n * sizeof *cmds);
    redisReply **replies = fxb_arena_alloc(&a, n * sizeof *replies);
    if (args == NULL || cmds == NULL || replies == NULL || !policy_keys(&a, policy_id, keys)) {
        fxb_arena_free(&a);
        return oom(err);
    }
    /* a small batch is the change feed's: it also repairs the list entries
     * of the subjects it leaves unchanged (entitlement.h) */
    bool repair = n <= FXB_ENT_REPAIR_MAX;
    char now[24], count[16];
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    snprintf(count, sizeof count, "%zu", n);
    args[0] = now;
    args[1] = by;
    args[2] = policy_id;
    args[3] = count;
    static const char *const flag_text[8] = {"-", "r", "h", "rh", "d", "rd", "hd", "rhd"};
    args[4] = flag_text[(repair ? 1 : 0) | (helds ? 2 : 0) | (defer ? 4 : 0)];
    for (size_t i = 0; i < n; i++) {
        args[5 + i] = m[i].subject;
        if (helds)
            args[5 + n + i] = m[i].held != NULL ? m[i].held : "";
    }
    int argc = (int)(5 + (helds ? 2 : 1) * n);
    /* the script's keys: policy .. payouts, then unlisted */
    const char *mkeys[6] = {keys[0], keys[1], keys[2], keys[3], keys[4], keys[6]};
    redisReply *r = fxb_store_eval_with(s, err, &match_script, 6, mkeys, argc, args, NULL, n_extra,
                                        extra, extra_replies);
    if (r == NULL) {
        fxb_arena_free(&a);
        return err->code;
    }
    /* the outcomes, and with repair the created_ms of each unchanged one */
    const redisReply *digits = r;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == n + 1)
        digits = r->element[0];
    bool shape = digits->type == REDIS_REPLY_STRING && digits->len == n &&
                 (digits == r || r->type == REDIS_REPLY_ARRAY);
    for (size_t i = 1; shape && digits != r && i <= n; i++)
        shape = r->element[i]->type == REDIS_REPLY_STRING && r->element[i]->len < 24;
    if (!shape) {
        freeReplyObject(r);
        fxb_arena_free(&a);
        return corrupt(err);
    }
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) {
        int o = digits->str[i] - '0';
        if (o < FXB_ENT_UNCHANGED || o > FXB_ENT_NOT_OPEN)
            rc = corrupt(err);
        outcomes[i] = (fxb_ent_outcome)o;
        const char *score = NULL;
        if (o == FXB_ENT_NEW_GRANTED || o == FXB_ENT_NEW_WAITING || o == FXB_ENT_NEW_HELD)
            score = defer ? NULL : now; /* deferred: in the unlisted stream */
        else if (o == FXB_ENT_UNCHANGED && digits != r && r->element[i + 1]->len > 0)
            score = fxb_arena_strndup(&a, r->element[i + 1]->str, r->element[i + 1]->len);
        if (score == NULL)
            continue;
        char tag[2] = {m[i].subject[0], '\0'};
        const char **zadd = fxb_arena_alloc(&a, 5 * sizeof *zadd);
        const char *key = fxb_key_owned(&a, tag, m[i].subject, "benefits");
        if (zadd == NULL || key == NULL) {
            rc = oom(err);
            break;
        }
        zadd[0] = "ZADD";
        zadd[1] = key;
        zadd[2] = "NX";
        zadd[3] = score;
        zadd[4] = policy_id;
        cmds[nz++] = (fxb_store_cmd){5, zadd, NULL};
    }
    freeReplyObject(r);
    if (rc == FXB_OK && nz > 0) {
        /* the subjects' own lists, derived: the entitlements stand even
         * when this fails (the caller sees the error, outcomes are set) */
        rc = fxb_store_pipeline(s, err, nz, cmds, replies);
        if (rc == FXB_OK) {
            for (size_t i = 0; i < nz; i++) {
                if (replies[i]->type == REDIS_REPLY_ERROR && rc == FXB_OK)
                    rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                                     "ZADD of a subject's benefit list failed");
                freeReplyObject(replies[i]);
            }
        }
    }
    fxb_arena_free(&a);
    return rc;
}

static bool end_reason_ok(const char *reason)
{
    return reason != NULL &&
           (strcmp(reason, "NO_LONGER_ELIGIBLE") == 0 || strcmp(reason, "POLICY_CLOSED") == 0 ||
            strcmp(reason, "POLICY_EXPIRED") == 0);
}

fxb_code fxb_ent_end_batch(fxb_store *s, const char *policy_id, const char *const *subjects,
                           size_t n, const char *reason, int64_t now_ms, const char *by,
                           fxb_ent_outcome *outcomes, fxb_err *err)
{
    if (!fxb_ent_policy_id_ok(policy_id))
        return invalid(err, "POLICY_ID_INVALID", "policy id must be b + 16 hex digits");
    if (n > FXB_ENT_BATCH_MAX)
        return invalid(err, "BATCH_TOO_LARGE", "at most FXB_ENT_BATCH_MAX subjects per batch");
    if (!end_reason_ok(reason))
        return invalid(err, "END_REASON_INVALID",
                       "reason must be NO_LONGER_ELIGIBLE, POLICY_CLOSED or POLICY_EXPIRED");
    if (!by_ok(by))
        return invalid(err, "ACTOR_INVALID", "by must be 1..64 printable characters");
    if (now_ms < 0)
        return invalid(err, "TIME_INVALID", "now_ms must not be negative");
    if (n == 0)
        return FXB_OK;
    if (subjects == NULL || outcomes == NULL)
        return invalid(err, "BATCH_INVALID", "no subjects or no room for the outcomes");
    for (size_t i = 0; i < n; i++)
        if (!fxb_ent_subject_ok(subjects[i]))
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SUBJECT_ID_INVALID", "请求参数有误",
                               "subject %zu is not p / e + 24 hex digits", i);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *keys[7];
    const char **args = fxb_arena_alloc(&a, (4 + n) * sizeof *args);
    if (args == NULL || !policy_keys(&a, policy_id, keys)) {
        fxb_arena_free(&a);
        return oom(err);
    }
    char now[24], count[16];
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    snprintf(count, sizeof count, "%zu", n);
    args[0] = now;
    args[1] = by;
    args[2] = reason;
    args[3] = count;
    for (size_t i = 0; i < n; i++)
        args[4 + i] = subjects[i];
    redisReply *r = fxb_store_eval(s, err, &end_script, 4, keys, (int)(4 + n), args, NULL);
    fxb_arena_free(&a);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_STRING || r->len != n) {
        rc = corrupt(err);
    } else {
        for (size_t i = 0; i < n; i++)
            outcomes[i] = r->str[i] == '4' ? FXB_ENT_ENDED_NOW : FXB_ENT_UNCHANGED;
    }
    freeReplyObject(r);
    return rc;
}

/* --- single transitions -------------------------------------------------------------- */

/* Parses a script's answer (the new value) into *out. */
static fxb_code answer(redisReply *r, const char *subject, fxb_ent *out, fxb_err *err)
{
    fxb_ent tmp;
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_STRING || !fxb_ent_parse(subject, r->str, r->len, &tmp))
        rc = corrupt(err);
    else if (out != NULL)
        *out = tmp;
    freeReplyObject(r);
    return rc;
}

static fxb_code step(fxb_store *s, const char *op, const char *policy_id, const char *subject,
                     int64_t now_ms, const char *by, fxb_ent *out, fxb_err *err)
{
    if (!fxb_ent_policy_id_ok(policy_id))
        return invalid(err, "POLICY_ID_INVALID", "policy id must be b + 16 hex digits");
    if (!fxb_ent_subject_ok(subject))
        return invalid(err, "SUBJECT_ID_INVALID", "subject must be p / e + 24 hex digits");
    if (!by_ok(by))
        return invalid(err, "ACTOR_INVALID", "by must be 1..64 printable characters");
    if (now_ms < 0)
        return invalid(err, "TIME_INVALID", "now_ms must not be negative");
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *keys[7];
    if (!policy_keys(&a, policy_id, keys)) {
        fxb_arena_free(&a);
        return oom(err);
    }
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    const char *args[] = {op, subject, now, by, policy_id};
    redisReply *r = fxb_store_eval(s, err, &step_script, 5, keys, 5, args, NULL);
    fxb_arena_free(&a);
    if (r == NULL) {
        localize(err);
        return err->code;
    }
    return answer(r, subject, out, err);
}

fxb_code fxb_ent_confirm(fxb_store *s, const char *policy_id, const char *subject, int64_t now_ms,
                         const char *by, fxb_ent *out, fxb_err *err)
{
    return step(s, "confirm", policy_id, subject, now_ms, by, out, err);
}

fxb_code fxb_ent_reject(fxb_store *s, const char *policy_id, const char *subject, int64_t now_ms,
                        const char *by, fxb_ent *out, fxb_err *err)
{
    return step(s, "reject", policy_id, subject, now_ms, by, out, err);
}

fxb_code fxb_ent_decline(fxb_store *s, const char *policy_id, const char *subject, int64_t now_ms,
                         const char *by, fxb_ent *out, fxb_err *err)
{
    return step(s, "decline", policy_id, subject, now_ms, by, out, err);
}

static bool reference_ok(const char *ref)
{
    if (ref == NULL)
        return false;
    size_t n = strnlen(ref, REFERENCE_MAX + 1);
    if (n == 0 || n > REFERENCE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = ref[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

fxb_code fxb_ent_pay(fxb_store *s, const char *disbursement_key, const char *reference,
                     int64_t paid_at_ms, int64_t now_ms, fxb_ent *out, char *policy_id_out,
                     fxb_err *err)
{
    /* "<pid>:<subject>:<round>", canonical (no leading zeros) so that one
     * disbursement has exactly one key */
    const char *k = disbursement_key;
    size_t klen = k != NULL ? strnlen(k, FXB_ENT_KEY_MAX + 1) : 0;
    char pid[FXB_POLICY_ID_LEN + 1], subject[SUBJECT_LEN + 1];
    uint64_t round = 0;
    bool ok = klen > FXB_POLICY_ID_LEN + SUBJECT_LEN + 2 && klen <= FXB_ENT_KEY_MAX &&
              k[FXB_POLICY_ID_LEN] == ':' && k[FXB_POLICY_ID_LEN + 1 + SUBJECT_LEN] == ':';
    if (ok) {
        memcpy(pid, k, FXB_POLICY_ID_LEN);
        pid[FXB_POLICY_ID_LEN] = '\0';
        memcpy(subject, k + FXB_POLICY_ID_LEN + 1, SUBJECT_LEN);
        subject[SUBJECT_LEN] = '\0';
        const char *rs = k + FXB_POLICY_ID_LEN + SUBJECT_LEN + 2;
        ok = fxb_ent_policy_id_ok(pid) && fxb_ent_subject_ok(subject) &&
             parse_dec(rs, k + klen, 10, false, &round) && round <= UINT32_MAX;
    }
    if (!ok)
        return invalid(err, "DISBURSEMENT_KEY_INVALID",
                       "a disbursement key is <policy id>:<subject>:<round>");
    if (!reference_ok(reference))
        return invalid(err, "PAYMENT_REFERENCE_INVALID",
                       "payment reference must be 1..64 of [A-Za-z0-9-_.]");
    if (paid_at_ms < 0 || now_ms < 0)
        return invalid(err, "TIME_INVALID", "times must not be negative");
    if (policy_id_out != NULL)
        memcpy(policy_id_out, pid, sizeof pid);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *keys[7];
    if (!policy_keys(&a, pid, keys)) {
        fxb_arena_free(&a);
        return oom(err);
    }
    char rtxt[16], key[FXB_ENT_KEY_MAX + 1], paid_at[24], now[24];
    snprintf(rtxt, sizeof rtxt, "%" PRIu64, round);
    fxb_ent_disbursement_key(key, pid, subject, (uint32_t)round);
    snprintf(paid_at, sizeof paid_at, "%" PRId64, paid_at_ms > 0 ? paid_at_ms : now_ms);
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    const char *pkeys[] = {keys[0], keys[1], keys[3], keys[5]};
    const char *args[] = {subject, rtxt, key, reference, paid_at, now};
    redisReply *r = fxb_store_eval(s, err, &pay_script, 4, pkeys, 6, args, NULL);
    fxb_arena_free(&a);
    if (r == NULL) {
        localize(err);
        return err->code;
    }
    return answer(r, subject, out, err);
}

/* --- reading ---------------------------------------------------------------------------- */

fxb_code fxb_ent_get(fxb_store *s, const char *policy_id, const char *subject, fxb_ent *out,
                     fxb_err *err)
{
    if (!fxb_ent_policy_id_ok(policy_id))
        return invalid(err, "POLICY_ID_INVALID", "policy id must be b + 16 hex digits");
    if (!fxb_ent_subject_ok(subject))
        return invalid(err, "SUBJECT_ID_INVALID", "subject must be p / e + 24 hex digits");
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *key = fxb_key_owned(&a, "b", policy_id, "ent");
    if (key == NULL) {
        fxb_arena_free(&a);
        return oom(err);
    }
    const char *argv[] = {"HGET", key, subject};
    redisReply *r = fxb_store_commandv(s, err, 3, argv, NULL);
    fxb_arena_free(&a);
    if (r == NULL)
        return err->code;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_NOT_FOUND, "ENTITLEMENT_NOT_FOUND", ZH_NOT_FOUND,
                           "no entitlement of this subject");
    }
    return answer(r, subject, out, err);
}

fxb_code fxb_ent_each(fxb_store *s, const char *policy_id, uint32_t state_mask,
                      bool (*fn)(const fxb_ent *e, void *arg), void *arg, fxb_err *err)
{
    if (!fxb_ent_policy_id_ok(policy_id))
        return invalid(err, "POLICY_ID_INVALID", "policy id must be b + 16 hex digits");
    if (fn == NULL)
        return invalid(err, "CALLBACK_MISSING", "fxb_ent_each needs a callback");
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *key = fxb_key_owned(&a, "b", policy_id, "ent");
    if (key == NULL) {
        fxb_arena_free(&a);
        return oom(err);
    }
    char cursor[32] = "0";
    fxb_code rc = FXB_OK;
    bool more = true;
    do {
        const char *argv[] = {"HSCAN", key, cursor, "COUNT", "1000"};
        redisReply *r = fxb_store_commandv(s, err, 5, argv, NULL);
        if (r == NULL) {
            rc = err->code;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            rc = corrupt(err);
            break;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        const redisReply *kv = r->element[1];
        for (size_t i = 0; i + 1 < kv->elements && more; i += 2) {
            const redisReply *f = kv->element[i], *v = kv->element[i + 1];
            fxb_ent e;
            /* a value that does not parse is skipped, never guessed at */
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                !fxb_ent_subject_ok(f->str) || !fxb_ent_parse(f->str, v->str, v->len, &e))
                continue;
            if ((state_mask & (1u << e.state)) == 0)
                continue;
            more = fn(&e, arg);
        }
        freeReplyObject(r);
    } while (more && strcmp(cursor, "0") != 0);
    fxb_arena_free(&a);
    return rc;
}
