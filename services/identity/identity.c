/* IdentityService handlers. Keys (store/keys.h conventions):
 *   {u:<id>}:idv:challenge:<cid>  hash nonce, sid, exp (ms), used, actions;
 *                                 kept an hour past exp so that a late
 *                                 answer reads EXPIRED, not UNKNOWN
 *   {u:<id>}:idv:starts:<day>     StartVerification calls that day
 *   {u:<id>}:idv:fail:<day>       failed completions of the account
 *   fxb:idv:fail:<idx>:<day>      failed completions naming the ID number
 *                                 whose blind index is idx
 *   fxb:idnum:<idx>               the account holding the ID number
 *   {u:<id>}:identity             id_enc, name_enc (sealed), id_idx,
 *                                 birth_date (yyyymmdd, read by
 *                                 accessibility), district, verified_at_ms,
 *                                 level
 *   fxb:audit                     the audit stream (store/audit.h):
 *                                 DeleteMyIdentity appends identity.unbind
 * <day> is the count of China Standard Time days since 1970-01-01. The ID
 * number and the name are sealed before they reach Redis and never logged;
 * error messages name the check, never the value. */
#include "services/identity/identity.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/account.h"
#include "auth/idnumber.h"
#include "fxb/v1/identity.pb-c.h"
#include "services/auth/auth_service.h"
#include "store/audit.h"
#include "store/keys.h"
#include "store/store.h"

#define LABEL_ID   "id_number"
#define LABEL_NAME "real_name"

#define DAY_MS  (24LL * 3600 * 1000)
#define UTC8_MS (8LL * 3600 * 1000)

#define CID_BYTES      16 /* challenge id: 32 hex digits */
#define CID_HEX        (2 * CID_BYTES)
#define NONCE_BYTES    32 /* 43 base64url characters */
#define NONCE_B64      43
#define CHALLENGE_KEEP (3600LL * 1000) /* kept past expiry, ms */
#define COUNTER_TTL_S  (2 * 24 * 3600)
#define ID_IDX_PREFIX  "fxb:idnum:"
#define ID_FAIL_PREFIX "fxb:idv:fail:"
#define REQUEST_MAX    (FXB_ATTESTATION_MAX_LEN + 1024)
#define SMALL_REQUEST  256

#define ZH_BUSY        "系统繁忙，请稍后重试"
#define ZH_RESTART     "认证已失效，请重新开始人脸认证"
#define ZH_FAIL_LIMIT  "今日认证失败次数过多，请明天再试或前往政务服务大厅办理"
#define ZH_START_LIMIT "今日发起认证次数过多，请明天再试"

static fxb_identity_deps deps;
static bool deps_set;

void fxb_identity_service_init(const fxb_identity_deps *d)
{
    deps = *d;
    if (deps.min_score < 0)
        deps.min_score = FXB_IDV_MIN_SCORE_DEFAULT;
    deps_set = true;
}

/* --- days in China Standard Time ------------------------------------------ */

static int64_t cst_day(int64_t now_ms)
{
    return (now_ms + UTC8_MS) / DAY_MS;
}

int64_t fxb_idv_today(int64_t now_ms)
{
    /* civil_from_days (H. Hinnant), days >= 0 */
    int64_t z = cst_day(now_ms) + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    return y * 10000 + m * 100 + d;
}

int64_t fxb_idv_ms_to_midnight(int64_t now_ms)
{
    return (cst_day(now_ms) + 1) * DAY_MS - UTC8_MS - now_ms;
}

/* --- scripts ---------------------------------------------------------------- */

/* KEYS[1] challenge, KEYS[2] the day's start counter; ARGV: nonce, sid,
 * exp_ms, key ttl (ms), actions, counter ttl (s), daily maximum. */
