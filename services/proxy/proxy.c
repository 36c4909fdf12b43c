/* ProxyService handlers (授权代办). The store layout is auth/grant.h's:
 *   {g:<gid>}:grant                        the authoritative record
 *   {g:<gid>}:activity                     acts under the grant (auth layer)
 *   {<t>:<id>}:grants:principal / :agent   live ids, score = end of liveness
 *   {<t>:<id>}:grants:principal:ended / :agent:ended   ended ids, score = end
 *   {<t>:<id>}:grants:dedupe               "<agent> <scope>" -> live grant id
 *   fxb:audit                              proxy.* actions (store/audit.h)
 * The grant and the two subjects live in three slots, so no script spans
 * them: a new grant reserves its place on the principal's side (duplicate
 * and limit), then on the agent's (limit), then writes the record, undoing
 * earlier steps when a later one fails. A transition is one script on the
 * record that checks the current status against the clock passed in (never
 * Redis TIME, so the development clock applies); the indexes follow. A
 * reader trusts a listed id only when the record names the subject, and
 * moves a grant it finds past its end (expired) to the ended indexes. ID
 * numbers, full phones and names never reach keys, texts or logs. */
#include "services/proxy/proxy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/account.h"
#include "auth/grant.h"
#include "auth/idnumber.h"
#include "auth/phone.h"
#include "auth/scope.h"
#include "auth/token.h"
#include "auth/uscc.h"
#include "fxb/v1/proxy.pb-c.h"
#include "server/log.h"
#include "server/text.h"
#include "services/auth/auth_service.h"
#include "services/enterprise/enterprise.h"
#include "services/identity/identity.h"
#include "store/audit.h"
#include "store/inbox.h"
#include "store/keys.h"
#include "store/store.h"

#define SVC "/fxb.v1.ProxyService/"

#define LABEL_ID      "id_number" /* the identity service's blind-index label */
#define ID_IDX_PREFIX "fxb:idnum:"

#define GID_LEN        22  /* fxb_token_new_id */
#define PURPOSE_MAX    200 /* characters */
#define REASON_MAX     200 /* characters */
#define ADULT_AGE      18
#define PAST_SLACK_MS  (60LL * 1000)
#define PAGE_DEFAULT   20
#define PAGE_MAX       100
#define LIVE_READ_MAX  100  /* live ids read per listing (the limits keep it at 10 / 20) */
#define ENDED_READ_MAX 1000 /* newest ended ids read per listing */
#define PAGE_TOKEN_MAX 64
#define STREAM_ID_MAX  41
#define SMALL_REQUEST  512
#define GRANT_REQUEST  8192

#define ZH_BUSY      "系统繁忙，请稍后重试"
#define ZH_NOT_FOUND "未找到该代办授权"

/* reasons */
#define R_GRANT_NOT_FOUND    "GRANT_NOT_FOUND"
#define R_GRANT_STATE        "GRANT_STATE"
#define R_GRANT_ID_INVALID   "GRANT_ID_INVALID"
#define R_WRONG_SIDE         "GRANT_WRONG_SIDE"
#define R_AGENT_NOT_FOUND    "AGENT_NOT_FOUND"
#define R_PRINCIPAL_NF       "PRINCIPAL_NOT_FOUND"
#define R_NOT_VERIFIED       "AGENT_NOT_VERIFIED"
#define R_UNDERAGE           "AGENT_UNDERAGE"
#define R_SELF_GRANT         "SELF_GRANT"
#define R_VALIDITY           "VALIDITY_INVALID"
#define R_PURPOSE            "PURPOSE_INVALID"
#define R_REASON             "REASON_INVALID"
#define R_DUPLICATE          "GRANT_DUPLICATE"
#define R_PRINCIPAL_TOO_MANY "PRINCIPAL_GRANTS_TOO_MANY"
#define R_AGENT_TOO_MANY     "AGENT_GRANTS_TOO_MANY"
#define R_SIDE_REQUIRED      "SIDE_REQUIRED"
#define R_PAGE_SIZE          "PAGE_SIZE_INVALID"
#define R_PAGE_TOKEN         "PAGE_TOKEN_INVALID"
#define R_EID_INVALID        "ENTERPRISE_ID_INVALID"

static fxb_proxy_deps deps;
static bool deps_set;

void fxb_proxy_service_init(const fxb_proxy_deps *d)
{
    deps = *d;
    deps_set = true;
}

/* --- statuses ------------------------------------------------------------- */

typedef struct status_info {
    const char *word; /* as stored */
    Fxb__V1__GrantStatus status;
    const char *name; /* in English messages */
    const char *zh;
    bool live;
} status_info;

static const status_info statuses[] = {
    {"pending_agent", FXB__V1__GRANT_STATUS__GRANT_STATUS_PENDING_AGENT, "PENDING_AGENT",
     "待代办人确认", true},
    {"pending_principal", FXB__V1__GRANT_STATUS__GRANT_STATUS_PENDING_PRINCIPAL,
     "PENDING_PRINCIPAL", "待委托人同意", true},
    {"active", FXB__V1__GRANT_STATUS__GRANT_STATUS_ACTIVE, "ACTIVE", "已生效", true},
    {"declined", FXB__V1__GRANT_STATUS__GRANT_STATUS_DECLINED, "DECLINED", "代办人已拒绝", false},
    {"rejected", FXB__V1__GRANT_STATUS__GRANT_STATUS_REJECTED, "REJECTED", "委托人已拒绝", false},
    {"revoked", FXB__V1__GRANT_STATUS__GRANT_STATUS_REVOKED, "REVOKED", "已撤销", false},
    {"resigned", FXB__V1__GRANT_STATUS__GRANT_STATUS_RESIGNED, "RESIGNED", "代办人已辞任", false},
    {"withdrawn", FXB__V1__GRANT_STATUS__GRANT_STATUS_WITHDRAWN, "WITHDRAWN", "申请已撤回", false},
    {"expired", FXB__V1__GRANT_STATUS__GRANT_STATUS_EXPIRED, "EXPIRED", "已过期", false},
};
#define N_STATUSES (sizeof statuses / sizeof statuses[0])

static const status_info *status_by_word(const char *word)
{
    for (size_t i = 0; word != NULL && i < N_STATUSES; i++)
        if (strcmp(statuses[i].word, word) == 0)
            return &statuses[i];
    return NULL;
}

static const status_info *status_expired(void)
{
    return &statuses[N_STATUSES - 1];
}

/* --- scripts -------------------------------------------------------------- */

/* Moves the ids of a live zset whose score (end of liveness) is <= now to
 * the ended zset of the same subject, with that score as their end, and
 * drops ended ids older than the retention (cutoff = now - retention). */
#define LUA_PRUNE                                                                                  \
    "local function prune(live, ended, now, cutoff)\n"                                             \
    "  local old = redis.call('ZRANGEBYSCORE', live, '-inf', now, 'WITHSCORES')\n"                 \
    "  for i = 1, #old, 2 do redis.call('ZADD', ended, old[i + 1], old[i]) end\n"                  \
    "  if #old > 0 then redis.call('ZREMRANGEBYSCORE', live, '-inf', now) end\n"                   \
    "  redis.call('ZREMRANGEBYSCORE', ended, '-inf', '(' .. cutoff)\n"                             \
    "end\n"

/* KEYS: principal live, principal ended, dedupe; ARGV: gid, score, now_ms,
 * maximum, dedupe field, retention cutoff. Duplicate first, then the limit; dedupe entries
 * naming no live grant are dropped when the hash grows. */
static fxb_script reserve_principal_script =
    FXB_SCRIPT("proxy_reserve_principal", LUA_PRUNE
               "prune(KEYS[1], KEYS[2], ARGV[3], ARGV[6])\n"
               "local dup = redis.call('HGET', KEYS[3], ARGV[5])\n"
               "if dup and redis.call('ZSCORE', KEYS[1], dup) then\n"
               "  return redis.error_reply('FXB 6 " R_DUPLICATE
               " an equal grant (same principal, agent and scopes) is already active or pending')\n"
               "end\n"
               "if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then\n"
               "  return redis.error_reply('FXB 8 " R_PRINCIPAL_TOO_MANY
               " the principal already has the most active or pending grants allowed')\n"
               "end\n"
               "if redis.call('HLEN', KEYS[3]) >= 2 * tonumber(ARGV[4]) then\n"
               "  local all = redis.call('HGETALL', KEYS[3])\n"
               "  for i = 1, #all, 2 do\n"
               "    if not redis.call('ZSCORE', KEYS[1], all[i + 1]) then\n"
               "      redis.call('HDEL', KEYS[3], all[i])\n"
               "    end\n"
               "  end\n"
               "end\n"
               "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
               "redis.call('HSET', KEYS[3], ARGV[5], ARGV[1])\n"
               "return 1\n");

/* KEYS: agent live, agent ended; ARGV: gid, score, now_ms, maximum,
 * retention cutoff. */
static fxb_script reserve_agent_script =
    FXB_SCRIPT("proxy_reserve_agent",
               LUA_PRUNE "prune(KEYS[1], KEYS[2], ARGV[3], ARGV[5])\n"
                         "if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then\n"
                         "  return redis.error_reply('FXB 8 " R_AGENT_TOO_MANY
                         " the agent already has the most active or pending grants allowed')\n"
                         "end\n"
                         "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
                         "return 1\n");

/* KEYS: a live zset[, dedupe]; ARGV: gid[, dedupe field]. Undoes a
 * reservation. */
static fxb_script unreserve_script = FXB_SCRIPT(
    "proxy_unreserve", "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                       "if KEYS[2] and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then\n"
                       "  redis.call('HDEL', KEYS[2], ARGV[2])\n"
                       "end\n"
                       "return 1\n");

/* KEYS: grant; ARGV: pexpireat, then field, value pairs. */
static fxb_script create_script =
    FXB_SCRIPT("proxy_create", "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
                               "  return redis.error_reply('FXB 10 GRANT_ID_CLASH try again')\n"
                               "end\n"
                               "redis.call('HSET', KEYS[1], unpack(ARGV, 2))\n"
                               "redis.call('PEXPIREAT', KEYS[1], ARGV[1])\n"
                               "return 1\n");

/* The effective status of the record h = HMGET status valid_until_ms
 * pending_until_ms at now. */
#define LUA_EFFECTIVE                                                                              \
    "local function effective(h, now)\n"                                                           \
    "  if h[1] == 'active' and tonumber(h[2]) <= now then return 'expired' end\n"                  \
    "  if (h[1] == 'pending_agent' or h[1] == 'pending_principal') and\n"                          \
    "     tonumber(h[3]) <= now then return 'expired' end\n"                                       \
    "  return h[1]\n"                                                                              \
    "end\n"

