/* FilingService handlers: the applicant's side of applications (drafts,
 * materials from the wallet, the submit check against the guide version
 * the application was drafted on, 容缺 supplements, withdrawals, reads).
 * The record, its transitions and indexes are application.c's; here the
 * rules of art. 17–22 decide which transition a submission makes.
 *
 * Keys of the subject (<t> "u" for an account, "e" for an enterprise):
 *   {<t>:<subject>}:apps         zset: application ids by created_at_ms
 *   {<t>:<subject>}:idem:<key>   string, 24 h: "create <aid>", or "submit
 *                                <aid> pending" then "submit <aid> <hex of
 *                                the packed SubmitResult>"
 * The subject is the caller's account, or a delegated caller's principal;
 * another subject's application reads as not found. */
#include "services/filing/filing.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scope.h"
#include "auth/token.h"
#include "server/log.h"
#include "services/calendar/calendar.h"
#include "services/catalog/catalog.h"
#include "services/catalog/catalog_import.h"
#include "services/filing/application.h"
#include "services/material/material.h"
#include "store/inbox.h"
#include "store/keys.h"

#define SVC "/fxb.v1.FilingService/"

#define IDEM_KEY_MAX      64
#define IDEM_TTL_S        86400
#define MATERIAL_CODE_MAX 16
#define REASON_MAX        200 /* characters */
#define PAGE_DEFAULT      20
#define PAGE_MAX          100
#define PAGE_TOKEN_MAX    200
#define LIST_BATCH        64
#define BUNDLE_MAX        20 /* items of one bundle */
#define SMALL_REQUEST     512
#define ATTACH_REQUEST    (SMALL_REQUEST + FXB_APP_FILES_MAX * 80)

#define ZH_BUSY      "系统繁忙，请稍后重试"
#define ZH_NOT_FOUND "未找到该办件"

#define ST(x) FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_##x
#define PK(x) FXB__V1__PROBLEM_KIND__PROBLEM_KIND_##x
#define OC(x) FXB__V1__SUBMIT_OUTCOME__SUBMIT_OUTCOME_##x
#define RQ(x) FXB__V1__MATERIAL_REQUIREMENT__MATERIAL_REQUIREMENT_##x

static fxb_filing_deps deps;

void fxb_filing_service_init(const fxb_filing_deps *d)
{
    deps = *d;
}

const fxb_crypto *fxb_filing_crypto(void)
{
    return deps.crypto;
}

/* --- small helpers ---------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code not_found(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_NOT_FOUND, FXB_APP_NOT_FOUND, ZH_NOT_FOUND,
                        "no such application for the caller");
}

static fxb_code key_failed(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                        "the subject's id cannot form a key");
}

static fxb_code state_refused(fxb_ctx *ctx, fxb_app_status st)
{
    const char *word = fxb_app_status_word(st);
    char upper[32] = "";
    for (size_t i = 0; word != NULL && word[i] != '\0' && i + 1 < sizeof upper; i++)
        upper[i] = (char)(word[i] >= 'a' && word[i] <= 'z' ? word[i] - 'a' + 'A' : word[i]);
    char zh[160];
    snprintf(zh, sizeof zh, "办件当前状态为“%s”，不能进行此操作", fxb_app_status_zh(st));
    return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, FXB_APP_STATE, zh, "the application is %s",
                        upper);
}

/* The subject: the caller's account, or a delegated caller's principal. */
static const char *subject_of(fxb_ctx *ctx)
{
    return fxb_ctx_caller(ctx)->account_id;
}

/* The account acting: the agent when delegated. */
static const char *actor_of(fxb_ctx *ctx)
{
    const fxb_caller *c = fxb_ctx_caller(ctx);
    return c->delegated ? c->agent_id : c->account_id;
}

static const char *actor_role(fxb_ctx *ctx)
{
    return fxb_ctx_caller(ctx)->delegated ? "agent" : "applicant";
}

static const char *subject_key(fxb_ctx *ctx, const char *suffix)
{
    const char *subject = subject_of(ctx);
    const char *tag = fxb_inbox_tag(subject);
    return tag ? fxb_key_owned(fxb_ctx_arena(ctx), tag, subject, suffix) : NULL;
}

static char *num(fxb_arena *a, int64_t v)
{
    return fxb_arena_printf(a, "%" PRId64, v);
}

static bool chars_ok(const char *s, size_t max, bool allow_empty)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n > max || (n == 0 && !allow_empty))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Characters of valid UTF-8 without control characters; -1 otherwise. */
static long text_chars(const char *s, size_t max_bytes)
{
    size_t len = strnlen(s, max_bytes + 1);
    if (len > max_bytes)
        return -1;
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t k;
        if (c < 0x80)
            k = 0;
        else if ((c & 0xe0) == 0xc0)
            k = 1;
        else if ((c & 0xf0) == 0xe0)
            k = 2;
        else if ((c & 0xf8) == 0xf0)
            k = 3;
        else
            return -1;
        if (k == 0 && (c < 0x20 || c == 0x7f))
            return -1;
        for (size_t j = 1; j <= k; j++)
            if (i + j >= len || (p[i + j] & 0xc0) != 0x80)
                return -1;
        i += k + 1;
        n++;
    }
    return n;
}

static bool idem_key_check(fxb_ctx *ctx, const char *key, fxb_code *rc)
{
    if (key == NULL || key[0] == '\0' || chars_ok(key, IDEM_KEY_MAX, false))
        return true;
    *rc = fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "IDEMPOTENCY_KEY_INVALID", "请求标识格式不正确",
                       "idempotency_key must be 1..%d of [A-Za-z0-9_-]", IDEM_KEY_MAX);
    return false;
}

static bool aid_check(fxb_ctx *ctx, const char *aid, fxb_code *rc)
{
    if (fxb_app_id_valid(aid))
        return true;
    *rc = fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, FXB_APP_ID_INVALID, "办件编号格式不正确",
                       "application_id must be %d of [A-Za-z0-9_-]", FXB_APP_ID_LEN);
    return false;
}

/* An application of the subject, with the item scope of a delegated caller
 * checked (every child's item for a bundle). */
static fxb_code load_for_caller(fxb_ctx *ctx, const char *aid, bool with_history,
                                Fxb__V1__Application **out)
{
    fxb_err err;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    if (fxb_app_read(st, a, aid, with_history, fxb_wall_ms(), out, &err) != FXB_OK) {
        if (err.code == FXB_NOT_FOUND)
            return not_found(ctx);
        return fxb_ctx_fail_err(ctx, &err);
    }
    if (strcmp((*out)->subject_id, subject_of(ctx)) != 0)
        return not_found(ctx);
    if ((*out)->item_code[0] != '\0')
        return fxb_ctx_require_item(ctx, (*out)->item_code);
    const char *key = fxb_app_key(a, aid, "app");
    if (key == NULL)
        return out_of_memory(ctx);
    redisReply *r = fxb_store_command(st, &err, "HGET %s " APP_F_CHILD_ITEMS, key);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    char *items = r->type == REDIS_REPLY_STRING ? fxb_arena_strdup(a, r->str) : NULL;
    freeReplyObject(r);
    char *save = NULL;
    for (char *w = items ? strtok_r(items, " ", &save) : NULL; w != NULL;
         w = strtok_r(NULL, " ", &save))
        if (fxb_ctx_require_item(ctx, w) != FXB_OK)
            return FXB_PERMISSION_DENIED;
    return FXB_OK;
}

static fxb_code reload(fxb_ctx *ctx, const char *aid, bool with_history, Fxb__V1__Application **out)
{
    fxb_err err;
    if (fxb_app_read(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), aid, with_history, fxb_wall_ms(), out,
                     &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static bool is_parent(const Fxb__V1__Application *app)
{
    return app->item_code[0] == '\0' && app->n_child_application_ids > 0;
}

/* --- idempotency ------------------------------------------------------------- */

/* Claims key with value (SET NX EX): true when claimed; otherwise *prior
 * holds the stored value (arena). */
static fxb_code idem_claim(fxb_ctx *ctx, const char *key, const char *value, bool *claimed,
                           char **prior)
{
    fxb_err err;
    *claimed = false;
    *prior = NULL;
    redisReply *r =
        fxb_store_command(fxb_ctx_store(ctx), &err, "SET %s %s NX EX %d", key, value, IDEM_TTL_S);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    *claimed = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (*claimed)
        return FXB_OK;
    r = fxb_store_command(fxb_ctx_store(ctx), &err, "GET %s", key);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (r->type == REDIS_REPLY_STRING)
        *prior = fxb_arena_strdup(fxb_ctx_arena(ctx), r->str);
    freeReplyObject(r);
    if (*prior == NULL) /* expired meanwhile: claim again */
        return idem_claim(ctx, key, value, claimed, prior);
    return FXB_OK;
}

static void idem_set(fxb_ctx *ctx, const char *key, const char *value)
{
    fxb_err err;
    redisReply *r =
        fxb_store_command(fxb_ctx_store(ctx), &err, "SET %s %s EX %d", key, value, IDEM_TTL_S);
    if (r != NULL)
        freeReplyObject(r);
}

static void idem_drop(fxb_ctx *ctx, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "DEL %s", key);
    if (r != NULL)
        freeReplyObject(r);
}

static fxb_code idem_reused(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "IDEMPOTENCY_KEY_REUSED",
                        "请求标识已用于其他操作", "idempotency_key was used for another request");
}