static fxb_script start_script = FXB_SCRIPT(
    "idv_start",
    "local n = redis.call('INCR', KEYS[2])\n"
    "if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end\n"
    "if n > tonumber(ARGV[7]) then\n"
    "  return redis.error_reply('FXB 8 " FXB_IDV_TOO_MANY_STARTS
    " too many verifications started today')\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'nonce', ARGV[1], 'sid', ARGV[2], 'exp', ARGV[3], 'used', '0',\n"
    "  'actions', ARGV[5])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "return n\n");

/* KEYS[1] challenge; ARGV: sid, now_ms. Marks the challenge used and
 * returns {nonce, actions}: whatever happens next, it never serves again. */
static fxb_script consume_script =
    FXB_SCRIPT("idv_consume",
               "local h = redis.call('HMGET', KEYS[1], 'nonce', 'sid', 'exp', 'used', 'actions')\n"
               "if not h[1] or h[2] ~= ARGV[1] then\n"
               "  return redis.error_reply('FXB 9 " FXB_IDV_CHALLENGE_UNKNOWN
               " no such challenge for this session: call StartVerification')\n"
               "end\n"
               "if h[4] ~= '0' then\n"
               "  return redis.error_reply('FXB 9 " FXB_IDV_CHALLENGE_USED
               " the challenge was already used: call StartVerification')\n"
               "end\n"
               "if tonumber(h[3]) == nil or tonumber(h[3]) < tonumber(ARGV[2]) then\n"
               "  return redis.error_reply('FXB 9 " FXB_IDV_CHALLENGE_EXPIRED
               " the challenge expired: call StartVerification')\n"
               "end\n"
               "redis.call('HSET', KEYS[1], 'used', '1')\n"
               "return {h[1], h[5] or ''}\n");

/* KEYS[1] a failure counter; ARGV[1] ttl (s). */
static fxb_script count_script =
    FXB_SCRIPT("idv_count", "local n = redis.call('INCR', KEYS[1])\n"
                            "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
                            "return n\n");

/* KEYS[1] fxb:idnum:<idx>; ARGV[1] account id. One person, one account: the
 * first account to complete holds the number. */
static fxb_script bind_script = FXB_SCRIPT(
    "idv_bind", "local cur = redis.call('GET', KEYS[1])\n"
                "if cur and cur ~= ARGV[1] then\n"
                "  return redis.error_reply('FXB 6 " FXB_IDV_ID_ALREADY_BOUND " bound')\n"
                "end\n"
                "redis.call('SET', KEYS[1], ARGV[1])\n"
                "return 1\n");

/* KEYS[1] fxb:idnum:<idx>; ARGV[1] account id. Releases the number only
 * while this account holds it: a binding another account made since stays. */
static fxb_script release_script =
    FXB_SCRIPT("idv_release", "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                              "  return redis.call('DEL', KEYS[1])\n"
                              "end\n"
                              "return 0\n");

/* KEYS[1] {p:<pid>}:account; ARGV[1] account id. Drops the person's link
 * to this account only: a link another account made since stays. */
static fxb_script unlink_script =
    FXB_SCRIPT("idv_unlink", "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                             "  return redis.call('DEL', KEYS[1])\n"
                             "end\n"
                             "return 0\n");

/* --- helpers ---------------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code not_configured(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_UNAVAILABLE, FXB_IDV_NOT_CONFIGURED, "远程认证服务暂不可用",
                        "identity verification is not configured on this server "
                        "(no face-verification provider keys)");
}

/* "{u:<caller>}:<suffix>", or NULL after failing the call. */
static const char *caller_key(fxb_ctx *ctx, const char *suffix)
{
    const char *key =
        suffix ? fxb_key_owned(fxb_ctx_arena(ctx), "u", fxb_ctx_caller(ctx)->account_id, suffix)
               : NULL;
    if (key == NULL)
        fxb_ctx_fail(ctx, FXB_INTERNAL, "ACCOUNT_ID_INVALID", ZH_BUSY,
                     "the caller's account id cannot form a key");
    return key;
}

static bool random_bytes(uint8_t *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1;
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void b64url_encode(const uint8_t *in, size_t n, char *out)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = alpha[(v >> 18) & 63];
        out[o++] = alpha[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = alpha[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = alpha[v & 63];
    }
    out[o] = '\0';
}

static bool cid_valid(const char *cid)
{
    if (cid == NULL || strnlen(cid, CID_HEX + 1) != CID_HEX)
        return false;
    for (size_t i = 0; i < CID_HEX; i++)
        if (!((cid[i] >= '0' && cid[i] <= '9') || (cid[i] >= 'a' && cid[i] <= 'f')))
            return false;
    return true;
}

/* A counter's value (0 when absent), or a store error. */
static fxb_code read_count(fxb_store *st, const char *key, long long *n, fxb_err *err)
{
    redisReply *r = fxb_store_command(st, err, "GET %s", key);
    if (r == NULL)
        return err->code;
    *n = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return FXB_OK;
}

/* FXB_OK while key counts fewer than FXB_IDV_FAILURES_DAY failures today,
 * else RESOURCE_EXHAUSTED with the time to the next midnight (CST). */
static fxb_code check_failures(fxb_ctx *ctx, const char *key, const char *whose, int64_t now)
{
    fxb_err err;
    long long n = 0;
    if (read_count(fxb_ctx_store(ctx), key, &n, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (n < FXB_IDV_FAILURES_DAY)
        return FXB_OK;
    fxb_err_set(&err, FXB_RESOURCE_EXHAUSTED, FXB_IDV_TOO_MANY_FAILURES, ZH_FAIL_LIMIT,
                "%d failed verifications of this %s today: try again tomorrow (China Standard "
                "Time) or verify at a service hall",
                FXB_IDV_FAILURES_DAY, whose);
    err.retry_after_ms = fxb_idv_ms_to_midnight(now);
    return fxb_ctx_fail_err(ctx, &err);
}

static void bump(fxb_store *st, const char *key)
{
    if (key == NULL)
        return;
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", COUNTER_TTL_S);
    const char *args[] = {ttl};
    fxb_err err;
    redisReply *r = fxb_store_eval(st, &err, &count_script, 1, &key, 1, args, NULL);
    if (r != NULL)
        freeReplyObject(r);
}

/* The counters a failed completion is charged to. */
typedef struct attempt {
    const char *account_key;
    const char *id_key; /* NULL until the ID number is known valid */
} attempt;

/* Fails the call with err; failures the caller caused (not store or
 * server trouble) count against the day's limits. */
static fxb_code fail_attempt(fxb_ctx *ctx, const attempt *at, fxb_err *err)
{
    switch (err->code) {
    case FXB_INVALID_ARGUMENT:
    case FXB_FAILED_PRECONDITION:
    case FXB_PERMISSION_DENIED:
    case FXB_ALREADY_EXISTS:
        bump(fxb_ctx_store(ctx), at->account_key);
        bump(fxb_ctx_store(ctx), at->id_key);
        break;
    default:
        break;
    }
    return fxb_ctx_fail_err(ctx, err);
}

/* Fills resp from plaintext identity values (any may be NULL: not verified). */
static fxb_code fill_identity(fxb_ctx *ctx, Fxb__V1__Identity *resp, int level, const char *id,
                              const char *name, int64_t verified_at, const char *district)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    resp->assurance_level = (uint32_t)level;
    resp->verified = id != NULL;
    char mid[19] = "", mname[FXB_REGISTRY_NAME_MAX + 1] = "";
    if (id != NULL)
        fxb_mask_id_number(id, mid);
    if (name != NULL)
        fxb_mask_name(name, mname, sizeof mname);
    resp->masked_id_number = fxb_arena_strdup(a, mid);
    resp->masked_name = fxb_arena_strdup(a, mname);
    resp->verified_at_ms = id != NULL ? verified_at : 0;
    resp->household_district = fxb_arena_strdup(a, district && id ? district : "");
    if (resp->masked_id_number == NULL || resp->masked_name == NULL ||
        resp->household_district == NULL)
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- StartVerification ------------------------------------------------------ */

static const char *const action_pool[] = {"blink", "turn_left", "turn_right", "nod", "open_mouth"};
#define ACTION_POOL (sizeof action_pool / sizeof action_pool[0])

static fxb_code start_verification(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    Fxb__V1__StartVerificationResponse *resp = (Fxb__V1__StartVerificationResponse *)resp_msg;
    const fxb_caller *who = fxb_ctx_caller(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    uint8_t rnd[CID_BYTES + NONCE_BYTES + FXB_IDV_ACTIONS];
    if (!random_bytes(rnd, sizeof rnd))
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "RANDOM_FAILED", ZH_BUSY, "no random bytes");
    char cid[CID_HEX + 1], nonce[NONCE_B64 + 1];
    hex_encode(rnd, CID_BYTES, cid);
    b64url_encode(rnd + CID_BYTES, NONCE_BYTES, nonce);
    /* distinct actions: a random one, then a different random one */
    size_t first = rnd[CID_BYTES + NONCE_BYTES] % ACTION_POOL;
    size_t second =
        (first + 1 + rnd[CID_BYTES + NONCE_BYTES + 1] % (ACTION_POOL - 1)) % ACTION_POOL;
    const char *actions[FXB_IDV_ACTIONS] = {action_pool[first], action_pool[second]};

    int64_t now = fxb_wall_ms();
    int64_t exp = now + FXB_IDV_CHALLENGE_TTL_MS;
    const char *ckey = caller_key(ctx, fxb_arena_printf(a, "idv:challenge:%s", cid));
    if (ckey == NULL)
        return FXB_INTERNAL;
    const char *skey = caller_key(ctx, fxb_arena_printf(a, "idv:starts:%" PRId64, cst_day(now)));
    if (skey == NULL)
        return FXB_INTERNAL;
    char exp_text[24], ttl[24], cttl[16], max[16], joined[64];
    snprintf(exp_text, sizeof exp_text, "%" PRId64, exp);
    snprintf(ttl, sizeof ttl, "%lld", (long long)(FXB_IDV_CHALLENGE_TTL_MS + CHALLENGE_KEEP));
    snprintf(cttl, sizeof cttl, "%d", COUNTER_TTL_S);
    snprintf(max, sizeof max, "%d", FXB_IDV_STARTS_DAY);
    snprintf(joined, sizeof joined, "%s,%s", actions[0], actions[1]);
    const char *keys[] = {ckey, skey};
    const char *args[] = {nonce, who->session_id, exp_text, ttl, joined, cttl, max};
    fxb_err err;
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, &start_script, 2, keys, 7, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, FXB_IDV_TOO_MANY_STARTS) == 0) {
            snprintf(err.message_zh, sizeof err.message_zh, "%s", ZH_START_LIMIT);
            err.retry_after_ms = fxb_idv_ms_to_midnight(now);
        }
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);
    resp->challenge_id = fxb_arena_strdup(a, cid);
    resp->nonce = fxb_arena_strdup(a, nonce);
    resp->liveness_actions = fxb_arena_calloc(a, FXB_IDV_ACTIONS, sizeof(char *));
    if (resp->challenge_id == NULL || resp->nonce == NULL || resp->liveness_actions == NULL)
        return out_of_memory(ctx);
    for (size_t i = 0; i < FXB_IDV_ACTIONS; i++)
        resp->liveness_actions[i] = (char *)actions[i];
    resp->n_liveness_actions = FXB_IDV_ACTIONS;
    resp->expires_at_ms = exp;
    return FXB_OK;
}

/* --- CompleteVerification --------------------------------------------------- */

/* A challenge as consume_challenge read it. */
typedef struct challenge {
    char nonce[FXB_ATTESTATION_NONCE_MAX + 1];
    char joined[FXB_ATTESTATION_ACTIONS_MAX * (FXB_ATTESTATION_ACTION_MAX + 1)];
    const char *actions[FXB_ATTESTATION_ACTIONS_MAX]; /* into joined */
    size_t n_actions;
} challenge;

/* Splits ch->joined ("a,b") into ch->actions in place; false when empty or
 * beyond FXB_ATTESTATION_ACTIONS_MAX. */
static bool split_actions(challenge *ch)
{
    ch->n_actions = 0;
    char *p = ch->joined;
    while (*p != '\0') {
        if (ch->n_actions == FXB_ATTESTATION_ACTIONS_MAX)
            return false;
        ch->actions[ch->n_actions++] = p;
        char *comma = strchr(p, ',');
        if (comma == NULL)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return ch->n_actions > 0;
}

/* Marks the caller's challenge cid used and copies its nonce and liveness
 * actions into *ch. */
static fxb_code consume_challenge(fxb_ctx *ctx, const char *cid, int64_t now, challenge *ch,
                                  fxb_err *err)
{
    if (!cid_valid(cid))
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_IDV_CHALLENGE_UNKNOWN, ZH_RESTART,
                           "challenge_id is not one this server issued: call StartVerification");
    const char *key = fxb_key_owned(fxb_ctx_arena(ctx), "u", fxb_ctx_caller(ctx)->account_id,
                                    fxb_arena_printf(fxb_ctx_arena(ctx), "idv:challenge:%s", cid));
    if (key == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "ACCOUNT_ID_INVALID", ZH_BUSY,
                           "the caller's account id cannot form a key");
    char now_text[24];
    snprintf(now_text, sizeof now_text, "%" PRId64, now);
    const char *args[] = {fxb_ctx_caller(ctx)->session_id, now_text};
    redisReply *r =
        fxb_store_eval(fxb_ctx_store(ctx), err, &consume_script, 1, &key, 2, args, NULL);
    if (r == NULL) {
        if (err->code == FXB_FAILED_PRECONDITION)
            snprintf(err->message_zh, sizeof err->message_zh, "%s", ZH_RESTART);
        return err->code;
    }
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              r->element[0]->len <= FXB_ATTESTATION_NONCE_MAX &&
              r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len < sizeof ch->joined;
    if (ok) {
        snprintf(ch->nonce, sizeof ch->nonce, "%.*s", (int)r->element[0]->len, r->element[0]->str);
        snprintf(ch->joined, sizeof ch->joined, "%.*s", (int)r->element[1]->len,
                 r->element[1]->str);
        ok = split_actions(ch);
    }
    freeReplyObject(r);
    if (!ok)
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                           "idv_consume answered in an unexpected shape");
    return FXB_OK;
}