/* KEYS: grant, activity; ARGV: now_ms, map "from=to,...", ends ("1"/"0"),
 * end reason ("" = the new status word), retention ms, approved_by ("" = keep), notify ("" = keep).
 * Returns {previous status, new status}; a status the map does not name is
 * GRANT_STATE with the status as the message's last word. */
static fxb_script transition_script = FXB_SCRIPT(
    "proxy_transition", LUA_EFFECTIVE
    "local h = redis.call('HMGET', KEYS[1], 'status', 'valid_until_ms', 'pending_until_ms')\n"
    "if not h[1] then\n"
    "  return redis.error_reply('FXB 5 " R_GRANT_NOT_FOUND " no such grant')\n"
    "end\n"
    "local now = tonumber(ARGV[1])\n"
    "local st = effective(h, now)\n"
    "local to = nil\n"
    "for f, t in string.gmatch(ARGV[2], '([%w_]+)=([%w_]+)') do\n"
    "  if f == st then to = t end\n"
    "end\n"
    "if not to then\n"
    "  return redis.error_reply('FXB 9 " R_GRANT_STATE " the grant is ' .. st)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'status', to)\n"
    "if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'approved_by', ARGV[6]) end\n"
    "if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'notify_activity', ARGV[7]) end\n"
    "if ARGV[3] == '1' then\n"
    "  local why = ARGV[4]\n"
    "  if why == '' then why = to end\n"
    "  redis.call('HSET', KEYS[1], 'ended_at_ms', ARGV[1], 'end_reason', why)\n"
    "  redis.call('PEXPIREAT', KEYS[1], now + tonumber(ARGV[5]))\n"
    "  redis.call('PEXPIREAT', KEYS[2], now + tonumber(ARGV[5]))\n"
    "elseif to == 'active' and st ~= 'active' then\n"
    "  redis.call('PEXPIREAT', KEYS[1], tonumber(h[2]) + tonumber(ARGV[5]))\n"
    "end\n"
    "return {st, to}\n");

/* KEYS: grant, activity; ARGV: now_ms, retention ms. Records the expiry of a
 * live grant past its end; returns the end time (string), or nil when the
 * grant is not live-but-past-its-end. */
static fxb_script expire_script = FXB_SCRIPT(
    "proxy_expire",
    "local h = redis.call('HMGET', KEYS[1], 'status', 'valid_until_ms', 'pending_until_ms')\n"
    "local at = nil\n"
    "if h[1] == 'active' then at = h[2]\n"
    "elseif h[1] == 'pending_agent' or h[1] == 'pending_principal' then at = h[3] end\n"
    "if not at or tonumber(at) > tonumber(ARGV[1]) then return false end\n"
    "redis.call('HSET', KEYS[1], 'status', 'expired', 'ended_at_ms', at, 'end_reason', "
    "'expired')\n"
    "redis.call('PEXPIREAT', KEYS[1], tonumber(at) + tonumber(ARGV[2]))\n"
    "redis.call('PEXPIREAT', KEYS[2], tonumber(at) + tonumber(ARGV[2]))\n"
    "return at\n");

/* KEYS: live, ended[, dedupe]; ARGV: gid, ended_at_ms[, dedupe field]. */
static fxb_script end_index_script = FXB_SCRIPT(
    "proxy_end_index", "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                       "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
                       "if KEYS[3] and redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[1] then\n"
                       "  redis.call('HDEL', KEYS[3], ARGV[3])\n"
                       "end\n"
                       "return 1\n");

/* --- small helpers -------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code not_configured(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "PROXY_NOT_CONFIGURED", ZH_BUSY,
                        "the proxy service is not configured on this server");
}

static fxb_code grant_not_found(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_NOT_FOUND, R_GRANT_NOT_FOUND, ZH_NOT_FOUND,
                        "no such grant for the caller");
}

static fxb_code key_failed(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
}

static void text_of(char *buf, size_t cap, int64_t v)
{
    snprintf(buf, cap, "%" PRId64, v);
}

static bool eid_valid(const char *eid)
{
    if (eid == NULL || strnlen(eid, FXB_ENTERPRISE_ID_LEN + 1) != FXB_ENTERPRISE_ID_LEN ||
        eid[0] != 'e')
        return false;
    for (size_t i = 1; i < FXB_ENTERPRISE_ID_LEN; i++)
        if (!((eid[i] >= '0' && eid[i] <= '9') || (eid[i] >= 'a' && eid[i] <= 'f')))
            return false;
    return true;
}

static bool gid_valid(const char *gid)
{
    if (gid == NULL || strnlen(gid, GID_LEN + 1) != GID_LEN)
        return false;
    for (size_t i = 0; i < GID_LEN; i++) {
        char c = gid[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* The hash-tag type of a subject: "e" for an enterprise, "u" for an account. */
static const char *subject_tag(const char *id)
{
    return eid_valid(id) ? "e" : "u";
}

/* Subject keys "{<t>:<id>}:grants:<suffix>" (arena), or NULL. */
static const char *subject_key(fxb_ctx *ctx, const char *id, const char *suffix)
{
    return fxb_key_owned(fxb_ctx_arena(ctx), subject_tag(id), id, suffix);
}

/* A notice to subject's inbox. Notices are best effort: the grant has
 * changed either way, and GetGrant / ListGrants show it. */
static void notify(fxb_ctx *ctx, const char *subject, const char *kind, const char *title,
                   const char *body, const char *gid, int64_t now)
{
    fxb_err err;
    if (fxb_inbox_append(fxb_ctx_store(ctx), subject, kind, title, body, gid, now, NULL, &err) !=
        FXB_OK)
        fxb_log(FXB_LOG_WARN, "proxy: inbox notice %s failed: %s", kind, err.reason);
}

/* --- the record ----------------------------------------------------------- */

enum {
    F_PRINCIPAL,
    F_PRINCIPAL_KIND,
    F_PRINCIPAL_LABEL,
    F_AGENT,
    F_AGENT_LABEL,
    F_SCOPE,
    F_PURPOSE,
    F_STATUS,
    F_INITIATED_BY,
    F_CREATED_AT,
    F_VALID_FROM,
    F_VALID_UNTIL,
    F_PENDING_UNTIL,
    F_ENDED_AT,
    F_END_REASON,
    F_APPROVED_BY,
    F_NOTIFY,
    N_FIELDS
};

static const char *const field_names[N_FIELDS] = {
    "principal",     "principal_kind", "principal_label",  "agent",        "agent_label",
    "scope",         "purpose",        "status",           "initiated_by", "created_at_ms",
    "valid_from_ms", "valid_until_ms", "pending_until_ms", "ended_at_ms",  "end_reason",
    "approved_by",   "notify_activity"};

/* A grant as read, with its effective status at the time of reading. */
typedef struct grant_rec {
    const char *gid;
    const char *principal, *principal_kind, *principal_label, *agent, *agent_label, *scope;
    const char *purpose, *initiated_by, *end_reason;
    const status_info *stored; /* the status field */
    const status_info *eff;    /* effective: a live grant past its end reads expired */
    int64_t created_at, valid_from, valid_until, pending_until, ended_at;
    bool notify;
    bool enterprise;
} grant_rec;

static const char *dup_field(fxb_arena *a, const redisReply *r)
{
    return fxb_arena_strdup(a, r->type == REDIS_REPLY_STRING ? r->str : "");
}

static int64_t int_field(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
}

/* The effective status at now. */
static void settle(grant_rec *g, int64_t now)
{
    g->eff = g->stored;
    if (g->stored->status == FXB__V1__GRANT_STATUS__GRANT_STATUS_ACTIVE && g->valid_until <= now) {
        g->eff = status_expired();
        g->ended_at = g->valid_until;
        g->end_reason = "expired";
    } else if (g->stored->live && g->stored->status != FXB__V1__GRANT_STATUS__GRANT_STATUS_ACTIVE &&
               g->pending_until <= now) {
        g->eff = status_expired();
        g->ended_at = g->pending_until;
        g->end_reason = "expired";
    }
}

/* Fills *g from an HMGET reply; false when the record is missing or not a
 * grant (nothing to trust). */
static bool parse_rec(fxb_arena *a, const char *gid, const redisReply *r, grant_rec *g, int64_t now)
{
    memset(g, 0, sizeof *g);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != N_FIELDS)
        return false;
    const redisReply *const *e = (const redisReply *const *)r->element;
    if (e[F_PRINCIPAL]->type != REDIS_REPLY_STRING || e[F_AGENT]->type != REDIS_REPLY_STRING ||
        e[F_STATUS]->type != REDIS_REPLY_STRING)
        return false;
    g->stored = status_by_word(e[F_STATUS]->str);
    if (g->stored == NULL)
        return false;
    g->gid = fxb_arena_strdup(a, gid);
    g->principal = dup_field(a, e[F_PRINCIPAL]);
    g->principal_kind = dup_field(a, e[F_PRINCIPAL_KIND]);
    g->principal_label = dup_field(a, e[F_PRINCIPAL_LABEL]);
    g->agent = dup_field(a, e[F_AGENT]);
    g->agent_label = dup_field(a, e[F_AGENT_LABEL]);
    g->scope = dup_field(a, e[F_SCOPE]);
    g->purpose = dup_field(a, e[F_PURPOSE]);
    g->initiated_by = dup_field(a, e[F_INITIATED_BY]);
    g->end_reason = dup_field(a, e[F_END_REASON]);
    if (g->gid == NULL || g->principal == NULL || g->principal_kind == NULL ||
        g->principal_label == NULL || g->agent == NULL || g->agent_label == NULL ||
        g->scope == NULL || g->purpose == NULL || g->initiated_by == NULL || g->end_reason == NULL)
        return false;
    g->created_at = int_field(e[F_CREATED_AT]);
    g->valid_from = int_field(e[F_VALID_FROM]);
    g->valid_until = int_field(e[F_VALID_UNTIL]);
    g->pending_until = int_field(e[F_PENDING_UNTIL]);
    g->ended_at = int_field(e[F_ENDED_AT]);
    g->notify = e[F_NOTIFY]->type == REDIS_REPLY_STRING && strcmp(e[F_NOTIFY]->str, "1") == 0;
    g->enterprise = strcmp(g->principal_kind, "enterprise") == 0;
    settle(g, now);
    return true;
}

