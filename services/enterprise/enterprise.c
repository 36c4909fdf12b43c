/* EnterpriseService handlers. Keys (store/keys.h conventions):
 *   {u:<id>}:enterprises    set of the enterprise ids the account bound
 *   {e:<eid>}:enterprise    name, code (public business data), rep_account
 *                           (the account bound as legal representative, ""
 *                           after an unbind), bound_at_ms
 *   fxb:audit               enterprise.bind / enterprise.unbind (store/audit.h)
 * The two owners' keys live in different slots, so a bind is two
 * single-slot scripts: the account's set first (its bound is the limit),
 * then the enterprise record; a reader trusts a set member only when the
 * record names the account as its representative. ID numbers never reach
 * this service: it compares the blind indexes the identity service and the
 * registry hold. */
#include "services/enterprise/enterprise.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fxb/v1/enterprise.pb-c.h"
#include "store/audit.h"
#include "store/keys.h"
#include "store/store.h"

#define LABEL_CODE    "uscc" /* blind index of the credit code: the enterprise id */
#define SMALL_REQUEST 256

#define ZH_BUSY "系统繁忙，请稍后重试"

static fxb_enterprise_deps deps;
static bool deps_set;

void fxb_enterprise_service_init(const fxb_enterprise_deps *d)
{
    deps = *d;
    deps_set = true;
}

fxb_code fxb_enterprise_id(const fxb_crypto *c, const char *code,
                           char out[FXB_ENTERPRISE_ID_LEN + 1], fxb_err *err)
{
    char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    out[0] = '\0';
    fxb_code rc = fxb_crypto_index(c, LABEL_CODE, code, idx, err);
    if (rc == FXB_OK)
        snprintf(out, FXB_ENTERPRISE_ID_LEN + 1, "e%.*s", FXB_ENTERPRISE_ID_HEX, idx);
    return rc;
}

/* --- scripts ---------------------------------------------------------------- */

/* KEYS[1] {u:<id>}:enterprises; ARGV: eid, maximum. 1 when added, 0 when
 * already there. */
static fxb_script add_script =
    FXB_SCRIPT("ent_add", "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end\n"
                          "if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then\n"
                          "  return redis.error_reply('FXB 8 " FXB_ENTERPRISE_TOO_MANY
                          " too many enterprises bound to this account')\n"
                          "end\n"
                          "redis.call('SADD', KEYS[1], ARGV[1])\n"
                          "return 1\n");

/* KEYS[1] {e:<eid>}:enterprise; ARGV: name, code, account, now_ms. Returns
 * bound_at_ms: kept when the account already holds the binding. */
static fxb_script record_script = FXB_SCRIPT(
    "ent_record", "local cur = redis.call('HMGET', KEYS[1], 'rep_account', 'bound_at_ms')\n"
                  "redis.call('HSET', KEYS[1], 'name', ARGV[1], 'code', ARGV[2])\n"
                  "if cur[1] == ARGV[3] and cur[2] then return cur[2] end\n"
                  "redis.call('HSET', KEYS[1], 'rep_account', ARGV[3], 'bound_at_ms', ARGV[4])\n"
                  "return ARGV[4]\n");

/* KEYS[1] {e:<eid>}:enterprise; ARGV[1] account. Clears the binding when
 * the account holds it. */
static fxb_script release_script = FXB_SCRIPT(
    "ent_release", "if redis.call('HGET', KEYS[1], 'rep_account') == ARGV[1] then\n"
                   "  redis.call('HSET', KEYS[1], 'rep_account', '', 'bound_at_ms', '0')\n"
                   "  return 1\n"
                   "end\n"
                   "return 0\n");

/* --- helpers ---------------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code not_configured(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_UNAVAILABLE, FXB_ENTERPRISE_NOT_CONFIGURED, ZH_BUSY,
                        "the enterprise service is not configured on this server");
}

static const char *key_or_fail(fxb_ctx *ctx, const char *tag, const char *id, const char *suffix)
{
    const char *key = fxb_key_owned(fxb_ctx_arena(ctx), tag, id, suffix);
    if (key == NULL)
        fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    return key;
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

/* Best-effort compensation of a step whose audit record could not be
 * written; the call fails either way. */