/* FXB_OK when the caller holds no identity or holds this one (idx); then
 * *level is the level recorded with it (0 when none). */
static fxb_code check_own_identity(fxb_ctx *ctx, const char *ikey, const char *idx, int *level,
                                   fxb_err *err)
{
    *level = 0;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), err, "HMGET %s id_idx level", ikey);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                           "HMGET answered in an unexpected shape");
    }
    const redisReply *held = r->element[0];
    bool other = held->type == REDIS_REPLY_STRING && strcmp(held->str, idx) != 0;
    if (held->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING)
        *level = (int)strtol(r->element[1]->str, NULL, 10);
    freeReplyObject(r);
    if (other)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_IDV_ALREADY_VERIFIED,
                           "本账号已完成其他身份的实名认证",
                           "this account is already verified with another ID number");
    return FXB_OK;
}

/* {p:<pid>}:account, the person subject's link to the account holding its
 * identity (services/benefit/entitlement.h: where its notices go); pid is
 * "p" + the first 24 hex digits of the blind index, as
 * fxb_profile_person_of_account derives it. */
static const char *person_account_key(fxb_ctx *ctx, const char *idx)
{
    char pid[26];
    snprintf(pid, sizeof pid, "p%.24s", idx);
    return fxb_key_owned(fxb_ctx_arena(ctx), "p", pid, "account");
}