/* Reads n records in one pipeline; found[i] tells which parsed. */
static fxb_code read_recs(fxb_ctx *ctx, const char *const *gids, size_t n, grant_rec *out,
                          bool *found, int64_t now, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store_cmd *cmds = fxb_arena_calloc(a, n, sizeof *cmds);
    redisReply **replies = fxb_arena_calloc(a, n, sizeof *replies);
    const char **argvs = fxb_arena_calloc(a, n * (N_FIELDS + 2), sizeof *argvs);
    if (cmds == NULL || replies == NULL || argvs == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char **argv = argvs + i * (N_FIELDS + 2);
        char *key = fxb_arena_alloc(a, FXB_KEY_ID_MAX + 16);
        if (key == NULL || !fxb_grant_key(key, FXB_KEY_ID_MAX + 16, gids[i]))
            return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                               "a grant id cannot form a key");
        argv[0] = "HMGET";
        argv[1] = key;
        for (size_t f = 0; f < N_FIELDS; f++)
            argv[2 + f] = field_names[f];
        cmds[i].argc = N_FIELDS + 2;
        cmds[i].argv = argv;
        cmds[i].argvlen = NULL;
    }
    if (fxb_store_pipeline(fxb_ctx_store(ctx), err, n, cmds, replies) != FXB_OK)
        return err->code;
    fxb_code rc = FXB_OK;
    for (size_t i = 0; i < n; i++) {
        if (replies[i] != NULL && replies[i]->type == REDIS_REPLY_ERROR && rc == FXB_OK)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY, "reading a grant failed");
        found[i] = rc == FXB_OK && parse_rec(a, gids[i], replies[i], &out[i], now);
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    }
    return rc;
}

/* One record; *found false when missing. */
static fxb_code read_rec(fxb_ctx *ctx, const char *gid, grant_rec *g, bool *found, int64_t now,
                         fxb_err *err)
{
    return read_recs(ctx, &gid, 1, g, found, now, err);
}

/* --- enterprises and people ----------------------------------------------- */

/* name and rep_account of an enterprise (arena strings, "" when absent). */
static fxb_code enterprise_read(fxb_ctx *ctx, const char *eid, const char **name, const char **rep,
                                fxb_err *err)
{
    *name = *rep = "";
    const char *ekey = fxb_key_owned(fxb_ctx_arena(ctx), "e", eid, "enterprise");
    if (ekey == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                           "an enterprise id cannot form a key");
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), err, "HMGET %s name rep_account", ekey);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        *name = dup_field(fxb_ctx_arena(ctx), r->element[0]);
        *rep = dup_field(fxb_ctx_arena(ctx), r->element[1]);
        if (*name == NULL || *rep == NULL) {
            *name = *rep = "";
            rc =
                fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
        }
    }
    freeReplyObject(r);
    return rc;
}

/* The caller's sides of a grant. The principal side of an enterprise is its
 * current legal representative. */
static fxb_code sides_of(fxb_ctx *ctx, const grant_rec *g, bool *principal, bool *agent,
                         fxb_err *err)
{
    const char *me = fxb_ctx_caller(ctx)->account_id;
    *agent = strcmp(g->agent, me) == 0;
    *principal = false;
    if (!g->enterprise) {
        *principal = strcmp(g->principal, me) == 0;
        return FXB_OK;
    }
    const char *name, *rep;
    fxb_code rc = enterprise_read(ctx, g->principal, &name, &rep, err);
    if (rc == FXB_OK)
        *principal = rep[0] != '\0' && strcmp(rep, me) == 0;
    return rc;
}

/* A person named by phone or ID number whose account holds at least
 * min_level: FXB_OK with *acc filled, or NOT_FOUND with not_found as the
 * reason (also for a lower level), or the input's INVALID_ARGUMENT. */
static fxb_code person_lookup(fxb_ctx *ctx, const Fxb__V1__PersonRef *ref, const char *what,
                              const char *not_found, int min_level, int64_t now, fxb_account *acc,
                              fxb_err *err)
{
    fxb_store *st = fxb_ctx_store(ctx);
    if (ref == NULL || ref->who_case == FXB__V1__PERSON_REF__WHO__NOT_SET)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT,
                           strcmp(what, "agent") == 0 ? "AGENT_REQUIRED" : "PRINCIPAL_REQUIRED",
                           "请填写对方的手机号码或身份证号码",
                           "the %s must be named by phone or ID number", what);
    fxb_code rc;
    if (ref->who_case == FXB__V1__PERSON_REF__WHO_PHONE) {
        char phone[FXB_PHONE_LEN + 1];
        rc = fxb_phone_normalize(ref->phone, phone, err);
        if (rc == FXB_OK)
            rc = fxb_account_by_phone(st, deps.crypto, phone, acc, err);
        OPENSSL_cleanse(phone, sizeof phone);
    } else {
        fxb_idnumber num;
        char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1] = "";
        rc = fxb_idnumber_check(ref->id_number, fxb_idv_today(now), &num, err);
        if (rc == FXB_OK)
            rc = fxb_crypto_index(deps.crypto, LABEL_ID, num.id, idx, err);
        OPENSSL_cleanse(&num, sizeof num);
        if (rc != FXB_OK)
            return rc;
        redisReply *r = fxb_store_command(st, err, "GET " ID_IDX_PREFIX "%s", idx);
        if (r == NULL)
            return err->code;
        char id[FXB_ID_MAX + 1] = "";
        if (r->type == REDIS_REPLY_STRING && r->len <= FXB_ID_MAX)
            memcpy(id, r->str, r->len + 1);
        freeReplyObject(r);
        if (!fxb_key_id_valid(id))
            rc = fxb_err_set(err, FXB_NOT_FOUND, "ACCOUNT_NOT_FOUND", "", "no account");
        else
            rc = fxb_account_get(st, id, acc, err);
    }
    /* not verified enough reads as unknown: the call reveals no more */
    if (rc == FXB_OK && acc->level < min_level)
        rc = FXB_NOT_FOUND;
    if (rc == FXB_NOT_FOUND)
        return fxb_err_set(err, FXB_NOT_FOUND, not_found,
                           strcmp(what, "agent") == 0 ? "未找到该代办人的实名认证账号"
                                                      : "未找到该委托人的账号",
                           "no %saccount matches the %s",
                           min_level >= FXB_LEVEL_REAL_NAME ? "real-name verified " : "", what);
    return rc;
}

/* The account's verified birth date shows an adult (18+) today (China
 * Standard Time). self: the caller is the agent (messages say "you"). */
static fxb_code adult_check(fxb_ctx *ctx, const char *account, bool self, int64_t now, fxb_err *err)
{
    const char *ikey = fxb_key_owned(fxb_ctx_arena(ctx), "u", account, "identity");
    if (ikey == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                           "an account id cannot form a key");
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), err, "HGET %s birth_date", ikey);
    if (r == NULL)
        return err->code;
    int64_t birth = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    if (!fxb_idnumber_date_valid(birth))
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, R_NOT_VERIFIED,
                           self ? "请先完成实名认证后再作为代办人" : "代办人尚未完成实名认证",
                           "the agent has no verified identity (real-name verification, L2)");
    int age = fxb_age_on(birth, fxb_idv_today(now));
    if (age < ADULT_AGE)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, R_UNDERAGE,
                           self ? "未满18周岁不能作为代办人" : "代办人须年满18周岁",
                           "the agent must be at least %d years old", ADULT_AGE);
    return FXB_OK;
}

/* --- request checks ------------------------------------------------------- */

typedef struct grant_terms {
    char scope[FXB_SCOPE_TEXT_MAX + 1];
    int64_t valid_from, valid_until, pending_until;
    const char *purpose;
} grant_terms;

static fxb_code terms_check(fxb_ctx *ctx, char **scopes, size_t n_scopes, int64_t from,
                            int64_t until, const char *purpose, int64_t now, grant_terms *t)
{
    fxb_err err;
    if (fxb_scope_canonical((const char *const *)scopes, n_scopes, t->scope, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    t->valid_from = from == 0 ? now : from;
    if (t->valid_from < now - PAST_SLACK_MS || t->valid_from > now + FXB_GRANT_LIFETIME_MAX_MS)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_VALIDITY, "授权生效时间不正确",
                            "valid_from_ms may be at most a minute in the past and at most a "
                            "year ahead");
    t->valid_until = until == 0 ? t->valid_from + FXB_GRANT_DEFAULT_MS : until;
    if (t->valid_until <= t->valid_from || t->valid_until <= now ||
        t->valid_until > t->valid_from + FXB_GRANT_LIFETIME_MAX_MS)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_VALIDITY, "授权有效期不正确，最长一年",
                            "valid_until_ms must be after valid_from_ms and now, and at most "
                            "%lld days after valid_from_ms",
                            (long long)(FXB_GRANT_LIFETIME_MAX_MS / (24LL * 3600 * 1000)));
    t->pending_until = now + FXB_GRANT_PENDING_MAX_MS;
    if (t->pending_until > t->valid_until)
        t->pending_until = t->valid_until;
    long chars = purpose ? fxb_text_chars_max(purpose, 4 * PURPOSE_MAX) : 0;
    if (chars < 1 || chars > PURPOSE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_PURPOSE, "请填写授权事由（1至200个字符）",
                            "purpose must be 1..%d characters of UTF-8 text without control "
                            "characters",
                            PURPOSE_MAX);
    t->purpose = purpose;
    return FXB_OK;
}

static fxb_code reason_check(fxb_ctx *ctx, const char *reason)
{
    long chars = reason ? fxb_text_chars_max(reason, 4 * REASON_MAX) : 0;
    if (chars < 0 || chars > REASON_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_REASON, "原因最多200个字符",
                            "reason must be 0..%d characters of UTF-8 text without control "
                            "characters",
                            REASON_MAX);
    return FXB_OK;
}

static fxb_code gid_check(fxb_ctx *ctx, const char *gid)
{
    if (!gid_valid(gid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_GRANT_ID_INVALID, "授权编号不正确",
                            "grant_id must be %d characters of base64url", GID_LEN);
    return FXB_OK;
}

static fxb_code page_size_check(fxb_ctx *ctx, uint32_t in, size_t *out)
{
    if (in > PAGE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_PAGE_SIZE, "每页条数最多100",
                            "page_size must be 1..%d (0 = %d)", PAGE_MAX, PAGE_DEFAULT);
    *out = in == 0 ? PAGE_DEFAULT : in;
    return FXB_OK;
}

static fxb_code page_token_bad(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_PAGE_TOKEN, "分页标记无效，请从第一页重新查询",
                        "page_token is not one this method returned");
}

/* --- the Grant message ---------------------------------------------------- */

static Fxb__V1__GrantSide side_of_caller(bool principal, bool agent)
{
    if (principal)
        return FXB__V1__GRANT_SIDE__GRANT_SIDE_PRINCIPAL;
    return agent ? FXB__V1__GRANT_SIDE__GRANT_SIDE_AGENT
                 : FXB__V1__GRANT_SIDE__GRANT_SIDE_UNSPECIFIED;
}