/* --- CreateApplication -------------------------------------------------------- */

/* KEYS: app, history; ARGV: now, then field/value pairs. */
static fxb_script create_script = FXB_SCRIPT(
    "app_create", "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
                  "  return redis.error_reply('FXB 10 APPLICATION_ID_CLASH try again')\n"
                  "end\n"
                  "redis.call('HSET', KEYS[1], unpack(ARGV, 2))\n"
                  "redis.call('XADD', KEYS[2], '*', 'at_ms', ARGV[1], 'from', '', 'to', 'draft',\n"
                  "  'actor_role', redis.call('HGET', KEYS[1], 'actor_role'), 'actor_id',\n"
                  "  redis.call('HGET', KEYS[1], 'filed_by'), 'reason', '创建草稿',\n"
                  "  'legal_basis', '')\n"
                  "redis.call('HDEL', KEYS[1], 'actor_role')\n"
                  "return 1\n");

typedef struct new_app {
    const char *aid;
    const char *item_code, *item_name, *dept, *bundle, *parent, *children, *child_items;
    uint32_t version;
} new_app;

static fxb_code write_new(fxb_ctx *ctx, const new_app *n, int64_t now)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const fxb_caller *c = fxb_ctx_caller(ctx);
    const char *keys[2] = {fxb_app_key(a, n->aid, "app"), fxb_app_key(a, n->aid, "history")};
    const char *apps = subject_key(ctx, "apps");
    char *now_s = num(a, now), *ver = num(a, n->version);
    if (keys[0] == NULL || keys[1] == NULL || apps == NULL || now_s == NULL || ver == NULL)
        return key_failed(ctx);
    const char *args[] = {now_s,
                          APP_F_SUBJECT,
                          subject_of(ctx),
                          APP_F_FILED_BY,
                          actor_of(ctx),
                          APP_F_GRANT,
                          c->delegated ? c->grant_id : "",
                          APP_F_ITEM,
                          n->item_code,
                          APP_F_ITEM_NAME,
                          n->item_name,
                          APP_F_GUIDE_VERSION,
                          ver,
                          APP_F_DEPT,
                          n->dept,
                          APP_F_BUNDLE,
                          n->bundle,
                          APP_F_PARENT,
                          n->parent,
                          APP_F_CHILDREN,
                          n->children,
                          APP_F_CHILD_ITEMS,
                          n->child_items,
                          APP_F_STATUS,
                          "draft",
                          APP_F_CREATED,
                          now_s,
                          APP_F_UPDATED,
                          now_s,
                          APP_F_SUBMISSION,
                          "0",
                          "actor_role",
                          actor_role(ctx)};
    fxb_err err;
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, &create_script, 2, keys,
                                   (int)(sizeof args / sizeof args[0]), args, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    freeReplyObject(r);
    r = fxb_store_command(fxb_ctx_store(ctx), &err, "ZADD %s %s %s", apps, now_s, n->aid);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    freeReplyObject(r);
    return FXB_OK;
}