static fxb_code bind_number(fxb_ctx *ctx, const char *idx, fxb_err *err)
{
    const char *key = fxb_arena_printf(fxb_ctx_arena(ctx), ID_IDX_PREFIX "%s", idx);
    if (key == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    const char *args[] = {fxb_ctx_caller(ctx)->account_id};
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), err, &bind_script, 1, &key, 1, args, NULL);
    if (r != NULL) {
        freeReplyObject(r);
        const char *link = person_account_key(ctx, idx);
        if (link == NULL)
            return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                               "out of memory");
        const char *set[] = {"SET", link, args[0]};
        r = fxb_store_commandv(fxb_ctx_store(ctx), err, 3, set, NULL);
        if (r == NULL)
            return err->code;
        freeReplyObject(r);
        return FXB_OK;
    }
    if (strcmp(err->reason, FXB_IDV_ID_ALREADY_BOUND) == 0)
        fxb_err_set(err, FXB_ALREADY_EXISTS, FXB_IDV_ID_ALREADY_BOUND,
                    "该身份证号码已绑定其他账号。请使用已绑定该证件的手机号登录，"
                    "或携带身份证到政务服务大厅办理账号解绑后再认证",
                    "this ID number is already bound to another account (one person, one "
                    "account): sign in with the account that holds it, or unbind it in person "
                    "at a service hall with the ID card, then verify again");
    return err->code;
}