/* Splits a canonical scope string into an arena array. */
static bool scope_words(fxb_arena *a, const char *scope, char ***out, size_t *n)
{
    size_t len = strlen(scope);
    char *buf = fxb_arena_alloc(a, len + 1);
    const char **words = fxb_arena_calloc(a, FXB_SCOPE_MAX_WORDS, sizeof *words);
    if (buf == NULL || words == NULL)
        return false;
    *n = fxb_scope_split(scope, buf, len + 1, words, FXB_SCOPE_MAX_WORDS);
    *out = (char **)words;
    return true;
}

static bool fill_grant(fxb_arena *a, const grant_rec *g, Fxb__V1__GrantSide my_side,
                       Fxb__V1__Grant *m)
{
    m->grant_id = (char *)g->gid;
    m->principal_id = (char *)g->principal;
    m->principal_kind = g->enterprise ? FXB__V1__PRINCIPAL_KIND__PRINCIPAL_KIND_ENTERPRISE
                                      : FXB__V1__PRINCIPAL_KIND__PRINCIPAL_KIND_PERSON;
    m->principal_label = (char *)g->principal_label;
    m->agent_id = (char *)g->agent;
    m->agent_label = (char *)g->agent_label;
    if (!scope_words(a, g->scope, &m->scopes, &m->n_scopes))
        return false;
    m->valid_from_ms = g->valid_from;
    m->valid_until_ms = g->valid_until;
    bool pending = g->eff->live && g->eff->status != FXB__V1__GRANT_STATUS__GRANT_STATUS_ACTIVE;
    m->pending_until_ms = pending ? g->pending_until : 0;
    m->purpose = (char *)g->purpose;
    m->status = g->eff->status;
    m->initiated_by = strcmp(g->initiated_by, "agent") == 0
                          ? FXB__V1__GRANT_SIDE__GRANT_SIDE_AGENT
                          : FXB__V1__GRANT_SIDE__GRANT_SIDE_PRINCIPAL;
    m->created_at_ms = g->created_at;
    m->ended_at_ms = g->eff->live ? 0 : g->ended_at;
    m->end_reason = (char *)(g->eff->live ? "" : g->end_reason);
    m->notify_activity = g->notify;
    m->my_side = my_side;
    return true;
}

/* --- indexes -------------------------------------------------------------- */

typedef struct side_keys {
    const char *live, *ended, *dedupe; /* dedupe: principal side only */
} side_keys;

static bool keys_of(fxb_ctx *ctx, const char *subject, bool principal, side_keys *k)
{
    k->live = subject_key(ctx, subject, principal ? "grants:principal" : "grants:agent");
    k->ended =
        subject_key(ctx, subject, principal ? "grants:principal:ended" : "grants:agent:ended");
    k->dedupe = principal ? subject_key(ctx, subject, "grants:dedupe") : "";
    return k->live != NULL && k->ended != NULL && k->dedupe != NULL;
}

static const char *dedupe_field(fxb_arena *a, const char *agent, const char *scope)
{
    return fxb_arena_printf(a, "%s %s", agent, scope);
}