static void undo(fxb_store *st, const char *cmd, const char *key, const char *member)
{
    fxb_err err;
    redisReply *r = fxb_store_command(st, &err, "%s %s %s", cmd, key, member);
    if (r != NULL)
        freeReplyObject(r);
}

static fxb_code fill_enterprise(fxb_ctx *ctx, Fxb__V1__Enterprise *e, const char *eid,
                                const char *code, const char *name, int64_t bound_at)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    e->enterprise_id = fxb_arena_strdup(a, eid);
    e->credit_code = fxb_arena_strdup(a, code);
    e->name = fxb_arena_strdup(a, name);
    e->role = (char *)FXB_ENTERPRISE_ROLE_LEGAL_REP;
    e->bound_at_ms = bound_at;
    if (e->enterprise_id == NULL || e->credit_code == NULL || e->name == NULL)
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- BindEnterprise ------------------------------------------------------- */

/* The caller's verified identity's blind index into idx ("" when none). */
static fxb_code caller_id_idx(fxb_ctx *ctx, char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1], fxb_err *err)
{
    idx[0] = '\0';
    const char *ikey =
        fxb_key_owned(fxb_ctx_arena(ctx), "u", fxb_ctx_caller(ctx)->account_id, "identity");
    if (ikey == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                           "the caller's account id cannot form a key");
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), err, "HGET %s id_idx", ikey);
    if (r == NULL)
        return err->code;
    if (r->type == REDIS_REPLY_STRING && r->len == FXB_CRYPTO_INDEX_HEX_LEN)
        memcpy(idx, r->str, FXB_CRYPTO_INDEX_HEX_LEN + 1);
    freeReplyObject(r);
    return FXB_OK;
}