static fxb_code new_id(fxb_ctx *ctx, char *out)
{
    fxb_err err;
    if (fxb_token_new_id(out, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static fxb_code create_item(fxb_ctx *ctx, const char *aid, const char *code, int64_t now)
{
    Fxb__V1__ServiceItem *it;
    fxb_err err;
    if (fxb_catalog_get(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), code, 0, &it, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    new_app n = {.aid = aid,
                 .item_code = it->code,
                 .item_name = it->name,
                 .dept = it->department,
                 .bundle = "",
                 .parent = "",
                 .children = "",
                 .child_items = "",
                 .version = it->guide ? it->guide->version : it->current_version};
    return write_new(ctx, &n, now);
}

static fxb_code create_bundle(fxb_ctx *ctx, const char *aid, const char *code, int64_t now)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    Fxb__V1__Bundle *b;
    fxb_err err;
    if (fxb_catalog_bundle(fxb_ctx_store(ctx), a, code, &b, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (b->n_item_codes == 0 || b->n_item_codes > BUNDLE_MAX)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, "BUNDLE_INVALID", ZH_BUSY,
                            "the bundle lists no items, or too many");
    Fxb__V1__ServiceItem **items = fxb_arena_calloc(a, b->n_item_codes, sizeof *items);
    if (items == NULL)
        return out_of_memory(ctx);
    for (size_t i = 0; i < b->n_item_codes; i++) {
        if (fxb_catalog_get(fxb_ctx_store(ctx), a, b->item_codes[i], 0, &items[i], &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        if (fxb_ctx_require_item(ctx, items[i]->code) != FXB_OK)
            return FXB_PERMISSION_DENIED;
    }
    char *children = fxb_arena_strdup(a, ""), *child_items = fxb_arena_strdup(a, "");
    for (size_t i = 0; i < b->n_item_codes && children != NULL && child_items != NULL; i++) {
        char cid[FXB_ID_MAX + 1];
        if (new_id(ctx, cid) != FXB_OK)
            return FXB_INTERNAL;
        const Fxb__V1__ServiceItem *it = items[i];
        new_app n = {.aid = cid,
                     .item_code = it->code,
                     .item_name = it->name,
                     .dept = it->department,
                     .bundle = b->code,
                     .parent = aid,
                     .children = "",
                     .child_items = "",
                     .version = it->guide ? it->guide->version : it->current_version};
        fxb_code rc = write_new(ctx, &n, now);
        if (rc != FXB_OK)
            return rc;
        children = fxb_arena_printf(a, "%s%s%s", children, i ? " " : "", cid);
        child_items = fxb_arena_printf(a, "%s%s%s", child_items, i ? " " : "", it->code);
    }
    if (children == NULL || child_items == NULL)
        return out_of_memory(ctx);
    new_app p = {.aid = aid,
                 .item_code = "",
                 .item_name = b->name,
                 .dept = "",
                 .bundle = b->code,
                 .parent = "",
                 .children = children,
                 .child_items = child_items,
                 .version = 0};
    return write_new(ctx, &p, now);
}

static fxb_code create_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__CreateApplicationRequest *req =
        (const Fxb__V1__CreateApplicationRequest *)req_msg;
    Fxb__V1__Application *resp = (Fxb__V1__Application *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_code rc = FXB_OK;
    bool has_item = req->item_code != NULL && req->item_code[0] != '\0';
    bool has_bundle = req->bundle_code != NULL && req->bundle_code[0] != '\0';
    if (has_item == has_bundle)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "ITEM_OR_BUNDLE_REQUIRED",
                            "请选择一个办事事项或“一件事”",
                            "exactly one of item_code and bundle_code is required");
    /* a proxy's scope first: an item outside it is refused before anything
     * about it (existence included) is looked up */
    if (has_item && fxb_ctx_require_item(ctx, req->item_code) != FXB_OK)
        return FXB_PERMISSION_DENIED;
    if (!idem_key_check(ctx, req->idempotency_key, &rc))
        return rc;
    if (fxb_inbox_tag(subject_of(ctx)) == NULL)
        return key_failed(ctx);
    char aid[FXB_ID_MAX + 1];
    if (new_id(ctx, aid) != FXB_OK)
        return FXB_INTERNAL;
    const char *ikey = NULL;
    if (req->idempotency_key != NULL && req->idempotency_key[0] != '\0') {
        char *suffix = fxb_arena_printf(a, "idem:%s", req->idempotency_key);
        ikey = suffix ? subject_key(ctx, suffix) : NULL;
        char *value = fxb_arena_printf(a, "create %s", aid);
        if (ikey == NULL || value == NULL)
            return key_failed(ctx);
        bool claimed;
        char *prior;
        if (idem_claim(ctx, ikey, value, &claimed, &prior) != FXB_OK)
            return FXB_UNAVAILABLE;
        if (!claimed) {
            if (strncmp(prior, "create ", 7) != 0)
                return idem_reused(ctx);
            Fxb__V1__Application *app;
            fxb_err err;
            if (fxb_app_read(fxb_ctx_store(ctx), a, prior + 7, false, fxb_wall_ms(), &app, &err) !=
                FXB_OK) {
                if (err.code == FXB_NOT_FOUND)
                    return fxb_ctx_fail(ctx, FXB_ABORTED, "REQUEST_IN_PROGRESS",
                                        "请求正在处理，请稍后重试",
                                        "the first request with this key is still running");
                return fxb_ctx_fail_err(ctx, &err);
            }
            /* a key names one request: the same key for another item is a
             * client bug, not a retry */
            if (strcmp(app->item_code, has_item ? req->item_code : "") != 0 ||
                (has_bundle && strcmp(app->bundle_code, req->bundle_code) != 0))
                return idem_reused(ctx);
            *resp = *app;
            return FXB_OK;
        }
    }
    int64_t now = fxb_wall_ms();
    rc = has_item ? create_item(ctx, aid, req->item_code, now)
                  : create_bundle(ctx, aid, req->bundle_code, now);
    if (rc != FXB_OK) {
        if (ikey != NULL)
            idem_drop(ctx, ikey);
        return rc;
    }
    Fxb__V1__Application *app;
    if (reload(ctx, aid, false, &app) != FXB_OK)
        return FXB_INTERNAL;
    *resp = *app;
    return FXB_OK;
}

/* --- AttachMaterials ----------------------------------------------------------- */

/* KEYS: app, materials; ARGV: allowed status words, code, value ("" =
 * remove). Returns the previous value ("" none). */
static fxb_script attach_script = FXB_SCRIPT(
    "app_attach", "local st = redis.call('HGET', KEYS[1], 'status')\n"
                  "if not st then\n"
                  "  return redis.error_reply('FXB 5 " FXB_APP_NOT_FOUND " no such application')\n"
                  "end\n"
                  "local ok = false\n"
                  "for w in string.gmatch(ARGV[1], '%S+') do\n"
                  "  if w == st then ok = true end\n"
                  "end\n"
                  "if not ok then\n"
                  "  return redis.error_reply('FXB 9 " FXB_APP_STATE
                  " the application is ' .. string.upper(st))\n"
                  "end\n"
                  "local old = redis.call('HGET', KEYS[2], ARGV[2]) or ''\n"
                  "if ARGV[3] == '' then redis.call('HDEL', KEYS[2], ARGV[2])\n"
                  "else redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end\n"
                  "return old\n");

#define ATTACHABLE "draft needs_correction accepted"

/* Sets what is given for code on aid; counts wallet use when counted. */
static fxb_code attach_write(fxb_ctx *ctx, const char *aid, const char *code, const char *value,
                             bool counted, fxb_err *err)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    const char *keys[2] = {fxb_app_key(a, aid, "app"), fxb_app_key(a, aid, "materials")};
    if (keys[0] == NULL || keys[1] == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    /* count the new entries first: a wallet entry deleted meanwhile is
     * refused by the wallet, never attached uncounted */
    char *copy = fxb_arena_strdup(a, value);
    const char *ids[FXB_APP_FILES_MAX + 1];
    size_t n = 0;
    char *save = NULL;
    for (char *w = copy ? strtok_r(copy, " ", &save) : NULL; w && n < FXB_APP_FILES_MAX + 1;
         w = strtok_r(NULL, " ", &save))
        ids[n++] = w;
    if (counted && fxb_app_material_use(st, subject_of(ctx), ids, n, 1, err) != FXB_OK)
        return err->code;
    const char *args[3] = {ATTACHABLE, code, value};
    redisReply *r = fxb_store_eval(st, err, &attach_script, 2, keys, 3, args, NULL);
    if (r == NULL) {
        fxb_err ignored;
        if (counted)
            fxb_app_material_use(st, subject_of(ctx), ids, n, -1, &ignored);
        return err->code;
    }
    char *old = r->type == REDIS_REPLY_STRING ? fxb_arena_strdup(a, r->str) : NULL;
    freeReplyObject(r);
    if (counted && old != NULL && old[0] != '\0') {
        const char *olds[FXB_APP_FILES_MAX + 1];
        size_t m = 0;
        for (char *w = strtok_r(old, " ", &save); w && m < FXB_APP_FILES_MAX + 1;
             w = strtok_r(NULL, " ", &save))
            olds[m++] = w;
        fxb_err ignored;
        fxb_app_material_use(st, subject_of(ctx), olds, m, -1, &ignored);
    }
    return FXB_OK;
}

static const Fxb__V1__MaterialSpec *spec_of(const Fxb__V1__Guide *g, const char *code)
{
    for (size_t i = 0; g != NULL && i < g->n_materials; i++)
        if (strcmp(g->materials[i]->code, code) == 0)
            return g->materials[i];
    return NULL;
}

static fxb_code guide_of(fxb_ctx *ctx, const Fxb__V1__Application *app, Fxb__V1__ServiceItem **item)
{
    fxb_err err;
    if (fxb_catalog_get(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), app->item_code, app->guide_version,
                        item, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static bool attachable(const Fxb__V1__Application *app)
{
    return app->status == ST(DRAFT) || app->status == ST(NEEDS_CORRECTION) ||
           (app->status == ST(ACCEPTED) && app->n_tolerated_missing > 0);
}

static bool owed(const Fxb__V1__Application *app, const char *code)
{
    for (size_t i = 0; i < app->n_tolerated_missing; i++)
        if (strcmp(app->tolerated_missing[i], code) == 0)
            return true;
    return false;
}

static fxb_code not_in_guide(fxb_ctx *ctx, const char *code)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MATERIAL_NOT_IN_GUIDE",
                        "该材料不在办事指南所列材料中", "material %s is not in the guide", code);
}

static fxb_code attach_materials(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__AttachMaterialsRequest *req = (const Fxb__V1__AttachMaterialsRequest *)req_msg;
    Fxb__V1__Application *resp = (Fxb__V1__Application *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_code rc = FXB_OK;
    if (!aid_check(ctx, req->application_id, &rc))
        return rc;
    if (!chars_ok(req->material_code, MATERIAL_CODE_MAX, false))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MATERIAL_CODE_INVALID",
                            "材料编码格式不正确", "material_code must be 1..%d of [A-Za-z0-9_-]",
                            MATERIAL_CODE_MAX);
    if (req->n_material_ids > FXB_APP_FILES_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "TOO_MANY_MATERIAL_IDS",
                            "一次最多选择10份材料", "at most %d material_ids per call",
                            FXB_APP_FILES_MAX);
    char *value = fxb_arena_strdup(a, "");
    for (size_t i = 0; i < req->n_material_ids && value != NULL; i++) {
        if (!fxb_key_id_valid(req->material_ids[i]))
            return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MATERIAL_ID_INVALID", "材料标识无效",
                                "material_ids[%zu] is not a material id", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->material_ids[i], req->material_ids[j]) == 0)
                return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MATERIAL_ID_REPEATED",
                                    "同一份材料不能重复选择",
                                    "material_ids[%zu] repeats an earlier id", i);
        value = fxb_arena_printf(a, "%s%s%s", value, i ? " " : "", req->material_ids[i]);
    }
    if (value == NULL)
        return out_of_memory(ctx);
    Fxb__V1__Application *app;
    if ((rc = load_for_caller(ctx, req->application_id, false, &app)) != FXB_OK)
        return rc;
    if (!attachable(app))
        return state_refused(ctx, app->status);
    if (app->status == ST(ACCEPTED) && !owed(app, req->material_code))
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, "MATERIAL_NOT_OWED",
                            "受理后只能补交容缺材料",
                            "after acceptance only the tolerated materials may be given");
    /* the applications the material goes to: the application itself, or
     * every child of a bundle whose guide lists the code */
    size_t n_targets = 0;
    const char **targets = fxb_arena_calloc(a, app->n_child_application_ids + 1, sizeof *targets);
    if (targets == NULL)
        return out_of_memory(ctx);
    if (!is_parent(app)) {
        Fxb__V1__ServiceItem *item;
        if ((rc = guide_of(ctx, app, &item)) != FXB_OK)
            return rc;
        if (spec_of(item->guide, req->material_code) == NULL)
            return not_in_guide(ctx, req->material_code);
        targets[n_targets++] = app->application_id;
    } else {
        for (size_t i = 0; i < app->n_child_application_ids; i++) {
            Fxb__V1__Application *child;
            Fxb__V1__ServiceItem *item;
            if ((rc = reload(ctx, app->child_application_ids[i], false, &child)) != FXB_OK)
                return rc;
            if ((rc = guide_of(ctx, child, &item)) != FXB_OK)
                return rc;
            if (spec_of(item->guide, req->material_code) != NULL && attachable(child))
                targets[n_targets++] = child->application_id;
        }
        if (n_targets == 0)
            return not_in_guide(ctx, req->material_code);
    }
    fxb_err err;
    for (size_t i = 0; i < req->n_material_ids; i++) {
        Fxb__V1__Material *m;
        if (fxb_wallet_get(fxb_ctx_store(ctx), a, subject_of(ctx), req->material_ids[i], &m,
                           &err) != FXB_OK) {
            if (err.code == FXB_NOT_FOUND)
                return fxb_ctx_fail(ctx, FXB_NOT_FOUND, FXB_MATERIAL_NOT_FOUND,
                                    "材料库中没有这份材料",
                                    "material_ids[%zu] is not in the "
                                    "wallet",
                                    i);
            return fxb_ctx_fail_err(ctx, &err);
        }
    }
    if (is_parent(app) &&
        attach_write(ctx, app->application_id, req->material_code, value, false, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    for (size_t i = 0; i < n_targets; i++)
        if (attach_write(ctx, targets[i], req->material_code, value, true, &err) != FXB_OK) {
            if (strcmp(err.reason, FXB_APP_STATE) == 0) {
                Fxb__V1__Application *now;
                if (reload(ctx, targets[i], false, &now) == FXB_OK)
                    return state_refused(ctx, now->status);
            }
            return fxb_ctx_fail_err(ctx, &err);
        }
    if (reload(ctx, app->application_id, false, &app) != FXB_OK)
        return FXB_INTERNAL;
    *resp = *app;
    return FXB_OK;
}

/* --- the submit check (art. 17–21) ---------------------------------------------- */

typedef struct problems {
    Fxb__V1__Problem **list;
    size_t n, cap;
} problems;

static const char *form_of(const char *content_type)
{
    if (content_type == NULL)
        return "";
    if (strcmp(content_type, "application/pdf") == 0)
        return "pdf";
    if (strcmp(content_type, "image/jpeg") == 0)
        return "jpeg";
    if (strcmp(content_type, "image/png") == 0)
        return "png";
    return "";
}

static bool listed(char *const *list, size_t n, const char *word)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], word) == 0)
            return true;
    return false;
}