/* Moves a grant to the ended indexes of both sides (idempotent). */
static fxb_code end_indexes(fxb_ctx *ctx, const grant_rec *g, int64_t ended_at, fxb_err *err)
{
    side_keys pk, ak;
    const char *field = dedupe_field(fxb_ctx_arena(ctx), g->agent, g->scope);
    if (!keys_of(ctx, g->principal, true, &pk) || !keys_of(ctx, g->agent, false, &ak) ||
        field == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    char at[24];
    text_of(at, sizeof at, ended_at);
    const char *pkeys[] = {pk.live, pk.ended, pk.dedupe};
    const char *pargs[] = {g->gid, at, field};
    redisReply *r =
        fxb_store_eval(fxb_ctx_store(ctx), err, &end_index_script, 3, pkeys, 3, pargs, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    const char *akeys[] = {ak.live, ak.ended};
    const char *aargs[] = {g->gid, at};
    r = fxb_store_eval(fxb_ctx_store(ctx), err, &end_index_script, 2, akeys, 2, aargs, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}

/* A grant read as ended while its record or indexes say live: records the
 * expiry (when the record is still live) and moves the indexes. */
static fxb_code settle_store(fxb_ctx *ctx, const grant_rec *g, int64_t now, fxb_err *err)
{
    if (g->eff->live)
        return FXB_OK;
    int64_t ended_at = g->ended_at;
    if (g->stored->live) {
        char gkey[FXB_KEY_ID_MAX + 16], akey[FXB_KEY_ID_MAX + 16], now_text[24], ret[24];
        if (!fxb_grant_key(gkey, sizeof gkey, g->gid) ||
            !fxb_grant_activity_key(akey, sizeof akey, g->gid))
            return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                               "a grant id cannot form a key");
        text_of(now_text, sizeof now_text, now);
        text_of(ret, sizeof ret, FXB_GRANT_RETENTION_MS);
        const char *keys[] = {gkey, akey};
        const char *args[] = {now_text, ret};
        redisReply *r =
            fxb_store_eval(fxb_ctx_store(ctx), err, &expire_script, 2, keys, 2, args, NULL);
        if (r == NULL)
            return err->code;
        bool expired = r->type == REDIS_REPLY_STRING;
        if (expired)
            ended_at = strtoll(r->str, NULL, 10);
        freeReplyObject(r);
        if (!expired)
            return FXB_OK; /* changed meanwhile: whoever changed it moves the indexes */
    }
    return end_indexes(ctx, g, ended_at, err);
}

/* --- creating a grant ----------------------------------------------------- */

typedef struct new_grant {
    const char *principal;
    bool enterprise;
    const char *principal_label;
    const char *agent;
    const char *agent_label;
    bool by_agent; /* RequestGrant */
    bool notify;
    const grant_terms *terms;
} new_grant;

static void unreserve(fxb_store *st, const side_keys *k, const char *gid, const char *field)
{
    fxb_err err;
    const char *keys[] = {k->live, k->dedupe};
    const char *args[] = {gid, field};
    int n = field != NULL ? 2 : 1;
    redisReply *r = fxb_store_eval(st, &err, &unreserve_script, n, keys, n, args, NULL);
    if (r != NULL)
        freeReplyObject(r);
}

static void delete_key(fxb_store *st, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(st, &err, "DEL %s", key);
    if (r != NULL)
        freeReplyObject(r);
}

static fxb_code create_grant(fxb_ctx *ctx, const new_grant *ng, int64_t now, Fxb__V1__Grant *resp)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    const char *me = fxb_ctx_caller(ctx)->account_id;
    const grant_terms *t = ng->terms;
    fxb_err err;
    char gid[FXB_TOKEN_ID_MAX + 1], gkey[FXB_KEY_ID_MAX + 16];
    if (fxb_token_new_id(gid, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    side_keys pk, ak;
    const char *field = dedupe_field(a, ng->agent, t->scope);
    if (!fxb_grant_key(gkey, sizeof gkey, gid) || !keys_of(ctx, ng->principal, true, &pk) ||
        !keys_of(ctx, ng->agent, false, &ak) || field == NULL)
        return key_failed(ctx);

    char score[24], now_text[24], cutoff[24], pmax[8], amax[8];
    text_of(score, sizeof score, t->pending_until);
    text_of(now_text, sizeof now_text, now);
    text_of(cutoff, sizeof cutoff, now - FXB_GRANT_RETENTION_MS);
    snprintf(pmax, sizeof pmax, "%d", FXB_GRANT_MAX_PER_PRINCIPAL);
    snprintf(amax, sizeof amax, "%d", FXB_GRANT_MAX_PER_AGENT);

    /* 1. the principal's side: duplicate, then its limit */
    const char *pkeys[] = {pk.live, pk.ended, pk.dedupe};
    const char *pargs[] = {gid, score, now_text, pmax, field, cutoff};
    redisReply *r = fxb_store_eval(st, &err, &reserve_principal_script, 3, pkeys, 6, pargs, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, R_DUPLICATE) == 0)
            snprintf(err.message_zh, sizeof err.message_zh,
                     "已有相同的代办授权（同一委托人、代办人和授权范围）正在生效或等待确认");
        else if (strcmp(err.reason, R_PRINCIPAL_TOO_MANY) == 0)
            snprintf(err.message_zh, sizeof err.message_zh,
                     "委托人最多同时有%d项生效或待确认的代办授权", FXB_GRANT_MAX_PER_PRINCIPAL);
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);

    /* 2. the agent's side: its limit */
    const char *akeys[] = {ak.live, ak.ended};
    const char *aargs[] = {gid, score, now_text, amax, cutoff};
    r = fxb_store_eval(st, &err, &reserve_agent_script, 2, akeys, 5, aargs, NULL);
    if (r == NULL) {
        unreserve(st, &pk, gid, field);
        if (strcmp(err.reason, R_AGENT_TOO_MANY) == 0)
            snprintf(err.message_zh, sizeof err.message_zh,
                     "代办人最多同时有%d项生效或待确认的代办授权", FXB_GRANT_MAX_PER_AGENT);
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);

    /* 3. the record */
    char from[24], until[24], pending[24], pexp[24];
    text_of(from, sizeof from, t->valid_from);
    text_of(until, sizeof until, t->valid_until);
    text_of(pending, sizeof pending, t->pending_until);
    text_of(pexp, sizeof pexp, t->pending_until + FXB_GRANT_RETENTION_MS);
    const char *fields[][2] = {
        {"principal", ng->principal},
        {"principal_kind", ng->enterprise ? "enterprise" : "person"},
        {"principal_label", ng->principal_label},
        {"agent", ng->agent},
        {"agent_label", ng->agent_label},
        {"scope", t->scope},
        {"purpose", t->purpose},
        {"status", ng->by_agent ? "pending_principal" : "pending_agent"},
        {"initiated_by", ng->by_agent ? "agent" : "principal"},
        {"created_at_ms", now_text},
        {"valid_from_ms", from},
        {"valid_until_ms", until},
        {"pending_until_ms", pending},
        {"approved_by", ng->by_agent ? "" : me},
        {"notify_activity", ng->notify ? "1" : "0"},
    };
    enum { N_PAIRS = sizeof fields / sizeof fields[0] };
    const char *args[1 + 2 * N_PAIRS];
    args[0] = pexp;
    for (size_t i = 0; i < N_PAIRS; i++) {
        args[1 + 2 * i] = fields[i][0];
        args[2 + 2 * i] = fields[i][1];
    }
    const char *gkeys[] = {gkey};
    r = fxb_store_eval(st, &err, &create_script, 1, gkeys, 1 + 2 * N_PAIRS, args, NULL);
    if (r == NULL) {
        unreserve(st, &ak, gid, NULL);
        unreserve(st, &pk, gid, field);
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);

    /* 4. the audit record: no grant without one */
    const char *other = ng->by_agent ? ng->principal : ng->agent;
    const char *why = fxb_arena_printf(a, "grant %s", gid);
    if (why == NULL ||
        fxb_audit_append(st, me, other, ng->by_agent ? "proxy.request" : "proxy.offer", why, now,
                         &err) != FXB_OK) {
        delete_key(st, gkey);
        unreserve(st, &ak, gid, NULL);
        unreserve(st, &pk, gid, field);
        if (why == NULL)
            return out_of_memory(ctx);
        return fxb_ctx_fail_err(ctx, &err);
    }

    /* 5. the other side's inbox */
    if (ng->by_agent) {
        const char *body =
            fxb_arena_printf(a, "%s 申请作为您的代办人，请在7日内同意或拒绝。", ng->agent_label);
        notify(ctx, ng->principal, "proxy.requested", "您收到一项代办授权申请", body ? body : "",
               gid, now);
    } else {
        const char *body =
            fxb_arena_printf(a, "%s 邀请您作为代办人，请在7日内接受或拒绝。", ng->principal_label);
        notify(ctx, ng->agent, "proxy.offered", "您收到一项代办授权邀请", body ? body : "", gid,
               now);
    }

    grant_rec g;
    bool found = false;
    if (read_rec(ctx, gid, &g, &found, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (!found)
        return grant_not_found(ctx);
    if (!fill_grant(a, &g,
                    ng->by_agent ? FXB__V1__GRANT_SIDE__GRANT_SIDE_AGENT
                                 : FXB__V1__GRANT_SIDE__GRANT_SIDE_PRINCIPAL,
                    resp))
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- OfferGrant ----------------------------------------------------------- */

static fxb_code offer_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                            ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OfferGrantRequest *req = (const Fxb__V1__OfferGrantRequest *)req_msg;
    Fxb__V1__Grant *resp = (Fxb__V1__Grant *)resp_msg;
    if (!deps_set || deps.crypto == NULL)
        return not_configured(ctx);
    const char *me = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;

    if (req->agent == NULL || req->agent->who_case == FXB__V1__PERSON_REF__WHO__NOT_SET)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "AGENT_REQUIRED",
                            "请填写代办人的手机号码或身份证号码",
                            "agent must name a person by phone or ID number");
    const char *eid = req->enterprise_id ? req->enterprise_id : "";
    if (eid[0] != '\0' && !eid_valid(eid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_EID_INVALID, "企业标识无效",
                            "enterprise_id must be \"e\" followed by %d lower-case hex digits",
                            FXB_ENTERPRISE_ID_HEX);
    grant_terms terms;
    fxb_code rc = terms_check(ctx, req->scopes, req->n_scopes, req->valid_from_ms,
                              req->valid_until_ms, req->purpose, now, &terms);
    if (rc != FXB_OK)
        return rc;

    /* the principal: the caller, or an enterprise it represents */
    new_grant ng = {.principal = me, .terms = &terms, .notify = req->notify_activity};
    if (eid[0] != '\0') {
        const char *name, *rep;
        if (enterprise_read(ctx, eid, &name, &rep, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        if (rep[0] == '\0' || strcmp(rep, me) != 0)
            return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_ENTERPRISE_NOT_LEGAL_REP,
                                "您不是该企业已绑定的法定代表人",
                                "the caller is not the bound legal representative of this "
                                "enterprise");
        ng.principal = eid;
        ng.enterprise = true;
        ng.principal_label = name;
    } else {
        fxb_account mine;
        if (fxb_account_get(st, me, &mine, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        ng.principal_label = fxb_arena_strdup(fxb_ctx_arena(ctx), mine.masked_phone);
    }

    /* the agent */
    fxb_account agent;
    if (person_lookup(ctx, req->agent, "agent", R_AGENT_NOT_FOUND, FXB_LEVEL_REAL_NAME, now, &agent,
                      &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (strcmp(agent.id, me) == 0)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_SELF_GRANT, "不能授权给自己",
                            "a grant to oneself is not possible");
    if (adult_check(ctx, agent.id, false, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    ng.agent = fxb_arena_strdup(fxb_ctx_arena(ctx), agent.id);
    ng.agent_label = fxb_arena_strdup(fxb_ctx_arena(ctx), agent.masked_phone);
    if (ng.principal_label == NULL || ng.agent == NULL || ng.agent_label == NULL)
        return out_of_memory(ctx);
    return create_grant(ctx, &ng, now, resp);
}

/* --- RequestGrant --------------------------------------------------------- */

static fxb_code request_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RequestGrantRequest *req = (const Fxb__V1__RequestGrantRequest *)req_msg;
    Fxb__V1__Grant *resp = (Fxb__V1__Grant *)resp_msg;
    if (!deps_set || deps.crypto == NULL)
        return not_configured(ctx);
    const char *me = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;

    char code[FXB_USCC_LEN + 1] = "";
    switch (req->principal_case) {
    case FXB__V1__REQUEST_GRANT_REQUEST__PRINCIPAL_PERSON:
        if (req->person == NULL || req->person->who_case == FXB__V1__PERSON_REF__WHO__NOT_SET)
            return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PRINCIPAL_REQUIRED",
                                "请填写委托人的手机号码或身份证号码",
                                "person must name the principal by phone or ID number");
        break;
    case FXB__V1__REQUEST_GRANT_REQUEST__PRINCIPAL_CREDIT_CODE: {
        /* as typed: lower case is upper-cased (as BindEnterprise does) */
        const char *in = req->credit_code ? req->credit_code : "";
        if (strnlen(in, FXB_USCC_LEN + 1) > FXB_USCC_LEN)
            in = "";
        size_t n = 0;
        for (; in[n] != '\0'; n++)
            code[n] = (in[n] >= 'a' && in[n] <= 'z') ? (char)(in[n] - 'a' + 'A') : in[n];
        code[n] = '\0';
        if (fxb_uscc_check(code, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        break;
    }
    default:
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PRINCIPAL_REQUIRED",
                            "请填写委托人的手机号码、身份证号码或企业统一社会信用代码",
                            "principal must be a person (phone or ID number) or an enterprise's "
                            "credit code");
    }
    grant_terms terms;
    fxb_code rc = terms_check(ctx, req->scopes, req->n_scopes, req->valid_from_ms,
                              req->valid_until_ms, req->purpose, now, &terms);
    if (rc != FXB_OK)
        return rc;

    /* the caller is the agent: an adult with a verified identity */
    fxb_account mine;
    if (fxb_account_get(st, me, &mine, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (adult_check(ctx, me, true, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    new_grant ng = {.agent = me,
                    .agent_label = fxb_arena_strdup(a, mine.masked_phone),
                    .by_agent = true,
                    .terms = &terms};

    /* the principal */
    if (code[0] != '\0') {
        char eid[FXB_ENTERPRISE_ID_LEN + 1];
        const char *name, *rep;
        if (fxb_enterprise_id(deps.crypto, code, eid, &err) != FXB_OK ||
            enterprise_read(ctx, eid, &name, &rep, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        if (rep[0] == '\0')
            return fxb_ctx_fail(ctx, FXB_NOT_FOUND, R_PRINCIPAL_NF,
                                "该企业尚未由法定代表人绑定，暂不能申请代办",
                                "no legal representative has bound this enterprise");
        if (strcmp(rep, me) == 0)
            return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_SELF_GRANT,
                                "您是该企业的法定代表人，无需申请代办",
                                "the caller is the enterprise's own legal representative");
        ng.principal = fxb_arena_strdup(a, eid);
        ng.enterprise = true;
        ng.principal_label = name;
    } else {
        fxb_account principal;
        if (person_lookup(ctx, req->person, "principal", R_PRINCIPAL_NF, 0, now, &principal,
                          &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        if (strcmp(principal.id, me) == 0)
            return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_SELF_GRANT, "不能向自己申请代办",
                                "a grant to oneself is not possible");
        ng.principal = fxb_arena_strdup(a, principal.id);
        ng.principal_label = fxb_arena_strdup(a, principal.masked_phone);
    }
    if (ng.principal == NULL || ng.principal_label == NULL || ng.agent_label == NULL)
        return out_of_memory(ctx);
    return create_grant(ctx, &ng, now, resp);
}

/* --- transitions ---------------------------------------------------------- */

enum { BY_AGENT = 1, BY_PRINCIPAL = 2 };

typedef struct transition {
    const char *map;  /* "from=to,..." (stored words) */
    int by;           /* BY_AGENT / BY_PRINCIPAL */
    bool ends;        /* the grant ends */
    bool adult_check; /* the caller (agent) must still be an adult */
    const char *verb; /* English: "accept" */
    const char *verb_zh;
} transition;

static const transition t_accept = {
    "pending_agent=active", BY_AGENT, false, true, "accept", "接受"};
static const transition t_decline = {
    "pending_agent=declined", BY_AGENT, true, false, "decline", "拒绝"};
static const transition t_approve = {
    "pending_principal=active", BY_PRINCIPAL, false, false, "approve", "同意"};
static const transition t_reject = {
    "pending_principal=rejected", BY_PRINCIPAL, true, false, "reject", "拒绝"};
static const transition t_revoke = {
    "pending_agent=revoked,pending_principal=revoked,active=revoked",
    BY_PRINCIPAL,
    true,
    false,
    "revoke",
    "撤销"};
static const transition t_resign = {"active=resigned,pending_principal=withdrawn",
                                    BY_AGENT,
                                    true,
                                    false,
                                    "resign from",
                                    "辞任或撤回"};
static const transition t_notice = {
    "pending_agent=pending_agent,pending_principal=pending_principal,active=active",
    BY_PRINCIPAL,
    false,
    false,
    "change",
    "修改"};

/* What follows a status change: audit action, notice to the other side. */
typedef struct outcome {
    const char *to;     /* new stored status */
    const char *action; /* audit */
    const char *kind;   /* inbox */
    const char *title;
    const char *body_pre, *body_post; /* around the actor's label */
} outcome;

static const outcome outcomes[] = {
    {"active", NULL, NULL, NULL, NULL, NULL}, /* accept / approve: by the side, below */
    {"declined", "proxy.decline", "proxy.declined", "代办授权邀请被拒绝", "",
     " 拒绝了您的代办授权邀请。"},
    {"rejected", "proxy.reject", "proxy.rejected", "代办授权申请未获同意", "",
     " 拒绝了您的代办授权申请。"},
    {"revoked", "proxy.revoke", "proxy.revoked", "代办授权已被撤销", "",
     " 撤销了对您的代办授权，自即刻起您不能再代其办理。"},
    {"resigned", "proxy.resign", "proxy.resigned", "代办人已辞任", "您的代办人 ",
     " 已辞去代办授权。"},
    {"withdrawn", "proxy.withdraw", "proxy.withdrawn", "代办授权申请已撤回", "",
     " 撤回了代办授权申请。"},
};

static const outcome *outcome_of(const char *to)
{
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
        if (strcmp(outcomes[i].to, to) == 0)
            return &outcomes[i];
    return NULL;
}

/* Rewrites the script's GRANT_STATE error (its last word is the status). */
static void state_error(fxb_err *err, const transition *t)
{
    const char *sp = strrchr(err->message, ' ');
    const status_info *s = status_by_word(sp ? sp + 1 : err->message);
    if (s == NULL)
        return;
    char zh[FXB_ERR_MESSAGE_MAX];
    snprintf(zh, sizeof zh, "该授权当前状态为“%s”，无法%s", s->zh, t->verb_zh);
    fxb_err_set(err, FXB_FAILED_PRECONDITION, R_GRANT_STATE, zh,
                "the grant's current status is %s: cannot %s it", s->name, t->verb);
}

/* Loads a grant for the caller: NOT_FOUND unless the caller is a party.
 * *principal / *agent tell its sides. On failure the call has failed. */
static fxb_code load_for_caller(fxb_ctx *ctx, const char *gid, int64_t now, grant_rec *g,
                                bool *principal, bool *agent)
{
    fxb_code rc = gid_check(ctx, gid);
    if (rc != FXB_OK)
        return rc;
    fxb_err err;
    bool found = false;
    if (read_rec(ctx, gid, g, &found, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    /* past its retention a grant is gone, whichever clock deletes it first */
    if (!found || (!g->eff->live && g->ended_at + FXB_GRANT_RETENTION_MS <= now))
        return grant_not_found(ctx);
    if (sides_of(ctx, g, principal, agent, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (!*principal && !*agent)
        return grant_not_found(ctx);
    return FXB_OK;
}

static fxb_code wrong_side(fxb_ctx *ctx, const transition *t)
{
    if (t->by == BY_AGENT)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, R_WRONG_SIDE, "只有代办人可以执行此操作",
                            "only the grant's agent may %s it", t->verb);
    return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, R_WRONG_SIDE,
                        "只有委托人（或企业的法定代表人）可以执行此操作",
                        "only the grant's principal (or the enterprise's legal representative) "
                        "may %s it",
                        t->verb);
}

/* Runs transition t on grant gid for the caller. reason: end reason text
 * ("" = the new status word); notify_value: "" keep, "1" / "0". */
static fxb_code run_transition(fxb_ctx *ctx, const char *gid, const char *reason,
                               const char *notify_value, const transition *t, Fxb__V1__Grant *resp)
{
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *me = fxb_ctx_caller(ctx)->account_id;
    int64_t now = fxb_wall_ms();
    fxb_err err;
    if (reason == NULL)
        reason = "";
    fxb_code rc = reason_check(ctx, reason);
    if (rc != FXB_OK)
        return rc;
    grant_rec g;
    bool is_principal, is_agent;
    rc = load_for_caller(ctx, gid, now, &g, &is_principal, &is_agent);
    if (rc != FXB_OK)
        return rc;
    if ((t->by == BY_AGENT && !is_agent) || (t->by == BY_PRINCIPAL && !is_principal))
        return wrong_side(ctx, t);
    if (t->adult_check && adult_check(ctx, me, true, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);

    char gkey[FXB_KEY_ID_MAX + 16], akey[FXB_KEY_ID_MAX + 16], now_text[24], ret[24];
    if (!fxb_grant_key(gkey, sizeof gkey, gid) || !fxb_grant_activity_key(akey, sizeof akey, gid))
        return key_failed(ctx);
    text_of(now_text, sizeof now_text, now);
    text_of(ret, sizeof ret, FXB_GRANT_RETENTION_MS);
    bool approve = t == &t_approve;
    const char *keys[] = {gkey, akey};
    const char *args[] = {now_text,          t->map,      t->ends ? "1" : "0", reason, ret,
                          approve ? me : "", notify_value};
    redisReply *r = fxb_store_eval(st, &err, &transition_script, 2, keys, 7, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, R_GRANT_STATE) == 0) {
            fxb_err serr;
            if (!g.eff->live && settle_store(ctx, &g, now, &serr) != FXB_OK)
                fxb_log(FXB_LOG_WARN, "proxy: settling an expired grant failed: %s", serr.reason);
            state_error(&err, t);
        } else if (strcmp(err.reason, R_GRANT_NOT_FOUND) == 0) {
            return grant_not_found(ctx);
        }
        return fxb_ctx_fail_err(ctx, &err);
    }
    char from[24] = "", to[24] = "";
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(from, sizeof from, "%s", r->element[0]->str);
        snprintf(to, sizeof to, "%s", r->element[1]->str);
    }
    freeReplyObject(r);

    /* the indexes follow the record */
    if (t->ends) {
        if (end_indexes(ctx, &g, now, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
    } else if (strcmp(to, "active") == 0 && strcmp(from, "active") != 0) {
        side_keys pk, ak;
        char score[24];
        text_of(score, sizeof score, g.valid_until);
        if (!keys_of(ctx, g.principal, true, &pk) || !keys_of(ctx, g.agent, false, &ak))
            return key_failed(ctx);
        const char *zp[] = {"ZADD", pk.live, "XX", score, gid};
        const char *za[] = {"ZADD", ak.live, "XX", score, gid};
        fxb_store_cmd cmds[] = {{5, zp, NULL}, {5, za, NULL}};
        redisReply *rs[2] = {NULL, NULL};
        rc = fxb_store_pipeline(st, &err, 2, cmds, rs);
        for (size_t i = 0; i < 2; i++)
            if (rs[i] != NULL)
                freeReplyObject(rs[i]);
        if (rc != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
    }

    /* audit and the other side's notice */
    const char *action = NULL, *kind = NULL, *title = NULL, *body = NULL, *to_whom;
    to_whom = t->by == BY_AGENT ? g.principal : g.agent;
    const char *actor_label = t->by == BY_AGENT ? g.agent_label : g.principal_label;
    if (t == &t_notice) {
        action = "proxy.notice";
    } else if (t == &t_accept) {
        action = "proxy.accept";
        kind = "proxy.accepted";
        title = "代办授权已生效";
        body = fxb_arena_printf(a, "%s 接受了您的代办授权邀请，授权已生效。", actor_label);
    } else if (approve) {
        action = "proxy.approve";
        kind = "proxy.approved";
        title = "代办授权申请已同意";
        body = fxb_arena_printf(a, "%s 同意了您的代办授权申请，授权已生效。", actor_label);
    } else {
        const outcome *o = outcome_of(to);
        if (o != NULL && o->action != NULL) {
            action = o->action;
            kind = o->kind;
            title = o->title;
            body = fxb_arena_printf(a, "%s%s%s", o->body_pre, actor_label, o->body_post);
        }
    }
    const char *why = fxb_arena_printf(a, "grant %s", gid);
    if (action != NULL && fxb_audit_append(st, me, t->by == BY_AGENT ? g.principal : g.agent,
                                           action, why ? why : "", now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (kind != NULL)
        notify(ctx, to_whom, kind, title, body ? body : "", gid, now);

    bool found = false;
    if (read_rec(ctx, gid, &g, &found, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (!found)
        return grant_not_found(ctx);
    if (!fill_grant(a, &g, side_of_caller(t->by == BY_PRINCIPAL, t->by == BY_AGENT), resp))
        return out_of_memory(ctx);
    return FXB_OK;
}

static fxb_code accept_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GrantRef *req = (const Fxb__V1__GrantRef *)req_msg;
    return run_transition(ctx, req->grant_id, "", "", &t_accept, (Fxb__V1__Grant *)resp_msg);
}

static fxb_code decline_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GrantRef *req = (const Fxb__V1__GrantRef *)req_msg;
    const char *reason = req->reason ? req->reason : "";
    return run_transition(ctx, req->grant_id, reason, "", &t_decline, (Fxb__V1__Grant *)resp_msg);
}

static fxb_code approve_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ApproveGrantRequest *req = (const Fxb__V1__ApproveGrantRequest *)req_msg;
    return run_transition(ctx, req->grant_id, "", req->notify_activity ? "1" : "0", &t_approve,
                          (Fxb__V1__Grant *)resp_msg);
}

static fxb_code reject_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GrantRef *req = (const Fxb__V1__GrantRef *)req_msg;
    const char *reason = req->reason ? req->reason : "";
    return run_transition(ctx, req->grant_id, reason, "", &t_reject, (Fxb__V1__Grant *)resp_msg);
}

static fxb_code revoke_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GrantRef *req = (const Fxb__V1__GrantRef *)req_msg;
    const char *reason = req->reason ? req->reason : "";
    return run_transition(ctx, req->grant_id, reason, "", &t_revoke, (Fxb__V1__Grant *)resp_msg);
}

static fxb_code resign_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GrantRef *req = (const Fxb__V1__GrantRef *)req_msg;
    const char *reason = req->reason ? req->reason : "";
    return run_transition(ctx, req->grant_id, reason, "", &t_resign, (Fxb__V1__Grant *)resp_msg);
}

static fxb_code set_activity_notice(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                    ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SetActivityNoticeRequest *req =
        (const Fxb__V1__SetActivityNoticeRequest *)req_msg;
    return run_transition(ctx, req->grant_id, "", req->notify_activity ? "1" : "0", &t_notice,
                          (Fxb__V1__Grant *)resp_msg);
}

/* --- GetGrant ------------------------------------------------------------- */

static fxb_code get_grant(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GrantRef *req = (const Fxb__V1__GrantRef *)req_msg;
    int64_t now = fxb_wall_ms();
    grant_rec g;
    bool is_principal, is_agent;
    fxb_code rc = load_for_caller(ctx, req->grant_id, now, &g, &is_principal, &is_agent);
    if (rc != FXB_OK)
        return rc;
    fxb_err err;
    if (!g.eff->live && g.stored->live && settle_store(ctx, &g, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (!fill_grant(fxb_ctx_arena(ctx), &g, side_of_caller(is_principal, is_agent),
                    (Fxb__V1__Grant *)resp_msg))
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- ListGrants ----------------------------------------------------------- */

/* Page tokens: "<created_at_ms>.<grant id>" of the last grant returned. */
static bool parse_list_token(const char *tok, int64_t *created, char gid[GID_LEN + 1])
{
    size_t len = strnlen(tok, PAGE_TOKEN_MAX + 1);
    if (len == 0 || len > PAGE_TOKEN_MAX)
        return false;
    const char *dot = strchr(tok, '.');
    if (dot == NULL || dot == tok || dot - tok > 18)
        return false;
    for (const char *p = tok; p < dot; p++)
        if (*p < '0' || *p > '9')
            return false;
    if (!gid_valid(dot + 1))
        return false;
    *created = strtoll(tok, NULL, 10);
    memcpy(gid, dot + 1, GID_LEN + 1);
    return true;
}

/* Newest first: created_at descending, then grant id descending. */
static int by_created_desc(const void *x, const void *y)
{
    const grant_rec *a = *(const grant_rec *const *)x;
    const grant_rec *b = *(const grant_rec *const *)y;
    if (a->created_at != b->created_at)
        return a->created_at > b->created_at ? -1 : 1;
    return -strcmp(a->gid, b->gid);
}

/* True when (created, gid) comes after the cursor in listing order. */
static bool after_cursor(const grant_rec *g, int64_t created, const char *gid)
{
    if (g->created_at != created)
        return g->created_at < created;
    return strcmp(g->gid, gid) < 0;
}

static bool state_wanted(Fxb__V1__GrantState state, const grant_rec *g)
{
    switch (state) {
    case FXB__V1__GRANT_STATE__GRANT_STATE_ACTIVE:
        return g->eff->status == FXB__V1__GRANT_STATUS__GRANT_STATUS_ACTIVE;
    case FXB__V1__GRANT_STATE__GRANT_STATE_PENDING:
        return g->eff->live && g->eff->status != FXB__V1__GRANT_STATUS__GRANT_STATUS_ACTIVE;
    case FXB__V1__GRANT_STATE__GRANT_STATE_ENDED:
        return !g->eff->live;
    default:
        return true;
    }
}

/* Appends the string members of a ZRANGE reply to ids (arena copies). */
static bool collect_ids(fxb_arena *a, const redisReply *r, const char **ids, size_t *n, size_t cap)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < r->elements && *n < cap; i++) {
        const redisReply *m = r->element[i];
        if (m->type != REDIS_REPLY_STRING || !gid_valid(m->str))
            continue;
        ids[*n] = fxb_arena_strdup(a, m->str);
        if (ids[*n] == NULL)
            return false;
        (*n)++;
    }
    return true;
}

static fxb_code list_grants(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                            ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListGrantsRequest *req = (const Fxb__V1__ListGrantsRequest *)req_msg;
    Fxb__V1__ListGrantsResponse *resp = (Fxb__V1__ListGrantsResponse *)resp_msg;
    const char *me = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;

    bool principal_side = req->side == FXB__V1__GRANT_SIDE__GRANT_SIDE_PRINCIPAL;
    if (!principal_side && req->side != FXB__V1__GRANT_SIDE__GRANT_SIDE_AGENT)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_SIDE_REQUIRED,
                            "请选择查看委托的授权还是代办的授权",
                            "side must be GRANT_SIDE_PRINCIPAL or GRANT_SIDE_AGENT");
    if ((unsigned)req->state > FXB__V1__GRANT_STATE__GRANT_STATE_ENDED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "STATE_INVALID", "查询条件不正确",
                            "state is not a known GrantState");
    size_t page = 0;
    fxb_code rc = page_size_check(ctx, req->page_size, &page);
    if (rc != FXB_OK)
        return rc;
    int64_t cur_created = 0;
    char cur_gid[GID_LEN + 1] = "";
    bool have_cursor = req->page_token != NULL && req->page_token[0] != '\0';
    if (have_cursor && !parse_list_token(req->page_token, &cur_created, cur_gid))
        return page_token_bad(ctx);

    const char *subject = me;
    const char *eid = req->enterprise_id ? req->enterprise_id : "";
    if (eid[0] != '\0') {
        if (!principal_side)
            return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_EID_INVALID, "企业只能作为委托人",
                                "enterprise_id applies to side GRANT_SIDE_PRINCIPAL only");
        if (!eid_valid(eid))
            return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_EID_INVALID, "企业标识无效",
                                "enterprise_id must be \"e\" followed by %d lower-case hex digits",
                                FXB_ENTERPRISE_ID_HEX);
        const char *name, *rep;
        if (enterprise_read(ctx, eid, &name, &rep, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        if (rep[0] == '\0' || strcmp(rep, me) != 0)
            return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_ENTERPRISE_NOT_LEGAL_REP,
                                "您不是该企业已绑定的法定代表人",
                                "the caller is not the bound legal representative of this "
                                "enterprise");
        subject = eid;
    }
    side_keys k;
    if (!keys_of(ctx, subject, principal_side, &k))
        return key_failed(ctx);

    /* the ids: every live one, and the newest ended ones within retention */
    bool want_ended = req->state == FXB__V1__GRANT_STATE__GRANT_STATE_UNSPECIFIED ||
                      req->state == FXB__V1__GRANT_STATE__GRANT_STATE_ENDED;
    char live_max[16], ended_max[16], cutoff[24];
    snprintf(live_max, sizeof live_max, "%d", LIVE_READ_MAX - 1);
    snprintf(ended_max, sizeof ended_max, "%d", ENDED_READ_MAX - 1);
    snprintf(cutoff, sizeof cutoff, "(%lld", (long long)(now - FXB_GRANT_RETENTION_MS));
    const char *c_live[] = {"ZRANGE", k.live, "0", live_max};
    const char *c_prune[] = {"ZREMRANGEBYSCORE", k.ended, "-inf", cutoff};
    const char *c_ended[] = {"ZREVRANGE", k.ended, "0", ended_max};
    fxb_store_cmd cmds[] = {{4, c_live, NULL}, {4, c_prune, NULL}, {4, c_ended, NULL}};
    redisReply *rs[3] = {NULL, NULL, NULL};
    size_t ncmds = want_ended ? 3 : 1;
    if (fxb_store_pipeline(st, &err, ncmds, cmds, rs) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    size_t cap = LIVE_READ_MAX + (want_ended ? ENDED_READ_MAX : 0);
    const char **ids = fxb_arena_calloc(a, cap, sizeof *ids);
    bool *from_live = fxb_arena_calloc(a, cap, sizeof *from_live);
    size_t n = 0, n_live = 0;
    bool ok = ids != NULL && from_live != NULL && rs[0] != NULL &&
              collect_ids(a, rs[0], ids, &n, LIVE_READ_MAX);
    n_live = n;
    if (ok && want_ended)
        ok = rs[2] != NULL && collect_ids(a, rs[2], ids, &n, cap);
    for (size_t i = 0; i < ncmds; i++)
        if (rs[i] != NULL)
            freeReplyObject(rs[i]);
    if (!ok)
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                            "reading the grant indexes failed");
    for (size_t i = 0; i < n_live; i++)
        from_live[i] = true;

    grant_rec *recs = fxb_arena_calloc(a, n ? n : 1, sizeof *recs);
    bool *found = fxb_arena_calloc(a, n ? n : 1, sizeof *found);
    grant_rec **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    if (recs == NULL || found == NULL || list == NULL)
        return out_of_memory(ctx);
    if (read_recs(ctx, ids, n, recs, found, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);

    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        grant_rec *g = &recs[i];
        if (!found[i] || strcmp(principal_side ? g->principal : g->agent, subject) != 0)
            continue; /* not (yet, or no longer) this subject's grant */
        if (from_live[i] && !g->eff->live) {
            /* ended meanwhile: its indexes follow now */
            if (settle_store(ctx, g, now, &err) != FXB_OK)
                return fxb_ctx_fail_err(ctx, &err);
        } else if (!from_live[i] && g->eff->live) {
            continue; /* listed as ended but live: the live index lists it */
        }
        if (!g->eff->live && g->ended_at + FXB_GRANT_RETENTION_MS <= now)
            continue;
        if (state_wanted(req->state, g))
            list[got++] = g;
    }
    qsort(list, got, sizeof *list, by_created_desc);

    /* the page: after the cursor, each id once */
    Fxb__V1__Grant **out = fxb_arena_calloc(a, page, sizeof *out);
    Fxb__V1__Grant *msgs = fxb_arena_calloc(a, page, sizeof *msgs);
    if (out == NULL || msgs == NULL)
        return out_of_memory(ctx);
    size_t m = 0;
    bool more = false;
    const char *prev = NULL;
    Fxb__V1__GrantSide side = principal_side ? FXB__V1__GRANT_SIDE__GRANT_SIDE_PRINCIPAL
                                             : FXB__V1__GRANT_SIDE__GRANT_SIDE_AGENT;
    for (size_t i = 0; i < got; i++) {
        const grant_rec *g = list[i];
        if (prev != NULL && strcmp(prev, g->gid) == 0)
            continue;
        prev = g->gid;
        if (have_cursor && !after_cursor(g, cur_created, cur_gid))
            continue;
        if (m == page) {
            more = true;
            break;
        }
        fxb__v1__grant__init(&msgs[m]);
        if (!fill_grant(a, g, side, &msgs[m]))
            return out_of_memory(ctx);
        out[m] = &msgs[m];
        m++;
    }
    resp->grants = out;
    resp->n_grants = m;
    resp->next_page_token = "";
    if (more) {
        const Fxb__V1__Grant *last = out[m - 1];
        resp->next_page_token =
            fxb_arena_printf(a, "%" PRId64 ".%s", last->created_at_ms, last->grant_id);
        if (resp->next_page_token == NULL)
            return out_of_memory(ctx);
    }
    return FXB_OK;
}

/* --- ExchangeToken -------------------------------------------------------- */

static fxb_code exchange_token(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ExchangeTokenRequest *req = (const Fxb__V1__ExchangeTokenRequest *)req_msg;
    Fxb__V1__ExchangeTokenResponse *resp = (Fxb__V1__ExchangeTokenResponse *)resp_msg;
    const fxb_auth_deps *ad = fxb_auth_deps_get();
    if (ad == NULL || ad->keyring == NULL)
        return not_configured(ctx);
    const fxb_caller *who = fxb_ctx_caller(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now_ms = fxb_wall_ms();
    fxb_err err;

    grant_rec g;
    bool is_principal, is_agent;
    fxb_code rc = load_for_caller(ctx, req->grant_id, now_ms, &g, &is_principal, &is_agent);
    if (rc != FXB_OK)
        return rc;
    if (!is_agent)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, R_WRONG_SIDE, "只有代办人可以使用该授权",
                            "only the grant's agent may exchange a token for it");
    fxb_grant_live live;
    if (fxb_grant_check_live(st, g.gid, g.principal, who->account_id, now_ms, &live, &err) !=
        FXB_OK) {
        if (!g.eff->live && g.stored->live) {
            fxb_err ignored;
            settle_store(ctx, &g, now_ms, &ignored);
        }
        return fxb_ctx_fail_err(ctx, &err);
    }

    int64_t now = now_ms / 1000;
    fxb_token_params p;
    memset(&p, 0, sizeof p);
    p.issuer = ad->issuer;
    p.audience = ad->audience;
    snprintf(p.claims.sub, sizeof p.claims.sub, "%s", g.principal);
    snprintf(p.claims.sid, sizeof p.claims.sid, "%s", who->session_id);
    snprintf(p.claims.act_sub, sizeof p.claims.act_sub, "%s", who->account_id);
    snprintf(p.claims.grant_id, sizeof p.claims.grant_id, "%s", g.gid);
    snprintf(p.claims.scope, sizeof p.claims.scope, "%s", g.scope);
    if (fxb_token_new_id(p.claims.jti, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    p.claims.iat = p.claims.nbf = now;
    p.claims.exp = now + FXB_GRANT_TOKEN_TTL_S;
    if (p.claims.exp > g.valid_until / 1000)
        p.claims.exp = g.valid_until / 1000;
    if (p.claims.exp - now < 1)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_GRANT_EXPIRED, "该代办授权已过期",
                            "the grant ends within a second");
    p.claims.auth_time = who->auth_time_s;
    if (p.claims.auth_time <= 0 || p.claims.auth_time > now)
        p.claims.auth_time = now;
    p.claims.acr = who->level;
    p.claims.roles = FXB_ROLE_CITIZEN;
    char *tok = NULL;
    if (fxb_token_sign(ad->keyring, &p, &tok, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    resp->access_token = fxb_arena_strdup(a, tok);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    if (resp->access_token == NULL)
        return out_of_memory(ctx);

    /* the exchange goes into the grant's activity log (the principal sees
     * when the agent began to act; no inbox notice for it), and is audited */
    fxb_grant_act act = {.grant_id = g.gid,
                         .principal = g.principal,
                         .agent = who->account_id,
                         .method = SVC "ExchangeToken",
                         .item = NULL,
                         .result = FXB_OK,
                         .reason = NULL,
                         .at_ms = now_ms,
                         .notify = false};
    if (fxb_grant_record_act(st, &act, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    const char *why = fxb_arena_printf(a, "grant %s", g.gid);
    if (fxb_audit_append(st, who->account_id, g.principal, "proxy.exchange", why ? why : "", now_ms,
                         &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);

    resp->expires_at_ms = p.claims.exp * 1000;
    resp->principal_id = (char *)g.principal;
    resp->grant_id = (char *)g.gid;
    if (!scope_words(a, g.scope, &resp->scopes, &resp->n_scopes))
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- ListGrantActivity ---------------------------------------------------- */

static bool stream_id_valid(const char *id)
{
    size_t len = strnlen(id, STREAM_ID_MAX + 1);
    if (len == 0 || len > STREAM_ID_MAX)
        return false;
    const char *dash = strchr(id, '-');
    if (dash == NULL || dash == id || dash[1] == '\0' || dash - id > 20 || strlen(dash + 1) > 20)
        return false;
    for (const char *p = id; *p != '\0'; p++)
        if (p != dash && (*p < '0' || *p > '9'))
            return false;
    return true;
}

static fxb_code fill_activity(fxb_arena *a, const redisReply *e, Fxb__V1__GrantActivity *m)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return FXB_DATA_LOSS;
    fxb__v1__grant_activity__init(m);
    m->activity_id = fxb_arena_strdup(a, e->element[0]->str);
    const redisReply *f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (f->element[i]->type != REDIS_REPLY_STRING ||
            f->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        const char *name = f->element[i]->str;
        const char *val = f->element[i + 1]->str;
        if (strcmp(name, "at_ms") == 0)
            m->at_ms = strtoll(val, NULL, 10);
        else if (strcmp(name, "method") == 0)
            m->method = fxb_arena_strdup(a, val);
        else if (strcmp(name, "item") == 0)
            m->item_code = fxb_arena_strdup(a, val);
        else if (strcmp(name, "result") == 0)
            m->result = fxb_arena_strdup(a, val);
        else if (strcmp(name, "reason") == 0)
            m->reason = fxb_arena_strdup(a, val);
        else if (strcmp(name, "agent") == 0)
            m->agent_id = fxb_arena_strdup(a, val);
    }
    if (m->activity_id == NULL || m->method == NULL || m->item_code == NULL || m->result == NULL ||
        m->reason == NULL || m->agent_id == NULL)
        return FXB_RESOURCE_EXHAUSTED;
    return FXB_OK;
}

static fxb_code list_grant_activity(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                    ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListGrantActivityRequest *req =
        (const Fxb__V1__ListGrantActivityRequest *)req_msg;
    Fxb__V1__ListGrantActivityResponse *resp = (Fxb__V1__ListGrantActivityResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;
    size_t page = 0;
    fxb_code rc = gid_check(ctx, req->grant_id);
    if (rc == FXB_OK)
        rc = page_size_check(ctx, req->page_size, &page);
    if (rc != FXB_OK)
        return rc;
    const char *tok = req->page_token ? req->page_token : "";
    if (tok[0] != '\0' && !stream_id_valid(tok))
        return page_token_bad(ctx);
    grant_rec g;
    bool is_principal, is_agent;
    rc = load_for_caller(ctx, req->grant_id, now, &g, &is_principal, &is_agent);
    if (rc != FXB_OK)
        return rc;

    char akey[FXB_KEY_ID_MAX + 16], count[16];
    if (!fxb_grant_activity_key(akey, sizeof akey, g.gid))
        return key_failed(ctx);
    snprintf(count, sizeof count, "%zu", page + 1);
    const char *start = tok[0] != '\0' ? fxb_arena_printf(a, "(%s", tok) : "+";
    if (start == NULL)
        return out_of_memory(ctx);
    const char *argv[] = {"XREVRANGE", akey, start, "-", "COUNT", count};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 6, argv, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                            "XREVRANGE answered in an unexpected shape");
    }
    size_t n = r->elements < page ? r->elements : page;
    Fxb__V1__GrantActivity **out = fxb_arena_calloc(a, n ? n : 1, sizeof *out);
    Fxb__V1__GrantActivity *msgs = fxb_arena_calloc(a, n ? n : 1, sizeof *msgs);
    if (out == NULL || msgs == NULL) {
        freeReplyObject(r);
        return out_of_memory(ctx);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        fxb_code frc = fill_activity(a, r->element[i], &msgs[m]);
        if (frc == FXB_RESOURCE_EXHAUSTED) {
            freeReplyObject(r);
            return out_of_memory(ctx);
        }
        if (frc == FXB_OK) {
            out[m] = &msgs[m];
            m++;
        }
    }
    bool more = r->elements > page;
    const char *last = NULL;
    if (more && n > 0 && r->element[n - 1]->type == REDIS_REPLY_ARRAY &&
        r->element[n - 1]->elements == 2 &&
        r->element[n - 1]->element[0]->type == REDIS_REPLY_STRING)
        last = fxb_arena_strdup(a, r->element[n - 1]->element[0]->str);
    freeReplyObject(r);
    resp->activity = out;
    resp->n_activity = m;
    resp->next_page_token = (char *)(last ? last : "");
    return FXB_OK;
}

/* --- method table --------------------------------------------------------- */

/* The caller's own grants, never through a delegated token: an agent cannot
 * grant what it holds. */
#define OWN(level, step_up)                                                                        \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = (level), .delegable = false,                    \
        .step_up_s = (step_up)                                                                     \
    }
#define STEP_UP_S 300

#define UNARY(name, fn, req, resp, access_rule, max)                                               \
    {                                                                                              \
        .path = SVC name, .request = &req##__descriptor, .response = &resp##__descriptor,          \
        .unary = fn, .access = access_rule, .limits = {                                            \
            .max_request_bytes = (max)                                                             \
        }                                                                                          \
    }

static const fxb_method methods[] = {
    UNARY("OfferGrant", offer_grant, fxb__v1__offer_grant_request, fxb__v1__grant,
          OWN(FXB_LEVEL_REAL_FACE, STEP_UP_S), GRANT_REQUEST),
    UNARY("RequestGrant", request_grant, fxb__v1__request_grant_request, fxb__v1__grant,
          OWN(FXB_LEVEL_REAL_NAME, 0), GRANT_REQUEST),
    UNARY("AcceptGrant", accept_grant, fxb__v1__grant_ref, fxb__v1__grant,
          OWN(FXB_LEVEL_REAL_NAME, 0), SMALL_REQUEST + 1024),
    UNARY("DeclineGrant", decline_grant, fxb__v1__grant_ref, fxb__v1__grant, OWN(0, 0),
          SMALL_REQUEST + 1024),
    UNARY("ApproveGrant", approve_grant, fxb__v1__approve_grant_request, fxb__v1__grant,
          OWN(FXB_LEVEL_REAL_FACE, STEP_UP_S), SMALL_REQUEST),
    UNARY("RejectGrant", reject_grant, fxb__v1__grant_ref, fxb__v1__grant, OWN(0, 0),
          SMALL_REQUEST + 1024),
    UNARY("RevokeGrant", revoke_grant, fxb__v1__grant_ref, fxb__v1__grant, OWN(0, 0),
          SMALL_REQUEST + 1024),
    UNARY("ResignGrant", resign_grant, fxb__v1__grant_ref, fxb__v1__grant, OWN(0, 0),
          SMALL_REQUEST + 1024),
    UNARY("GetGrant", get_grant, fxb__v1__grant_ref, fxb__v1__grant, OWN(0, 0),
          SMALL_REQUEST + 1024),
    UNARY("ListGrants", list_grants, fxb__v1__list_grants_request, fxb__v1__list_grants_response,
          OWN(0, 0), SMALL_REQUEST),
    UNARY("ExchangeToken", exchange_token, fxb__v1__exchange_token_request,
          fxb__v1__exchange_token_response, OWN(FXB_LEVEL_REAL_NAME, 0), SMALL_REQUEST),
    UNARY("ListGrantActivity", list_grant_activity, fxb__v1__list_grant_activity_request,
          fxb__v1__list_grant_activity_response, OWN(0, 0), SMALL_REQUEST),
    UNARY("SetActivityNotice", set_activity_notice, fxb__v1__set_activity_notice_request,
          fxb__v1__grant, OWN(0, 0), SMALL_REQUEST),
};

const fxb_service fxb_proxy_service = {
    .name = "fxb.v1.ProxyService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