/* Seals and stores the identity verified at level, then raises the account
 * to level (never lowering it). */
static fxb_code record_identity(fxb_ctx *ctx, const char *ikey, const fxb_idnumber *num,
                                const char *name, const char *idx, const char *district,
                                int64_t now, int level_verified, fxb_err *err)
{
    const char *id = fxb_ctx_caller(ctx)->account_id;
    fxb_arena *a = fxb_ctx_arena(ctx);
    char *id_enc = NULL, *name_enc = NULL;
    fxb_code rc = fxb_crypto_seal(deps.crypto, LABEL_ID, id, (const uint8_t *)num->id,
                                  FXB_IDNUMBER_LEN, a, &id_enc, err);
    if (rc == FXB_OK)
        rc = fxb_crypto_seal(deps.crypto, LABEL_NAME, id, (const uint8_t *)name, strlen(name), a,
                             &name_enc, err);
    if (rc != FXB_OK)
        return rc;
    char birth[16], now_text[24], level[12];
    snprintf(birth, sizeof birth, "%08" PRId64, num->birth);
    snprintf(now_text, sizeof now_text, "%" PRId64, now);
    snprintf(level, sizeof level, "%d", level_verified);
    const char *argv[] = {"HSET",           ikey,     "id_enc",     id_enc, "name_enc", name_enc,
                          "id_idx",         idx,      "birth_date", birth,  "district", district,
                          "verified_at_ms", now_text, "level",      level};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), err, (int)(sizeof argv / sizeof argv[0]),
                                       argv, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return fxb_account_raise_level(fxb_ctx_store(ctx), id, level_verified, err);
}