/* "PDF、JPEG" and "电子证照" in plain words. */
static char *forms_text(fxb_arena *a, const Fxb__V1__MaterialSpec *m)
{
    char *t = fxb_arena_strdup(a, "");
    for (size_t i = 0; i < m->n_accepted_forms && t != NULL; i++) {
        const char *f = m->accepted_forms[i];
        const char *up = strcmp(f, "pdf") == 0 ? "PDF" : strcmp(f, "jpeg") == 0 ? "JPEG" : "PNG";
        t = fxb_arena_printf(a, "%s%s%s", t, i ? "、" : "", up);
    }
    if (t == NULL)
        return NULL;
    if (m->n_accepted_forms > 0 && m->n_licence_types > 0)
        return fxb_arena_printf(a, "%s格式的文件，或对应的电子证照", t);
    if (m->n_licence_types > 0)
        return fxb_arena_strdup(a, "对应的电子证照（不接受上传文件）");
    return fxb_arena_printf(a, "%s格式的文件", t);
}

static bool add_problem(fxb_arena *a, problems *p, const Fxb__V1__MaterialSpec *m,
                        Fxb__V1__ProblemKind kind, const char *why, const char *how)
{
    if (p->n == FXB_APP_PROBLEMS_MAX)
        return true;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 8;
        Fxb__V1__Problem **l = fxb_arena_calloc(a, cap, sizeof *l);
        if (l == NULL)
            return false;
        if (p->n)
            memcpy(l, p->list, p->n * sizeof *l);
        p->list = l;
        p->cap = cap;
    }
    Fxb__V1__Problem *x = fxb_arena_alloc(a, sizeof *x);
    if (x == NULL || why == NULL || how == NULL)
        return false;
    fxb__v1__problem__init(x);
    x->material_code = m->code;
    x->material_name = m->name;
    x->kind = kind;
    x->why = (char *)why;
    x->how_to_fix = (char *)how;
    p->list[p->n++] = x;
    return true;
}

/* Where to get it, from the guide's own words. */
static char *source_text(fxb_arena *a, const Fxb__V1__MaterialSpec *m)
{
    const char *desc = m->description && m->description[0] ? m->description : m->name;
    if (m->source && m->source[0])
        return fxb_arena_printf(a, "%s（办理单位：%s）", desc, m->source);
    return fxb_arena_strdup(a, desc);
}

typedef struct given_info {
    const Fxb__V1__MaterialGiven *given; /* NULL: nothing given */
    const char *auto_id;                 /* a licence the server attaches */
} given_info;

static const Fxb__V1__MaterialGiven *given_of(const Fxb__V1__Application *app, const char *code)
{
    for (size_t i = 0; i < app->n_materials; i++)
        if (strcmp(app->materials[i]->material_code, code) == 0 &&
            app->materials[i]->n_material_ids > 0)
            return app->materials[i];
    return NULL;
}

static const Fxb__V1__Material *wallet_find(Fxb__V1__Material **w, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(w[i]->material_id, id) == 0)
            return w[i];
    return NULL;
}

static bool licence_live(const Fxb__V1__Material *m, int64_t now)
{
    return m->valid_until_ms == 0 || m->valid_until_ms > now;
}

/* A valid licence of the wallet the material accepts (art. 19), newest
 * first; NULL none. */
static const char *licence_for(const Fxb__V1__MaterialSpec *m, Fxb__V1__Material **w, size_t n,
                               int64_t now)
{
    for (size_t i = 0; i < n; i++)
        if (w[i]->kind == FXB__V1__MATERIAL_KIND__MATERIAL_KIND_LICENCE &&
            listed(m->licence_types, m->n_licence_types, w[i]->licence_type) &&
            licence_live(w[i], now))
            return w[i]->material_id;
    return NULL;
}

/* Checks one material against what is given; problems appended. */
static bool check_one(fxb_arena *a, const Fxb__V1__MaterialSpec *m, const char *const *ids,
                      size_t n_ids, Fxb__V1__Material **w, size_t nw, int64_t now, problems *p)
{
    char *src = source_text(a, m);
    char *forms = forms_text(a, m);
    if (src == NULL || forms == NULL)
        return false;
    uint32_t max = m->max_files ? m->max_files : 1;
    bool gone = false, form = false, expired = false;
    for (size_t i = 0; i < n_ids; i++) {
        const Fxb__V1__Material *x = wallet_find(w, nw, ids[i]);
        if (x == NULL) {
            gone = true;
        } else if (x->kind == FXB__V1__MATERIAL_KIND__MATERIAL_KIND_LICENCE) {
            if (!listed(m->licence_types, m->n_licence_types, x->licence_type))
                form = true;
            else if (!licence_live(x, now))
                expired = true;
        } else if (!listed(m->accepted_forms, m->n_accepted_forms, form_of(x->content_type))) {
            form = true;
        }
    }
    if (gone && !add_problem(a, p, m, PK(MATERIAL_GONE),
                             fxb_arena_printf(a, "“%s”所选的材料已从材料库中删除", m->name),
                             fxb_arena_printf(a, "请重新上传或选择：%s", src)))
        return false;
    if (form && !add_problem(a, p, m, PK(FORM_NOT_ACCEPTED),
                             fxb_arena_printf(a, "“%s”提交的文件格式或证照类型不符合要求", m->name),
                             fxb_arena_printf(a, "请提供%s：%s", forms, src)))
        return false;
    if (expired &&
        !add_problem(a, p, m, PK(LICENCE_EXPIRED),
                     fxb_arena_printf(a, "“%s”所用的电子证照已过有效期", m->name),
                     fxb_arena_printf(a, "请换领有效证照后重新提交，或上传%s：%s", forms, src)))
        return false;
    if (n_ids > max &&
        !add_problem(a, p, m, PK(TOO_MANY_FILES),
                     fxb_arena_printf(a, "“%s”最多可提交%u份，已提交%zu份", m->name, max, n_ids),
                     fxb_arena_printf(a, "请删除多余的材料，保留不超过%u份", max)))
        return false;
    return true;
}

typedef struct check {
    problems p;
    /* auto-attached licences: code -> id */
    const char **auto_codes, **auto_ids;
    size_t n_auto;
    bool only_tolerable; /* every problem is TOLERABLE_MISSING */
    char **tolerable;    /* codes of the tolerable materials missing */
    size_t n_tolerable;
} check;

/* The complete check of an application against its guide version: every
 * material of the guide, nothing else (art. 17, 18). */