static fxb_code bind_enterprise(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    const Fxb__V1__BindEnterpriseRequest *req = (const Fxb__V1__BindEnterpriseRequest *)req_msg;
    Fxb__V1__Enterprise *resp = (Fxb__V1__Enterprise *)resp_msg;
    if (!deps_set || deps.crypto == NULL || deps.registry.lookup == NULL)
        return not_configured(ctx);
    const char *account = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_err err;

    /* 1. the code, as typed: lower case is upper-cased */
    char code[FXB_USCC_LEN + 1];
    const char *in = req->credit_code ? req->credit_code : "";
    if (strnlen(in, FXB_USCC_LEN + 1) > FXB_USCC_LEN)
        in = ""; /* too long: USCC_FORMAT below */
    size_t n = 0;
    for (; in[n] != '\0'; n++)
        code[n] = (in[n] >= 'a' && in[n] <= 'z') ? (char)(in[n] - 'a' + 'A') : in[n];
    code[n] = '\0';
    if (fxb_uscc_check(code, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);

    /* 2. the registry */
    fxb_entreg_record rec;
    if (deps.registry.lookup(deps.registry.self, st, code, &rec, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);

    /* 3. the caller is its legal representative */
    char mine[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    if (caller_id_idx(ctx, mine, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (mine[0] == '\0' || CRYPTO_memcmp(mine, rec.rep_idx, FXB_CRYPTO_INDEX_HEX_LEN) != 0)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_ENTERPRISE_NOT_LEGAL_REP,
                            "企业登记信息显示您不是该企业的法定代表人",
                            "the enterprise registry does not name the caller's verified "
                            "identity as this enterprise's legal representative");

    /* 4. the binding: the account's set, then the enterprise record */
    char eid[FXB_ENTERPRISE_ID_LEN + 1];
    if (fxb_enterprise_id(deps.crypto, code, eid, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    const char *skey = key_or_fail(ctx, "u", account, "enterprises");
    const char *ekey = skey ? key_or_fail(ctx, "e", eid, "enterprise") : NULL;
    if (ekey == NULL)
        return FXB_INTERNAL;
    char max[16], now_text[24];
    int64_t now = fxb_wall_ms();
    snprintf(max, sizeof max, "%d", FXB_ENTERPRISE_MAX_PER_ACCOUNT);
    snprintf(now_text, sizeof now_text, "%" PRId64, now);
    const char *add_args[] = {eid, max};
    redisReply *r = fxb_store_eval(st, &err, &add_script, 1, &skey, 2, add_args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, FXB_ENTERPRISE_TOO_MANY) == 0)
            snprintf(err.message_zh, sizeof err.message_zh,
                     "每个账号最多绑定%d家企业，请先解绑不再需要的企业",
                     FXB_ENTERPRISE_MAX_PER_ACCOUNT);
        return fxb_ctx_fail_err(ctx, &err);
    }
    bool added = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);

    const char *rec_args[] = {rec.name, code, account, now_text};
    r = fxb_store_eval(st, &err, &record_script, 1, &ekey, 4, rec_args, NULL);
    if (r == NULL) {
        if (added)
            undo(st, "SREM", skey, eid);
        return fxb_ctx_fail_err(ctx, &err);
    }
    int64_t bound_at = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : now;
    freeReplyObject(r);

    if (added && fxb_audit_append(st, account, eid, "enterprise.bind",
                                  "legal_representative_confirmed", now, &err) != FXB_OK) {
        undo(st, "SREM", skey, eid);
        return fxb_ctx_fail_err(ctx, &err);
    }
    return fill_enterprise(ctx, resp, eid, code, rec.name, bound_at);
}

/* --- ListMyEnterprises ------------------------------------------------------ */

static int by_bound_at(const void *x, const void *y)
{
    const Fxb__V1__Enterprise *a = *(Fxb__V1__Enterprise *const *)x;
    const Fxb__V1__Enterprise *b = *(Fxb__V1__Enterprise *const *)y;
    if (a->bound_at_ms != b->bound_at_ms)
        return a->bound_at_ms < b->bound_at_ms ? -1 : 1;
    return strcmp(a->enterprise_id, b->enterprise_id);
}

/* Reads one enterprise into *e; false (and nothing filled) when the record
 * does not name account as its representative (a stale member). */
static bool read_enterprise(fxb_ctx *ctx, const char *eid, const char *account,
                            Fxb__V1__Enterprise *e, fxb_err *err, fxb_code *rc)
{
    *rc = FXB_OK;
    const char *ekey = fxb_key_owned(fxb_ctx_arena(ctx), "e", eid, "enterprise");
    if (ekey == NULL)
        return false;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), err,
                                      "HMGET %s name code rep_account bound_at_ms", ekey);
    if (r == NULL) {
        *rc = err->code;
        return false;
    }
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 4;
    for (size_t i = 0; ok && i < 4; i++)
        ok = r->element[i]->type == REDIS_REPLY_STRING;
    ok = ok && strcmp(r->element[2]->str, account) == 0;
    if (ok) {
        fxb__v1__enterprise__init(e);
        fxb_arena *a = fxb_ctx_arena(ctx);
        e->enterprise_id = fxb_arena_strdup(a, eid);
        e->name = fxb_arena_strdup(a, r->element[0]->str);
        e->credit_code = fxb_arena_strdup(a, r->element[1]->str);
        e->role = (char *)FXB_ENTERPRISE_ROLE_LEGAL_REP;
        e->bound_at_ms = strtoll(r->element[3]->str, NULL, 10);
        if (e->enterprise_id == NULL || e->name == NULL || e->credit_code == NULL) {
            *rc =
                fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
            ok = false;
        }
    }
    freeReplyObject(r);
    return ok;
}

static fxb_code list_my_enterprises(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                    ProtobufCMessage *resp_msg)
{
    (void)req_msg;
    Fxb__V1__ListMyEnterprisesResponse *resp = (Fxb__V1__ListMyEnterprisesResponse *)resp_msg;
    const char *account = fxb_ctx_caller(ctx)->account_id;
    const char *skey = key_or_fail(ctx, "u", account, "enterprises");
    if (skey == NULL)
        return FXB_INTERNAL;
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "SMEMBERS %s", skey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                            "SMEMBERS answered in an unexpected shape");
    }
    /* the set is bounded by the add script; a larger one is cut */
    size_t n =
        r->elements < FXB_ENTERPRISE_MAX_PER_ACCOUNT ? r->elements : FXB_ENTERPRISE_MAX_PER_ACCOUNT;
    fxb_arena *a = fxb_ctx_arena(ctx);
    Fxb__V1__Enterprise **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    Fxb__V1__Enterprise *items = fxb_arena_calloc(a, n ? n : 1, sizeof *items);
    if (list == NULL || items == NULL) {
        freeReplyObject(r);
        return out_of_memory(ctx);
    }
    size_t got = 0;
    fxb_code rc = FXB_OK;
    for (size_t i = 0; i < n && rc == FXB_OK; i++) {
        const redisReply *m = r->element[i];
        if (m->type != REDIS_REPLY_STRING || !eid_valid(m->str))
            continue;
        if (read_enterprise(ctx, m->str, account, &items[got], &err, &rc)) {
            list[got] = &items[got];
            got++;
        }
    }
    freeReplyObject(r);
    if (rc != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    qsort(list, got, sizeof *list, by_bound_at);
    resp->enterprises = list;
    resp->n_enterprises = got;
    return FXB_OK;
}