/* The checks of CompleteVerification, in the order the API promises; num
 * receives the checked ID number (the caller wipes it). */
static fxb_code complete_checked(fxb_ctx *ctx, const Fxb__V1__CompleteVerificationRequest *req,
                                 Fxb__V1__Identity *resp, fxb_idnumber *num)
{
    if (!deps_set || deps.crypto == NULL || deps.verifier == NULL || deps.registry.check == NULL)
        return not_configured(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    int64_t now = fxb_wall_ms();
    int64_t day = cst_day(now);
    attempt at = {.account_key = caller_key(ctx, fxb_arena_printf(a, "idv:fail:%" PRId64, day)),
                  .id_key = NULL};
    const char *ikey = caller_key(ctx, "identity");
    if (at.account_key == NULL || ikey == NULL)
        return FXB_INTERNAL;
    fxb_code rc = check_failures(ctx, at.account_key, "account", now);
    if (rc != FXB_OK)
        return rc;

    fxb_err err;
    /* 0. the request itself */
    int level = req->requested_level == 0 ? FXB_LEVEL_REAL_FACE : (int)req->requested_level;
    if (level != FXB_LEVEL_REAL_NAME && level != FXB_LEVEL_REAL_FACE) {
        fxb_err_set(&err, FXB_INVALID_ARGUMENT, FXB_IDV_LEVEL_INVALID, "认证级别不正确",
                    "requested_level must be 2 (real name) or 3 (real person; 0 means 3)");
        return fail_attempt(ctx, &at, &err);
    }
    if (level == FXB_LEVEL_REAL_NAME && req->attestation != NULL && req->attestation[0] != '\0') {
        fxb_err_set(&err, FXB_INVALID_ARGUMENT, FXB_IDV_ATTESTATION_NOT_EXPECTED,
                    "实名认证无需人脸认证结果",
                    "requested_level 2 takes no attestation: leave it empty, or request level 3");
        return fail_attempt(ctx, &at, &err);
    }
    if (!fxb_registry_name_valid(req->name)) {
        fxb_err_set(&err, FXB_INVALID_ARGUMENT, "NAME_INVALID", "请填写身份证上的姓名",
                    "name must be 1..%d bytes of UTF-8 without control characters or "
                    "surrounding spaces",
                    FXB_REGISTRY_NAME_MAX);
        return fail_attempt(ctx, &at, &err);
    }
    /* 1. the ID number */
    if (fxb_idnumber_check(req->id_number, fxb_idv_today(now), num, &err) != FXB_OK)
        return fail_attempt(ctx, &at, &err);
    char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    if (fxb_crypto_index(deps.crypto, LABEL_ID, num->id, idx, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    at.id_key = fxb_arena_printf(a, ID_FAIL_PREFIX "%s:%" PRId64, idx, day);
    if (at.id_key == NULL)
        return out_of_memory(ctx);
    rc = check_failures(ctx, at.id_key, "ID number", now);
    if (rc != FXB_OK)
        return rc;

    /* 2. the challenge, then (L3) the attestation that answers it: nonce,
     * ID number, liveness, the challenge's actions, score, freshness */
    challenge ch;
    if (consume_challenge(ctx, req->challenge_id, now, &ch, &err) != FXB_OK)
        return fail_attempt(ctx, &at, &err);
    fxb_attestation att;
    if (level == FXB_LEVEL_REAL_FACE &&
        fxb_attestation_verify(deps.verifier, req->attestation, ch.nonce, num->id, ch.actions,
                               ch.n_actions, deps.min_score, now / 1000,
                               FXB_IDV_ATTESTATION_MAX_AGE_S, &att, &err) != FXB_OK)
        return fail_attempt(ctx, &at, &err);

    /* 3. the population registry */
    char district[FXB_REGISTRY_DISTRICT_LEN + 1];
    if (deps.registry.check(deps.registry.self, st, req->name, num->id, district, &err) != FXB_OK)
        return fail_attempt(ctx, &at, &err);

    /* 4. one person, one account */
    int recorded = 0;
    if (check_own_identity(ctx, ikey, idx, &recorded, &err) != FXB_OK ||
        bind_number(ctx, idx, &err) != FXB_OK)
        return fail_attempt(ctx, &at, &err);

    /* L2 over a recorded L3 of the same person keeps L3 */
    int kept = level > recorded ? level : recorded;
    fxb_account acc;
    rc = record_identity(ctx, ikey, num, req->name, idx, district, now, kept, &err);
    if (rc == FXB_OK)
        rc = fxb_account_get(st, fxb_ctx_caller(ctx)->account_id, &acc, &err);
    if (rc == FXB_OK)
        rc = fill_identity(ctx, resp, acc.level, num->id, req->name, now, district);
    else
        rc = fxb_ctx_fail_err(ctx, &err);
    return rc;
}

static fxb_code complete_verification(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                      ProtobufCMessage *resp_msg)
{
    fxb_idnumber num;
    memset(&num, 0, sizeof num);
    fxb_code rc = complete_checked(ctx, (const Fxb__V1__CompleteVerificationRequest *)req_msg,
                                   (Fxb__V1__Identity *)resp_msg, &num);
    OPENSSL_cleanse(&num, sizeof num);
    return rc;
}

/* --- GetMyIdentity ---------------------------------------------------------- */

/* Opens a sealed field of the caller into *out (arena; wipe after use). */
static fxb_code open_field(fxb_ctx *ctx, const char *label, const redisReply *r, char **out,
                           fxb_err *err)
{
    *out = NULL;
    if (r->type != REDIS_REPLY_STRING || r->len > FXB_CRYPTO_SEALED_MAX)
        return fxb_err_set(err, FXB_DATA_LOSS, "IDENTITY_CORRUPT", ZH_BUSY,
                           "a stored identity field is missing");
    uint8_t *pt = NULL;
    size_t len = 0;
    fxb_code rc = fxb_crypto_open(deps.crypto, label, fxb_ctx_caller(ctx)->account_id, r->str,
                                  fxb_ctx_arena(ctx), &pt, &len, err);
    if (rc == FXB_OK)
        *out = (char *)pt;
    return rc;
}

static fxb_code get_my_identity(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    Fxb__V1__Identity *resp = (Fxb__V1__Identity *)resp_msg;
    if (!deps_set || deps.crypto == NULL)
        return not_configured(ctx);
    const char *ikey = caller_key(ctx, "identity");
    if (ikey == NULL)
        return FXB_INTERNAL;
    fxb_err err;
    fxb_account acc;
    if (fxb_account_get(fxb_ctx_store(ctx), fxb_ctx_caller(ctx)->account_id, &acc, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err,
                                      "HMGET %s id_enc name_enc verified_at_ms district", ikey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        freeReplyObject(r);
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                            "HMGET answered in an unexpected shape");
    }
    fxb_code rc;
    if (r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return fill_identity(ctx, resp, acc.level, NULL, NULL, 0, NULL);
    }
    char *id = NULL, *name = NULL;
    rc = open_field(ctx, LABEL_ID, r->element[0], &id, &err);
    if (rc == FXB_OK)
        rc = open_field(ctx, LABEL_NAME, r->element[1], &name, &err);
    int64_t at =
        r->element[2]->type == REDIS_REPLY_STRING ? strtoll(r->element[2]->str, NULL, 10) : 0;
    char district[FXB_REGISTRY_DISTRICT_LEN + 1] = "";
    if (r->element[3]->type == REDIS_REPLY_STRING &&
        r->element[3]->len == FXB_REGISTRY_DISTRICT_LEN)
        memcpy(district, r->element[3]->str, FXB_REGISTRY_DISTRICT_LEN + 1);
    freeReplyObject(r);
    if (rc == FXB_OK)
        rc = fill_identity(ctx, resp, acc.level, id, name, at, district);
    else
        rc = fxb_ctx_fail_err(ctx, &err);
    if (id != NULL)
        OPENSSL_cleanse(id, strlen(id));
    if (name != NULL)
        OPENSSL_cleanse(name, strlen(name));
    return rc;
}

/* --- DeleteMyIdentity -------------------------------------------------------- */

/* The blind index of the caller's recorded ID number into idx; FXB_NOT_FOUND
 * (IDENTITY_NOT_VERIFIED) when no identity is recorded. */
static fxb_code recorded_index(fxb_ctx *ctx, const char *ikey,
                               char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1], fxb_err *err)
{
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), err, "HGET %s id_idx", ikey);
    if (r == NULL)
        return err->code;
    bool found = r->type == REDIS_REPLY_STRING && r->len == FXB_CRYPTO_INDEX_HEX_LEN;
    if (found)
        memcpy(idx, r->str, FXB_CRYPTO_INDEX_HEX_LEN + 1);
    freeReplyObject(r);
    if (!found)
        return fxb_err_set(err, FXB_NOT_FOUND, "IDENTITY_NOT_VERIFIED", "本账号尚未完成实名认证",
                           "this account has no verified identity to remove");
    return FXB_OK;
}