static bool check_application(fxb_arena *a, const Fxb__V1__Application *app,
                              const Fxb__V1__Guide *g, Fxb__V1__Material **w, size_t nw,
                              int64_t now, check *c)
{
    memset(c, 0, sizeof *c);
    size_t nm = g->n_materials ? g->n_materials : 1;
    c->auto_codes = fxb_arena_calloc(a, nm, sizeof *c->auto_codes);
    c->auto_ids = fxb_arena_calloc(a, nm, sizeof *c->auto_ids);
    c->tolerable = fxb_arena_calloc(a, nm, sizeof *c->tolerable);
    if (c->auto_codes == NULL || c->auto_ids == NULL || c->tolerable == NULL)
        return false;
    for (size_t i = 0; i < g->n_materials; i++) {
        const Fxb__V1__MaterialSpec *m = g->materials[i];
        const Fxb__V1__MaterialGiven *given = given_of(app, m->code);
        if (given != NULL) {
            if (!check_one(a, m, (const char *const *)given->material_ids, given->n_material_ids, w,
                           nw, now, &c->p))
                return false;
            continue;
        }
        const char *lic = licence_for(m, w, nw, now);
        if (lic != NULL) {
            c->auto_codes[c->n_auto] = m->code;
            c->auto_ids[c->n_auto++] = lic;
            continue;
        }
        char *src = source_text(a, m), *forms = forms_text(a, m);
        if (src == NULL || forms == NULL)
            return false;
        if (m->requirement == RQ(REQUIRED)) {
            if (!add_problem(a, &c->p, m, PK(MISSING),
                             fxb_arena_printf(a, "缺少必需材料“%s”", m->name),
                             fxb_arena_printf(a, "请提供%s：%s", forms, src)))
                return false;
        } else if (m->requirement == RQ(TOLERABLE)) {
            c->tolerable[c->n_tolerable++] = m->code;
            if (!add_problem(a, &c->p, m, PK(TOLERABLE_MISSING),
                             fxb_arena_printf(a, "容缺材料“%s”未提交", m->name),
                             fxb_arena_printf(a,
                                              "可签署容缺承诺先行受理，并在期限内补交；"
                                              "或现在提供%s：%s",
                                              forms, src)))
                return false;
        }
    }
    c->only_tolerable = c->p.n > 0;
    for (size_t i = 0; i < c->p.n; i++)
        if (c->p.list[i]->kind != PK(TOLERABLE_MISSING))
            c->only_tolerable = false;
    return true;
}

/* --- SubmitApplication ----------------------------------------------------------- */

static fxb_code credit_check(fxb_ctx *ctx)
{
    fxb_err err;
    redisReply *r =
        fxb_store_command(fxb_ctx_store(ctx), &err,
                          "HMGET fxb:credit:%s bad_credit false_commitment", subject_of(ctx));
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool excluded = false;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        const redisReply *bad = r->element[0], *fc = r->element[1];
        excluded = (bad->type == REDIS_REPLY_STRING && strcmp(bad->str, "0") != 0 &&
                    bad->str[0] != '\0') ||
                   (fc->type == REDIS_REPLY_STRING && fc->str[0] != '\0');
    }
    freeReplyObject(r);
    if (excluded)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, "CREDIT_EXCLUDED",
                            "因信用记录（失信或曾作出不实承诺），暂不能选择告知承诺方式办理，"
                            "请按一般程序提交材料",
                            "the subject's credit record excludes notify-and-commit (art. 21)");
    return FXB_OK;
}

typedef struct submit_flags {
    bool tolerance;
    bool notify_commit;
    bool bundle; /* part of a bundle: a guide without 告知承诺 is no error */
} submit_flags;

typedef struct submit_out {
    Fxb__V1__SubmitOutcome outcome;
    problems p;
    int64_t fix_by;
} submit_out;

/* A set list builder: field / value pairs, NULL-terminated. */
typedef struct pairs {
    const char *v[48];
    size_t n;
} pairs;

static void put(pairs *p, const char *field, const char *value)
{
    if (p->n + 3 <= sizeof p->v / sizeof p->v[0]) {
        p->v[p->n++] = field;
        p->v[p->n++] = value ? value : "";
        p->v[p->n] = NULL;
    }
}