/* --- UnbindEnterprise ------------------------------------------------------- */

static fxb_code unbind_enterprise(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                  ProtobufCMessage *resp_msg)
{
    (void)resp_msg;
    const Fxb__V1__UnbindEnterpriseRequest *req = (const Fxb__V1__UnbindEnterpriseRequest *)req_msg;
    if (!eid_valid(req->enterprise_id))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "ENTERPRISE_ID_INVALID", "企业标识无效",
                            "enterprise_id must be \"e\" followed by %d lower-case hex digits",
                            FXB_ENTERPRISE_ID_HEX);
    const char *account = fxb_ctx_caller(ctx)->account_id;
    const char *eid = req->enterprise_id;
    fxb_store *st = fxb_ctx_store(ctx);
    const char *skey = key_or_fail(ctx, "u", account, "enterprises");
    const char *ekey = skey ? key_or_fail(ctx, "e", eid, "enterprise") : NULL;
    if (ekey == NULL)
        return FXB_INTERNAL;
    fxb_err err;
    redisReply *r = fxb_store_command(st, &err, "SREM %s %s", skey, eid);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool removed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!removed)
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, FXB_ENTERPRISE_NOT_BOUND, "您未绑定该企业",
                            "the caller holds no binding of this enterprise");
    const char *args[] = {account};
    r = fxb_store_eval(st, &err, &release_script, 1, &ekey, 1, args, NULL);
    if (r == NULL) {
        undo(st, "SADD", skey, eid);
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);
    if (fxb_audit_append(st, account, eid, "enterprise.unbind", "account_request", fxb_wall_ms(),
                         &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err); /* the binding is gone: a retry answers NOT_BOUND */
    return FXB_OK;
}

/* --- method table ----------------------------------------------------------- */

/* The caller's own bindings, never through a proxy's delegated token. */
#define OWN_ACCOUNT(level)                                                                         \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = (level), .delegable = false                     \
    }

static const fxb_method methods[] = {
    {.path = "/fxb.v1.EnterpriseService/BindEnterprise",
     .request = &fxb__v1__bind_enterprise_request__descriptor,
     .response = &fxb__v1__enterprise__descriptor,
     .unary = bind_enterprise,
     .access = OWN_ACCOUNT(FXB_LEVEL_REAL_FACE),
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.EnterpriseService/ListMyEnterprises",
     .request = &fxb__v1__list_my_enterprises_request__descriptor,
     .response = &fxb__v1__list_my_enterprises_response__descriptor,
     .unary = list_my_enterprises,
     .access = OWN_ACCOUNT(0),
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.EnterpriseService/UnbindEnterprise",
     .request = &fxb__v1__unbind_enterprise_request__descriptor,
     .response = &fxb__v1__unbind_enterprise_response__descriptor,
     .unary = unbind_enterprise,
     .access = OWN_ACCOUNT(0),
     .limits = {.max_request_bytes = SMALL_REQUEST}},
};

const fxb_service fxb_enterprise_service = {
    .name = "fxb.v1.EnterpriseService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