/* Unbinding, in an order that a retry after any failure completes: the
 * audit record first (no change without one), then the binding, the level
 * and last the identity itself, whose presence means "not done yet". The
 * keys live in different slots, so no single script can hold them all. */
static fxb_code delete_my_identity(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    (void)req_msg;
    Fxb__V1__DeleteMyIdentityResponse *resp = (Fxb__V1__DeleteMyIdentityResponse *)resp_msg;
    const char *id = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    const char *ikey = caller_key(ctx, "identity");
    if (ikey == NULL)
        return FXB_INTERNAL;
    fxb_err err;
    char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    if (recorded_index(ctx, ikey, idx, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (fxb_audit_append(st, id, id, "identity.unbind", "holder request, step-up verified",
                         fxb_wall_ms(), &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    const char *nkey = fxb_arena_printf(fxb_ctx_arena(ctx), ID_IDX_PREFIX "%s", idx);
    if (nkey == NULL)
        return out_of_memory(ctx);
    const char *args[] = {id};
    redisReply *r = fxb_store_eval(st, &err, &release_script, 1, &nkey, 1, args, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    freeReplyObject(r);
    const char *link = person_account_key(ctx, idx);
    if (link == NULL)
        return out_of_memory(ctx);
    r = fxb_store_eval(st, &err, &unlink_script, 1, &link, 1, args, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    freeReplyObject(r);
    if (fxb_account_set_level(st, id, FXB_LEVEL_PHONE, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    r = fxb_store_command(st, &err, "DEL %s", ikey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    freeReplyObject(r);
    resp->assurance_level = FXB_LEVEL_PHONE;
    return FXB_OK;
}

/* --- method table ----------------------------------------------------------- */

/* The caller's own identity only: signed in at any level, never through a
 * proxy's delegated token. */
#define OWN_ACCOUNT                                                                                \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = 0, .delegable = false                           \
    }

static const fxb_method methods[] = {
    {.path = "/fxb.v1.IdentityService/StartVerification",
     .request = &fxb__v1__start_verification_request__descriptor,
     .response = &fxb__v1__start_verification_response__descriptor,
     .unary = start_verification,
     .access = OWN_ACCOUNT,
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.IdentityService/CompleteVerification",
     .request = &fxb__v1__complete_verification_request__descriptor,
     .response = &fxb__v1__identity__descriptor,
     .unary = complete_verification,
     .access = OWN_ACCOUNT,
     .limits = {.max_request_bytes = REQUEST_MAX}},
    {.path = "/fxb.v1.IdentityService/GetMyIdentity",
     .request = &fxb__v1__get_my_identity_request__descriptor,
     .response = &fxb__v1__identity__descriptor,
     .unary = get_my_identity,
     .access = OWN_ACCOUNT,
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.IdentityService/DeleteMyIdentity",
     .request = &fxb__v1__delete_my_identity_request__descriptor,
     .response = &fxb__v1__delete_my_identity_response__descriptor,
     .unary = delete_my_identity,
     .access = {.kind = FXB_ACCESS_SIGNED_IN,
                .min_level = 0,
                .delegable = false,
                .step_up_s = FXB_STEP_UP_WINDOW_S},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
};

const fxb_service fxb_identity_service = {
    .name = "fxb.v1.IdentityService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