/* Submits one application (not a bundle parent). */
static fxb_code submit_one(fxb_ctx *ctx, const Fxb__V1__Application *app, submit_flags f,
                           Fxb__V1__Material **w, size_t nw, int64_t now, submit_out *out)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    memset(out, 0, sizeof *out);
    if (app->status != ST(DRAFT) && app->status != ST(NEEDS_CORRECTION))
        return state_refused(ctx, app->status);
    Fxb__V1__ServiceItem *item;
    fxb_code rc = guide_of(ctx, app, &item);
    if (rc != FXB_OK)
        return rc;
    const Fxb__V1__Guide *g = item->guide;
    bool commit = f.notify_commit && !g->immediate;
    if (commit && !g->notify_commit_allowed) {
        if (!f.bundle)
            return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, "NOTIFY_COMMIT_NOT_ALLOWED",
                                "该事项不适用告知承诺制",
                                "the guide does not allow notify-and-"
                                "commit");
        commit = false;
    }
    if (commit && (rc = credit_check(ctx)) != FXB_OK)
        return rc;
    check c;
    if (!check_application(a, app, g, w, nw, now, &c))
        return out_of_memory(ctx);
    fxb_err err;
    /* art. 19: the licences the wallet holds are attached, whatever the
     * outcome, so they are never asked for again */
    for (size_t i = 0; i < c.n_auto; i++) {
        char *v = fxb_arena_printf(a, "+%s", c.auto_ids[i]);
        if (v == NULL)
            return out_of_memory(ctx);
        if (attach_write(ctx, app->application_id, c.auto_codes[i], v, true, &err) != FXB_OK) {
            if (strcmp(err.reason, FXB_APP_STATE) == 0)
                return fxb_ctx_fail_err(ctx, &err);
            return fxb_ctx_fail_err(ctx, &err);
        }
    }

    pairs set = {.n = 0};
    set.v[0] = NULL;
    const char *del[8] = {NULL};
    size_t nd = 0;
    char *now_s = num(a, now), *sub = num(a, (int64_t)app->submission + 1);
    if (now_s == NULL || sub == NULL)
        return out_of_memory(ctx);
    put(&set, APP_F_SUBMITTED, now_s);
    put(&set, APP_F_SUBMISSION, sub);
    fxb_app_status to;
    const char *reason = "";
    if (g->immediate && c.p.n == 0) {
        to = ST(COMPLETED);
        out->outcome = OC(COMPLETED);
        put(&set, APP_F_ACCEPTED, now_s);
        put(&set, APP_F_DECIDED, now_s);
        put(&set, APP_F_COMPLETED, now_s);
        del[nd++] = APP_F_PROBLEMS;
        del[nd++] = APP_F_FIX_BY;
        reason = "即办件，当场办结";
    } else if (commit && c.p.n == 0) {
        to = ST(APPROVED);
        out->outcome = OC(APPROVED_COMMITTED);
        put(&set, APP_F_DECIDED, now_s);
        put(&set, APP_F_NOTIFY_COMMIT, "1");
        del[nd++] = APP_F_PROBLEMS;
        del[nd++] = APP_F_FIX_BY;
        reason = "申请人作出告知承诺，直接审批";
    } else if (c.only_tolerable && f.tolerance && g->tolerated_acceptance) {
        to = ST(ACCEPTED);
        out->outcome = OC(ACCEPTED_TOLERATED);
        int64_t sup_ms, dl_ms;
        uint32_t dl_date;
        if (fxb_app_deadline(st, now, g->supplement_working_days, NULL, &sup_ms, &err) != FXB_OK ||
            fxb_app_deadline(st, now, g->time_limit_working_days, &dl_date, &dl_ms, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        char *tol = fxb_arena_strdup(a, "");
        for (size_t i = 0; i < c.n_tolerable && tol != NULL; i++)
            tol = fxb_arena_printf(a, "%s%s%s", tol, i ? " " : "", c.tolerable[i]);
        char *probs = fxb_app_problems_encode(a, c.p.list, c.p.n);
        if (tol == NULL || probs == NULL)
            return out_of_memory(ctx);
        put(&set, APP_F_ACCEPTED, now_s);
        put(&set, APP_F_SUPPLEMENT_BY, num(a, sup_ms));
        put(&set, APP_F_TOLERATED, tol);
        put(&set, APP_F_TIME_LIMIT, num(a, g->time_limit_working_days));
        put(&set, APP_F_DEADLINE_DATE, num(a, dl_date));
        put(&set, APP_F_DEADLINE_MS, num(a, dl_ms));
        put(&set, APP_F_PROBLEMS, probs);
        del[nd++] = APP_F_FIX_BY;
        reason = "容缺受理：申请人已签署容缺承诺";
        out->p = c.p;
    } else if (c.p.n > 0) {
        to = ST(NEEDS_CORRECTION);
        out->outcome = OC(NEEDS_CORRECTION);
        int64_t fix_by =
            app->status == ST(NEEDS_CORRECTION) && app->fix_by_ms > 0 ? app->fix_by_ms : 0;
        if (fix_by == 0 &&
            fxb_app_deadline(st, now, g->correction_working_days, NULL, &fix_by, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        char *probs = fxb_app_problems_encode(a, c.p.list, c.p.n);
        if (probs == NULL)
            return out_of_memory(ctx);
        put(&set, APP_F_FIX_BY, num(a, fix_by));
        put(&set, APP_F_PROBLEMS, probs);
        out->p = c.p;
        out->fix_by = fix_by;
        reason = "材料不齐全或不符合法定形式，一次性告知需补正的全部内容";
    } else {
        to = ST(SUBMITTED);
        out->outcome = OC(SUBMITTED);
        del[nd++] = APP_F_PROBLEMS;
        del[nd++] = APP_F_FIX_BY;
        reason = "材料齐全，等待受理";
    }
    for (size_t i = 0; i < set.n; i++)
        if (set.v[i] == NULL)
            return out_of_memory(ctx);
    static const fxb_app_status from[] = {ST(DRAFT), ST(NEEDS_CORRECTION)};
    fxb_app_change ch = {.aid = app->application_id,
                         .from = from,
                         .n_from = 2,
                         .to = to,
                         .actor_role = actor_role(ctx),
                         .actor_id = actor_of(ctx),
                         .reason = reason,
                         .legal_basis = "",
                         .set = set.v,
                         .del = del,
                         .now_ms = now};
    if (fxb_app_transition(st, a, &ch, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (to == ST(COMPLETED) && g->result_licence_type && g->result_licence_type[0] != '\0') {
        if (deps.crypto == NULL) {
            fxb_log(FXB_LOG_ERROR, "filing: no data keys: result licence not issued");
        } else if (fxb_app_issue_result(st, deps.crypto, app, item, now, NULL, &err) != FXB_OK) {
            /* the application is completed either way; the licence can be
             * issued again by an officer */
            fxb_log(FXB_LOG_WARN, "filing: result licence not issued: %s", err.reason);
        }
    }
    return FXB_OK;
}

static int outcome_rank(Fxb__V1__SubmitOutcome o)
{
    switch (o) {
    case OC(NEEDS_CORRECTION):
        return 1;
    case OC(SUBMITTED):
        return 2;
    case OC(ACCEPTED_TOLERATED):
        return 3;
    case OC(APPROVED_COMMITTED):
        return 4;
    case OC(COMPLETED):
        return 5;
    default:
        return 9;
    }
}

static const char *outcome_zh(Fxb__V1__SubmitOutcome o)
{
    switch (o) {
    case OC(NEEDS_CORRECTION):
        return "需要补正";
    case OC(SUBMITTED):
        return "已提交，等待受理";
    case OC(ACCEPTED_TOLERATED):
        return "容缺受理";
    case OC(APPROVED_COMMITTED):
        return "告知承诺，已批准";
    case OC(COMPLETED):
        return "即办件，已办结";
    default:
        return "";
    }
}

/* KEYS: parent app, parent history; ARGV: now, submission, reason, actor
 * role, actor id. One entry of the parent's history per child outcome. */
static fxb_script bundle_note_script = FXB_SCRIPT(
    "app_bundle_note",
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if not st then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'submitted_at_ms', ARGV[1], 'submission', ARGV[2])\n"
    "redis.call('XADD', KEYS[2], '*', 'at_ms', ARGV[1], 'from', st, 'to', st,\n"
    "  'actor_role', ARGV[4], 'actor_id', ARGV[5], 'reason', ARGV[3], 'legal_basis', '')\n"
    "return 1\n");

static void bundle_note(fxb_ctx *ctx, const Fxb__V1__Application *parent, const char *reason,
                        int64_t now)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *keys[2] = {fxb_app_key(a, parent->application_id, "app"),
                           fxb_app_key(a, parent->application_id, "history")};
    const char *args[5] = {num(a, now), num(a, (int64_t)parent->submission + 1), reason,
                           actor_role(ctx), actor_of(ctx)};
    if (keys[0] == NULL || keys[1] == NULL || args[0] == NULL || args[1] == NULL)
        return;
    fxb_err err;
    redisReply *r =
        fxb_store_eval(fxb_ctx_store(ctx), &err, &bundle_note_script, 2, keys, 5, args, NULL);
    if (r != NULL)
        freeReplyObject(r);
}

/* Submits every child of a bundle still to be submitted, with the same
 * materials; one result for the whole. */
static fxb_code submit_bundle(fxb_ctx *ctx, const Fxb__V1__Application *parent, submit_flags f,
                              Fxb__V1__Material **w, size_t nw, int64_t now,
                              Fxb__V1__SubmitResult *res)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_code rc;
    if (parent->status != ST(DRAFT) && parent->status != ST(NEEDS_CORRECTION))
        return state_refused(ctx, parent->status);
    if (f.notify_commit && (rc = credit_check(ctx)) != FXB_OK)
        return rc;
    f.bundle = true;
    problems all = {0};
    int best = 99;
    size_t submitted = 0;
    for (size_t i = 0; i < parent->n_child_application_ids; i++) {
        Fxb__V1__Application *child;
        if ((rc = reload(ctx, parent->child_application_ids[i], false, &child)) != FXB_OK)
            return rc;
        if (child->status != ST(DRAFT) && child->status != ST(NEEDS_CORRECTION))
            continue;
        submit_out o;
        if ((rc = submit_one(ctx, child, f, w, nw, now, &o)) != FXB_OK)
            return rc;
        submitted++;
        const char *note = fxb_arena_printf(a, "%s：%s", child->item_name, outcome_zh(o.outcome));
        if (note != NULL)
            bundle_note(ctx, parent, note, now);
        if (outcome_rank(o.outcome) < best) {
            best = outcome_rank(o.outcome);
            res->outcome = o.outcome;
        }
        if (o.fix_by > 0 && (res->fix_by_ms == 0 || o.fix_by < res->fix_by_ms))
            res->fix_by_ms = o.fix_by;
        for (size_t k = 0; k < o.p.n; k++) {
            Fxb__V1__Problem *x = fxb_arena_alloc(a, sizeof *x);
            if (x == NULL)
                return out_of_memory(ctx);
            *x = *o.p.list[k];
            x->material_name =
                fxb_arena_printf(a, "%s（%s）", o.p.list[k]->material_name, child->item_name);
            const Fxb__V1__MaterialSpec m = {.code = x->material_code, .name = x->material_name};
            if (x->material_name == NULL ||
                !add_problem(a, &all, &m, x->kind, x->why, x->how_to_fix))
                return out_of_memory(ctx);
        }
    }
    if (submitted == 0)
        return state_refused(ctx, parent->status);
    res->problems = all.list;
    res->n_problems = all.n;
    return FXB_OK;
}

static char *hex_of(fxb_arena *a, const uint8_t *b, size_t n)
{
    char *h = fxb_arena_alloc(a, 2 * n + 1);
    if (h == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        snprintf(h + 2 * i, 3, "%02x", b[i]);
    h[2 * n] = '\0';
    return h;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The first answer stored under an idempotency key. */
static fxb_code submit_replay(fxb_ctx *ctx, const char *aid, const char *prior,
                              Fxb__V1__SubmitResult *resp)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    size_t alen = strlen(aid);
    if (strncmp(prior, "submit ", 7) != 0 || strncmp(prior + 7, aid, alen) != 0 ||
        prior[7 + alen] != ' ')
        return idem_reused(ctx);
    const char *hex = prior + 8 + alen;
    if (strcmp(hex, "pending") == 0)
        return fxb_ctx_fail(ctx, FXB_ABORTED, "REQUEST_IN_PROGRESS", "请求正在处理，请稍后重试",
                            "the first request with this key is still running");
    size_t n = strlen(hex) / 2;
    uint8_t *buf = fxb_arena_alloc(a, n ? n : 1);
    if (buf == NULL)
        return out_of_memory(ctx);
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return fxb_ctx_fail(ctx, FXB_DATA_LOSS, "IDEMPOTENT_ANSWER_UNREADABLE", ZH_BUSY,
                                "the stored answer cannot be read");
        buf[i] = (uint8_t)(hi * 16 + lo);
    }
    Fxb__V1__SubmitResult *r = fxb__v1__submit_result__unpack(fxb_arena_allocator(a), n, buf);
    if (r == NULL)
        return fxb_ctx_fail(ctx, FXB_DATA_LOSS, "IDEMPOTENT_ANSWER_UNREADABLE", ZH_BUSY,
                            "the stored answer cannot be read");
    *resp = *r;
    return FXB_OK;
}

static fxb_code submit_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SubmitApplicationRequest *req =
        (const Fxb__V1__SubmitApplicationRequest *)req_msg;
    Fxb__V1__SubmitResult *resp = (Fxb__V1__SubmitResult *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_code rc = FXB_OK;
    if (!aid_check(ctx, req->application_id, &rc) ||
        !idem_key_check(ctx, req->idempotency_key, &rc))
        return rc;
    Fxb__V1__Application *app;
    if ((rc = load_for_caller(ctx, req->application_id, false, &app)) != FXB_OK)
        return rc;
    if (app->parent_application_id[0] != '\0')
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, "BUNDLE_CHILD", "请通过“一件事”整体提交",
                            "a bundle's child is submitted with its "
                            "bundle (submit the parent)");
    const char *ikey = NULL;
    if (req->idempotency_key != NULL && req->idempotency_key[0] != '\0') {
        char *suffix = fxb_arena_printf(a, "idem:%s", req->idempotency_key);
        ikey = suffix ? subject_key(ctx, suffix) : NULL;
        char *value = fxb_arena_printf(a, "submit %s pending", app->application_id);
        if (ikey == NULL || value == NULL)
            return key_failed(ctx);
        bool claimed;
        char *prior;
        if (idem_claim(ctx, ikey, value, &claimed, &prior) != FXB_OK)
            return FXB_UNAVAILABLE;
        if (!claimed)
            return submit_replay(ctx, app->application_id, prior, resp);
    }
    Fxb__V1__Material **w;
    size_t nw;
    fxb_err err;
    int64_t now = fxb_wall_ms();
    submit_flags f = {.tolerance = req->sign_tolerance_commitment,
                      .notify_commit = req->notify_commit};
    if (fxb_wallet_list(fxb_ctx_store(ctx), a, subject_of(ctx), &w, &nw, &err) != FXB_OK)
        rc = fxb_ctx_fail_err(ctx, &err);
    else if (is_parent(app))
        rc = submit_bundle(ctx, app, f, w, nw, now, resp);
    else {
        submit_out o;
        rc = submit_one(ctx, app, f, w, nw, now, &o);
        if (rc == FXB_OK) {
            resp->outcome = o.outcome;
            resp->problems = o.p.list;
            resp->n_problems = o.p.n;
            resp->fix_by_ms = o.fix_by;
        }
    }
    if (rc == FXB_OK)
        rc = reload(ctx, app->application_id, false, &resp->application);
    if (rc != FXB_OK) {
        if (ikey != NULL)
            idem_drop(ctx, ikey);
        return rc;
    }
    if (ikey != NULL) {
        size_t len = fxb__v1__submit_result__get_packed_size(resp);
        uint8_t *buf = fxb_arena_alloc(a, len ? len : 1);
        char *hex = buf ? hex_of(a, buf, fxb__v1__submit_result__pack(resp, buf)) : NULL;
        char *value = hex ? fxb_arena_printf(a, "submit %s %s", app->application_id, hex) : NULL;
        if (value != NULL)
            idem_set(ctx, ikey, value);
        else
            idem_drop(ctx, ikey);
    }
    return FXB_OK;
}

/* --- SupplementMaterials ------------------------------------------------------------ */

static fxb_code supplement_materials(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                     ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SupplementMaterialsRequest *req =
        (const Fxb__V1__SupplementMaterialsRequest *)req_msg;
    Fxb__V1__Application *resp = (Fxb__V1__Application *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_code rc = FXB_OK;
    if (!aid_check(ctx, req->application_id, &rc))
        return rc;
    Fxb__V1__Application *app;
    if ((rc = load_for_caller(ctx, req->application_id, false, &app)) != FXB_OK)
        return rc;
    if (app->status != ST(ACCEPTED))
        return state_refused(ctx, app->status);
    if (app->n_tolerated_missing == 0)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, "NOTHING_TO_SUPPLEMENT",
                            "该办件没有需要补交的容缺材料",
                            "the application owes no tolerated material");
    Fxb__V1__ServiceItem *item;
    if ((rc = guide_of(ctx, app, &item)) != FXB_OK)
        return rc;
    Fxb__V1__Material **w;
    size_t nw;
    fxb_err err;
    int64_t now = fxb_wall_ms();
    if (fxb_wallet_list(fxb_ctx_store(ctx), a, subject_of(ctx), &w, &nw, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char *missing = fxb_arena_strdup(a, ""), *missing_zh = fxb_arena_strdup(a, "");
    size_t n_missing = 0;
    for (size_t i = 0; i < app->n_tolerated_missing && missing && missing_zh; i++) {
        const Fxb__V1__MaterialSpec *m = spec_of(item->guide, app->tolerated_missing[i]);
        if (m == NULL)
            continue;
        const Fxb__V1__MaterialGiven *g = given_of(app, m->code);
        problems p = {0};
        if (g != NULL && !check_one(a, m, (const char *const *)g->material_ids, g->n_material_ids,
                                    w, nw, now, &p))
            return out_of_memory(ctx);
        if (g != NULL && p.n == 0)
            continue;
        missing = fxb_arena_printf(a, "%s%s%s", missing, n_missing ? ", " : "", m->code);
        missing_zh = fxb_arena_printf(a, "%s%s“%s”", missing_zh, n_missing ? "、" : "", m->name);
        n_missing++;
    }
    if (missing == NULL || missing_zh == NULL)
        return out_of_memory(ctx);
    if (n_missing > 0) {
        char *zh = fxb_arena_printf(a, "以下容缺材料尚未补齐或不符合要求：%s", missing_zh);
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, "SUPPLEMENT_INCOMPLETE",
                            zh ? zh : "容缺材料尚未补齐", "still missing: %s", missing);
    }
    static const fxb_app_status from[] = {ST(ACCEPTED)};
    static const char *const del[] = {APP_F_TOLERATED, APP_F_SUPPLEMENT_BY, APP_F_PROBLEMS, NULL};
    fxb_app_change ch = {.aid = app->application_id,
                         .from = from,
                         .n_from = 1,
                         .to = ST(ACCEPTED),
                         .actor_role = actor_role(ctx),
                         .actor_id = actor_of(ctx),
                         .reason = "容缺材料已补齐",
                         .del = del,
                         .now_ms = now};
    if (fxb_app_transition(fxb_ctx_store(ctx), a, &ch, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (reload(ctx, app->application_id, false, &app) != FXB_OK)
        return FXB_INTERNAL;
    *resp = *app;
    return FXB_OK;
}

/* --- WithdrawApplication ------------------------------------------------------------- */

static const fxb_app_status withdrawable[] = {ST(DRAFT), ST(NEEDS_CORRECTION), ST(SUBMITTED),
                                              ST(ACCEPTED)};
#define N_WITHDRAWABLE (sizeof withdrawable / sizeof withdrawable[0])

static bool can_withdraw(fxb_app_status s)
{
    for (size_t i = 0; i < N_WITHDRAWABLE; i++)
        if (withdrawable[i] == s)
            return true;
    return false;
}

static fxb_code withdraw_one(fxb_ctx *ctx, const char *aid, const char *reason, int64_t now)
{
    fxb_err err;
    fxb_app_change ch = {.aid = aid,
                         .from = withdrawable,
                         .n_from = N_WITHDRAWABLE,
                         .to = ST(WITHDRAWN),
                         .actor_role = actor_role(ctx),
                         .actor_id = actor_of(ctx),
                         .reason = reason,
                         .now_ms = now};
    if (fxb_app_transition(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), &ch, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static fxb_code withdraw_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                     ProtobufCMessage *resp_msg)
{
    const Fxb__V1__WithdrawApplicationRequest *req =
        (const Fxb__V1__WithdrawApplicationRequest *)req_msg;
    Fxb__V1__Application *resp = (Fxb__V1__Application *)resp_msg;
    fxb_code rc = FXB_OK;
    if (!aid_check(ctx, req->application_id, &rc))
        return rc;
    const char *reason = req->reason && req->reason[0] ? req->reason : "申请人主动撤回";
    long chars = text_chars(reason, 4 * REASON_MAX);
    if (chars < 0 || chars > REASON_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "REASON_INVALID", "撤回原因最多200个字符",
                            "reason must be 0..%d characters of text", REASON_MAX);
    Fxb__V1__Application *app;
    if ((rc = load_for_caller(ctx, req->application_id, false, &app)) != FXB_OK)
        return rc;
    if (!can_withdraw(app->status))
        return state_refused(ctx, app->status);
    int64_t now = fxb_wall_ms();
    if (is_parent(app)) {
        for (size_t i = 0; i < app->n_child_application_ids; i++) {
            Fxb__V1__Application *child;
            if ((rc = reload(ctx, app->child_application_ids[i], false, &child)) != FXB_OK)
                return rc;
            if (can_withdraw(child->status) &&
                (rc = withdraw_one(ctx, child->application_id, reason, now)) != FXB_OK)
                return rc;
        }
    } else if ((rc = withdraw_one(ctx, app->application_id, reason, now)) != FXB_OK) {
        return rc;
    }
    if (reload(ctx, app->application_id, false, &app) != FXB_OK)
        return FXB_INTERNAL;
    *resp = *app;
    return FXB_OK;
}

/* --- GetApplication / ListApplications ------------------------------------------------ */

static fxb_code get_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetApplicationRequest *req = (const Fxb__V1__GetApplicationRequest *)req_msg;
    Fxb__V1__Application *resp = (Fxb__V1__Application *)resp_msg;
    fxb_code rc = FXB_OK;
    if (!aid_check(ctx, req->application_id, &rc))
        return rc;
    Fxb__V1__Application *app;
    if ((rc = load_for_caller(ctx, req->application_id, true, &app)) != FXB_OK)
        return rc;
    *resp = *app;
    return FXB_OK;
}

/* Page tokens: hex of "<created_at_ms>:<aid>", the last of the page. */
static char *token_encode(fxb_arena *a, int64_t score, const char *aid)
{
    char *raw = fxb_arena_printf(a, "%" PRId64 ":%s", score, aid);
    return raw ? hex_of(a, (const uint8_t *)raw, strlen(raw)) : NULL;
}

static bool token_decode(const char *tok, int64_t *score, char aid[FXB_ID_MAX + 1])
{
    size_t n = strnlen(tok, PAGE_TOKEN_MAX + 1);
    if (n == 0 || n > PAGE_TOKEN_MAX || n % 2 != 0)
        return false;
    char raw[PAGE_TOKEN_MAX / 2 + 1];
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(tok[2 * i]), lo = hexval(tok[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        raw[i] = (char)(hi * 16 + lo);
    }
    raw[n / 2] = '\0';
    if (strlen(raw) != n / 2)
        return false;
    char *colon = strchr(raw, ':');
    if (colon == NULL || colon == raw || colon - raw > 18)
        return false;
    *colon = '\0';
    for (const char *p = raw; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    if (!fxb_app_id_valid(colon + 1))
        return false;
    *score = strtoll(raw, NULL, 10);
    memcpy(aid, colon + 1, strlen(colon + 1) + 1);
    return true;
}

/* Whether a delegated caller's grant admits the item (by code or its
 * catalogue category). */
static bool scope_admits(fxb_ctx *ctx, const char *code)
{
    const fxb_caller *c = fxb_ctx_caller(ctx);
    if (!c->delegated)
        return true;
    if (code == NULL || code[0] == '\0')
        return false;
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err,
                                      "HGET " FXB_CATALOG_KEY_ITEM_PREFIX "%s category", code);
    const char *cat = NULL;
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        cat = fxb_arena_strdup(fxb_ctx_arena(ctx), r->str);
    if (r != NULL)
        freeReplyObject(r);
    return fxb_scope_allows_item(c->scope, code, cat);
}

static bool listable(fxb_ctx *ctx, const Fxb__V1__Application *app)
{
    if (!fxb_ctx_caller(ctx)->delegated)
        return true;
    if (app->item_code[0] != '\0')
        return scope_admits(ctx, app->item_code);
    fxb_err err;
    const char *key = fxb_app_key(fxb_ctx_arena(ctx), app->application_id, "app");
    redisReply *r =
        key ? fxb_store_command(fxb_ctx_store(ctx), &err, "HGET %s " APP_F_CHILD_ITEMS, key) : NULL;
    char *items =
        r && r->type == REDIS_REPLY_STRING ? fxb_arena_strdup(fxb_ctx_arena(ctx), r->str) : NULL;
    if (r != NULL)
        freeReplyObject(r);
    if (items == NULL || items[0] == '\0')
        return false;
    char *save = NULL;
    for (char *w = strtok_r(items, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
        if (!scope_admits(ctx, w))
            return false;
    return true;
}

static fxb_code list_applications(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                  ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListApplicationsRequest *req = (const Fxb__V1__ListApplicationsRequest *)req_msg;
    Fxb__V1__ListApplicationsResponse *resp = (Fxb__V1__ListApplicationsResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    if (req->page_size > PAGE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_SIZE_INVALID",
                            "每页条数应在1到100之间", "page_size must be 1..%d (0 = %d)", PAGE_MAX,
                            PAGE_DEFAULT);
    size_t page = req->page_size ? req->page_size : PAGE_DEFAULT;
    if (req->status != ST(UNSPECIFIED) && fxb_app_status_word(req->status) == NULL)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "STATUS_INVALID", "办件状态无效",
                            "status is not an ApplicationStatus");
    bool after = req->page_token != NULL && req->page_token[0] != '\0';
    int64_t cur_score = INT64_MAX;
    char cur_aid[FXB_ID_MAX + 1] = "";
    if (after && !token_decode(req->page_token, &cur_score, cur_aid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "分页标记无效",
                            "page_token is not one this server gave");
    const char *apps = subject_key(ctx, "apps");
    if (apps == NULL)
        return key_failed(ctx);
    Fxb__V1__Application **out = fxb_arena_calloc(a, page + 1, sizeof *out);
    int64_t *scores = fxb_arena_calloc(a, page + 1, sizeof *scores);
    if (out == NULL || scores == NULL)
        return out_of_memory(ctx);
    size_t n = 0;
    int64_t now = fxb_wall_ms();
    fxb_err err;
    char max[24];
    if (after)
        snprintf(max, sizeof max, "%" PRId64, cur_score);
    else
        snprintf(max, sizeof max, "+inf");
    for (size_t offset = 0; n <= page; offset += LIST_BATCH) {
        redisReply *r =
            fxb_store_command(st, &err, "ZREVRANGEBYSCORE %s %s -inf WITHSCORES LIMIT %llu %d",
                              apps, max, (unsigned long long)offset, LIST_BATCH);
        if (r == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                                "ZREVRANGEBYSCORE answered in an unexpected shape");
        }
        size_t got = r->elements / 2;
        char **ids = fxb_arena_calloc(a, got ? got : 1, sizeof *ids);
        int64_t *sc = fxb_arena_calloc(a, got ? got : 1, sizeof *sc);
        if (ids == NULL || sc == NULL) {
            freeReplyObject(r);
            return out_of_memory(ctx);
        }
        for (size_t i = 0; i < got; i++) {
            const redisReply *m = r->element[2 * i], *s = r->element[2 * i + 1];
            ids[i] = m->type == REDIS_REPLY_STRING ? fxb_arena_strdup(a, m->str) : NULL;
            sc[i] = s->type == REDIS_REPLY_STRING ? strtoll(s->str, NULL, 10) : 0;
        }
        freeReplyObject(r);
        for (size_t i = 0; i < got && n <= page; i++) {
            if (ids[i] == NULL || !fxb_app_id_valid(ids[i]))
                continue;
            if (after && sc[i] == cur_score && strcmp(ids[i], cur_aid) >= 0)
                continue;
            Fxb__V1__Application *app;
            if (fxb_app_read(st, a, ids[i], false, now, &app, &err) != FXB_OK) {
                if (err.code == FXB_NOT_FOUND)
                    continue;
                return fxb_ctx_fail_err(ctx, &err);
            }
            if (strcmp(app->subject_id, subject_of(ctx)) != 0)
                continue;
            if (req->status != ST(UNSPECIFIED) && app->status != req->status)
                continue;
            if (!listable(ctx, app))
                continue;
            scores[n] = sc[i];
            out[n++] = app;
        }
        if (got < LIST_BATCH)
            break;
    }
    if (n > page) {
        n = page;
        resp->next_page_token = token_encode(a, scores[n - 1], out[n - 1]->application_id);
        if (resp->next_page_token == NULL)
            return out_of_memory(ctx);
    }
    resp->applications = out;
    resp->n_applications = n;
    return FXB_OK;
}

/* --- method table ------------------------------------------------------------------- */

#define WRITER(level)                                                                              \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = (level), .delegable = true,                     \
        .scope = FXB_CAP_FILING_SUBMIT                                                             \
    }
#define READER                                                                                     \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .delegable = true, .scope = FXB_CAP_FILING_READ              \
    }

#define UNARY(name, fn, req, resp, access_rule, max)                                               \
    {                                                                                              \
        .path = SVC name, .request = &req##__descriptor, .response = &resp##__descriptor,          \
        .unary = fn, .access = access_rule, .limits = {                                            \
            .max_request_bytes = (max)                                                             \
        }                                                                                          \
    }

static const fxb_method methods[] = {
    {.path = SVC "CreateApplication",
     .request = &fxb__v1__create_application_request__descriptor,
     .response = &fxb__v1__application__descriptor,
     .unary = create_application,
     /* no item_field: a bundle names no item; the handler checks the item,
      * or every child's, against a proxy's scope */
     .access = {.kind = FXB_ACCESS_SIGNED_IN,
                .min_level = FXB_LEVEL_REAL_NAME,
                .delegable = true,
                .scope = FXB_CAP_FILING_SUBMIT},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    UNARY("AttachMaterials", attach_materials, fxb__v1__attach_materials_request,
          fxb__v1__application, WRITER(0), ATTACH_REQUEST),
    UNARY("SubmitApplication", submit_application, fxb__v1__submit_application_request,
          fxb__v1__submit_result, WRITER(0), SMALL_REQUEST),
    UNARY("SupplementMaterials", supplement_materials, fxb__v1__supplement_materials_request,
          fxb__v1__application, WRITER(0), SMALL_REQUEST),
    UNARY("WithdrawApplication", withdraw_application, fxb__v1__withdraw_application_request,
          fxb__v1__application, WRITER(0), SMALL_REQUEST + 4 * REASON_MAX),
    UNARY("GetApplication", get_application, fxb__v1__get_application_request, fxb__v1__application,
          READER, SMALL_REQUEST),
    UNARY("ListApplications", list_applications, fxb__v1__list_applications_request,
          fxb__v1__list_applications_response, READER, SMALL_REQUEST + PAGE_TOKEN_MAX),
};

const fxb_service fxb_filing_service = {
    .name = "fxb.v1.FilingService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
