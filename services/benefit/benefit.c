/* BenefitService handlers (proto/fxb/v1/benefit.proto). Policies go
 * through the lifecycle of policy.c, entitlements through the scripts of
 * entitlement.c; this file checks requests, departments and subjects,
 * builds the answers, sends the notices (notice.h) and writes the audit
 * stream.
 *
 * Access: policy methods are for officers and admins (the method table);
 * the department is checked here against the request's draft or the stored
 * policy (PERMISSION_DENIED DEPARTMENT_MISMATCH, never NOT_FOUND: an
 * officer is told the truth, that it is not theirs), except ListPolicies,
 * whose request names it (dept_field, checked by the runtime). Citizens see
 * only their own subject: the person of their verified identity, or an
 * enterprise they are the bound legal representative of, or, through a
 * delegated token, the principal's; explanations are computed from that
 * subject's own profile and nothing else.
 *
 * Page tokens are "<position>.<mac>": the position (a score and an id, or
 * an HSCAN cursor and the last subject taken) with 16 hex digits of an HMAC
 * (the blind-index key, label "page_token") over the method, its filters
 * and the position, so a token altered or moved to other filters is
 * refused (INVALID_ARGUMENT PAGE_TOKEN_INVALID). */
#include "services/benefit/benefit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/grant.h"
#include "auth/scope.h"
#include "server/log.h"
#include "server/text.h"
#include "services/benefit/entitlement.h"
#include "services/benefit/lists.h"
#include "services/benefit/notice.h"
#include "services/benefit/profile.h"
#include "services/benefit/profile_view.h"
#include "services/enterprise/enterprise.h"
#include "services/identity/identity.h"
#include "store/audit.h"
#include "store/keys.h"

#define PAGE_DEFAULT    20
#define PAGE_MAX        100
#define SCAN_BATCH      100  /* index entries read per round */
#define SCAN_MAX        2000 /* index entries examined per call */
#define HSCAN_COUNT     "200"
#define HSCAN_ROUNDS    20 /* HSCAN calls per ListPolicyEntitlements */
#define TOKEN_MAX       160
#define TOKEN_MAC_HEX   16
#define NOTE_MAX        200
#define REASON_MAX      200
#define PAID_AHEAD_MS   (24LL * 3600 * 1000) /* paid_at_ms at most this far ahead */
#define SMALL_REQUEST   1024
#define DRAFT_REQUEST   16384
#define SUBJECT_LEN     FXB_PROFILE_SUBJECT_LEN
#define PUBLISHED_CHUNK 500 /* published policies read per pipeline */

#define ZH_BUSY       "系统繁忙，请稍后重试"
#define ZH_DEPT       "无权办理其他部门的政策"
#define ZH_PAGE_TOKEN "分页标记无效，请从第一页重新查询"
#define ZH_POLICY_ID  "政策编号格式不正确"
#define ZH_NOT_REP    "您不是该企业已绑定的法定代表人"

static fxb_benefit_deps deps;

void fxb_benefit_service_init(const fxb_benefit_deps *d)
{
    deps = *d;
}

/* --- small helpers ---------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code store_shape(fxb_ctx *ctx, const char *what)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                        "%s answered in an unexpected shape", what);
}

static fxb_code text_check(fxb_ctx *ctx, const char *s, long min, long max, const char *field,
                           const char *reason, const char *zh)
{
    if (fxb_text_ok(s, min, max))
        return FXB_OK;
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, reason, zh,
                        "%s must be %ld..%ld characters of UTF-8 text without control characters",
                        field, min, max);
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* "p" / "e" + 24 lower-case hex digits; tag 0 = either. */
static bool subject_valid(const char *s, char tag)
{
    if (s == NULL || strnlen(s, SUBJECT_LEN + 1) != SUBJECT_LEN)
        return false;
    if (tag ? s[0] != tag : (s[0] != 'p' && s[0] != 'e'))
        return false;
    for (size_t i = 1; i < SUBJECT_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static char *subject_key(fxb_arena *a, const char *subject, const char *suffix)
{
    char tag[2] = {subject[0], '\0'};
    return fxb_key_owned(a, tag, subject, suffix);
}

static fxb_code policy_id_check(fxb_ctx *ctx, const char *id)
{
    if (fxb_policy_id_valid(id))
        return FXB_OK;
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "POLICY_ID_INVALID", ZH_POLICY_ID,
                        "policy_id must be \"b\" followed by 16 lower-case hex digits");
}

static fxb_code page_size_check(fxb_ctx *ctx, uint32_t in, size_t *out)
{
    if (in > PAGE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_SIZE_INVALID", "每页条数最多100",
                            "page_size must be 1..%d (0 = %d)", PAGE_MAX, PAGE_DEFAULT);
    *out = in == 0 ? PAGE_DEFAULT : in;
    return FXB_OK;
}

static fxb_code bad_token(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", ZH_PAGE_TOKEN,
                        "page_token is not one this method returned for these filters");
}

static int64_t today(void)
{
    return fxb_idv_today(fxb_wall_ms());
}

/* --- page tokens -------------------------------------------------------------- */

static bool token_mac(const char *scope, const char *pos, char mac[FXB_CRYPTO_INDEX_HEX_LEN + 1])
{
    char msg[TOKEN_MAX + 128];
    int n = snprintf(msg, sizeof msg, "%s|%s", scope, pos);
    if (deps.crypto == NULL || n < 0 || (size_t)n >= sizeof msg)
        return false;
    return fxb_crypto_index(deps.crypto, "page_token", msg, mac, NULL) == FXB_OK;
}

/* The token of position pos for scope (arena), or NULL. */
static char *token_make(fxb_arena *a, const char *scope, const char *pos)
{
    char mac[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    if (!token_mac(scope, pos, mac))
        return NULL;
    return fxb_arena_printf(a, "%s.%.*s", pos, TOKEN_MAC_HEX, mac);
}

/* The position of a token this scope made (arena), or NULL. */
static char *token_open(fxb_arena *a, const char *scope, const char *tok)
{
    size_t len = strnlen(tok, TOKEN_MAX + 1);
    if (len <= TOKEN_MAC_HEX + 1 || len > TOKEN_MAX || tok[len - TOKEN_MAC_HEX - 1] != '.')
        return NULL;
    char *pos = fxb_arena_strndup(a, tok, len - TOKEN_MAC_HEX - 1);
    char mac[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    if (pos == NULL || !token_mac(scope, pos, mac) ||
        CRYPTO_memcmp(mac, tok + len - TOKEN_MAC_HEX, TOKEN_MAC_HEX) != 0)
        return NULL;
    return pos;
}

/* "<score>.<id>" positions of the zset walks. */
static bool parse_score_pos(const char *pos, int64_t *score, const char **id)
{
    const char *dot = strchr(pos, '.');
    if (dot == NULL || dot == pos || dot - pos > 18)
        return false;
    for (const char *p = pos; p < dot; p++)
        if (*p < '0' || *p > '9')
            return false;
    *score = strtoll(pos, NULL, 10);
    *id = dot + 1;
    return true;
}

/* --- paging a sorted set of policy ids --------------------------------------------- */

/* A list over a sorted set of policy ids, newest first (score, then id,
 * both descending), resumed from a page token "<score>.<id>" sealed for its
 * scope. Per round of SCAN_BATCH entries past the cursor, fetch adds `per`
 * commands for an entry (false: out of memory); they run in one pipeline;
 * take then judges each entry from its replies (*taken, or skipped: an
 * index entry left behind, a filter), or fails (an fxb_ctx_fail code). The
 * list ends when the page is full, the set is exhausted, or SCAN_MAX
 * entries were examined (then the token resumes after the last one). */
typedef struct zpager {
    const char *key, *scope, *token;
    size_t page, per;
    bool (*fetch)(void *arg, fxb_arena *a, const char *id, const char **argv[]);
    fxb_code (*take)(void *arg, const char *id, redisReply *const *replies, bool *taken);
    void *arg;
} zpager;

/* Runs z; *next receives the next page's token ("" at the end). */
static fxb_code zpage(fxb_ctx *ctx, const zpager *z, const char **next)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    int64_t cur_score = 0;
    const char *cur_id = NULL;
    if (z->token != NULL && z->token[0] != '\0') {
        char *pos = token_open(a, z->scope, z->token);
        if (pos == NULL || !parse_score_pos(pos, &cur_score, &cur_id) ||
            !fxb_policy_id_valid(cur_id))
            return bad_token(ctx);
    }
    char max[24], batch[16];
    if (cur_id != NULL)
        snprintf(max, sizeof max, "%" PRId64, cur_score);
    else
        snprintf(max, sizeof max, "+inf");
    snprintf(batch, sizeof batch, "%d", SCAN_BATCH);
    size_t m = 0, examined = 0, offset = 0;
    bool more = false, full = false;
    int64_t last_score = cur_score;
    const char *last_id = cur_id;
    fxb_err err;
    while (!full && examined < SCAN_MAX) {
        char off[24];
        snprintf(off, sizeof off, "%zu", offset);
        const char *argv[] = {"ZREVRANGEBYSCORE", z->key,  max, "-inf",
                              "WITHSCORES",       "LIMIT", off, batch};
        redisReply *r = fxb_store_commandv(st, &err, 8, argv, NULL);
        if (r == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
            freeReplyObject(r);
            return store_shape(ctx, "ZREVRANGEBYSCORE");
        }
        size_t got = r->elements / 2, room = got ? got : 1;
        offset += got;
        /* the records of the round's entries past the cursor, in one round trip */
        fxb_store_cmd *cmds = fxb_arena_calloc(a, z->per * room, sizeof *cmds);
        redisReply **rs = fxb_arena_calloc(a, z->per * room, sizeof *rs);
        const char **ids = fxb_arena_calloc(a, room, sizeof *ids);
        int64_t *scores = fxb_arena_calloc(a, room, sizeof *scores);
        const char **cmd_argv[8];
        bool ok = cmds != NULL && rs != NULL && ids != NULL && scores != NULL && z->per <= 8;
        size_t k = 0;
        for (size_t i = 0; ok && i < got; i++) {
            const redisReply *mem = r->element[2 * i], *sc = r->element[2 * i + 1];
            if (mem->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
                !fxb_policy_id_valid(mem->str))
                continue;
            int64_t score = strtoll(sc->str, NULL, 10);
            if (cur_id != NULL &&
                (score > cur_score || (score == cur_score && strcmp(mem->str, cur_id) >= 0)))
                continue;
            ids[k] = fxb_arena_strdup(a, mem->str);
            ok = ids[k] != NULL && z->fetch(z->arg, a, ids[k], cmd_argv);
            for (size_t c = 0; ok && c < z->per; c++) {
                int argc = 0;
                while (cmd_argv[c][argc] != NULL)
                    argc++;
                cmds[z->per * k + c] = (fxb_store_cmd){argc, cmd_argv[c], NULL};
            }
            scores[k++] = score;
        }
        freeReplyObject(r);
        if (!ok)
            return out_of_memory(ctx);
        if (k > 0 && fxb_store_pipeline(st, &err, z->per * k, cmds, rs) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        size_t i = 0;
        fxb_code rc = FXB_OK;
        for (; i < k && !full && examined < SCAN_MAX && rc == FXB_OK; i++) {
            examined++;
            last_score = scores[i];
            last_id = ids[i];
            bool taken = false;
            rc = z->take(z->arg, ids[i], rs + z->per * i, &taken);
            if (rc == FXB_OK && taken)
                full = ++m == z->page;
        }
        for (size_t j = 0; j < z->per * k; j++)
            if (rs[j] != NULL)
                freeReplyObject(rs[j]);
        if (rc != FXB_OK)
            return rc;
        more = i < k || got == SCAN_BATCH;
        if (got < SCAN_BATCH && i == k)
            break;
    }
    *next = "";
    if (more && last_id != NULL) {
        const char *pos = fxb_arena_printf(a, "%" PRId64 ".%s", last_score, last_id);
        *next = pos ? token_make(a, z->scope, pos) : NULL;
        if (*next == NULL)
            return out_of_memory(ctx);
    }
    return FXB_OK;
}

/* --- callers, departments, subjects ----------------------------------------------- */

static bool is_admin(fxb_ctx *ctx)
{
    return (fxb_ctx_caller(ctx)->roles & FXB_ROLE_ADMIN) != 0;
}

/* An admin acts for any department, an officer for their own. */
static fxb_code dept_allowed(fxb_ctx *ctx, const char *dept)
{
    const fxb_caller *c = fxb_ctx_caller(ctx);
    if (c->roles & FXB_ROLE_ADMIN)
        return FXB_OK;
    if ((c->roles & FXB_ROLE_OFFICER) && c->dept[0] != '\0' && dept != NULL &&
        strcmp(c->dept, dept) == 0)
        return FXB_OK;
    return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, "DEPARTMENT_MISMATCH", ZH_DEPT,
                        "the policy is another department's: an officer acts only for their own");
}

/* The subject a citizen's call is about: the caller's person (the
 * principal's, or the principal enterprise, for a delegated caller) when eid
 * is empty; else the enterprise eid, which a delegated caller may name only
 * when it is the principal and anyone else only as its bound legal
 * representative. */
static fxb_code my_subject(fxb_ctx *ctx, const char *eid, char subject[SUBJECT_LEN + 1])
{
    const fxb_caller *c = fxb_ctx_caller(ctx);
    fxb_err err;
    if (eid == NULL || eid[0] == '\0') {
        if (c->delegated && subject_valid(c->account_id, 'e')) {
            memcpy(subject, c->account_id, SUBJECT_LEN + 1);
            return FXB_OK;
        }
        if (fxb_profile_person_of_account(fxb_ctx_store(ctx), c->account_id, subject, &err) !=
            FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        return FXB_OK;
    }
    if (!subject_valid(eid, 'e'))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "ENTERPRISE_ID_INVALID", "企业标识无效",
                            "enterprise_id must be \"e\" followed by %d lower-case hex digits",
                            FXB_ENTERPRISE_ID_HEX);
    if (c->delegated) {
        if (strcmp(c->account_id, eid) != 0)
            return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_OUT_OF_SCOPE,
                                "该企业不在您的代办授权范围内",
                                "a delegated caller may act only for its principal");
        memcpy(subject, eid, SUBJECT_LEN + 1);
        return FXB_OK;
    }
    const char *ekey = fxb_key_owned(fxb_ctx_arena(ctx), "e", eid, "enterprise");
    if (ekey == NULL)
        return out_of_memory(ctx);
    const char *argv[] = {"HGET", ekey, "rep_account"};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 3, argv, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool rep = r->type == REDIS_REPLY_STRING && strcmp(r->str, c->account_id) == 0;
    freeReplyObject(r);
    if (!rep)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_ENTERPRISE_NOT_LEGAL_REP, ZH_NOT_REP,
                            "the caller is not the bound legal representative of this "
                            "enterprise");
    memcpy(subject, eid, SUBJECT_LEN + 1);
    return FXB_OK;
}

/* --- policies as answers ------------------------------------------------------ */

/* The conditions of a compiled rule, by index (sources point into r). */
static void collect(const fxb_rule_node *n, const char **src, size_t cap)
{
    if (n == NULL)
        return;
    switch (n->kind) {
    case FXB_RN_AND:
    case FXB_RN_OR:
        collect(n->a, src, cap);
        collect(n->b, src, cap);
        break;
    case FXB_RN_NOT:
        collect(n->a, src, cap);
        break;
    default:
        if (n->index < cap)
            src[n->index] = n->source;
    }
}

/* The sources of rule's conditions copied into the arena; NULL on
 * allocation failure. */
static const char **condition_sources(fxb_arena *a, const fxb_rule *rule, size_t *n)
{
    *n = fxb_rule_conditions(rule);
    const char **src = fxb_arena_calloc(a, *n ? *n : 1, sizeof *src);
    if (src == NULL)
        return NULL;
    collect(fxb_rule_root(rule), src, *n);
    for (size_t i = 0; i < *n; i++)
        if ((src[i] = fxb_arena_strdup(a, str_or_empty(src[i]))) == NULL)
            return NULL;
    return src;
}

static bool conditions_proto(fxb_arena *a, const fxb_rule *rule, Fxb__V1__RuleCondition ***out,
                             size_t *n_out)
{
    size_t n;
    const char **src = condition_sources(a, rule, &n);
    Fxb__V1__RuleCondition **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    Fxb__V1__RuleCondition *items = fxb_arena_calloc(a, n ? n : 1, sizeof *items);
    if (src == NULL || list == NULL || items == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        fxb__v1__rule_condition__init(&items[i]);
        items[i].index = (uint32_t)i;
        items[i].source = (char *)src[i];
        list[i] = &items[i];
    }
    *out = list;
    *n_out = n;
    return true;
}

/* A policy record (HGETALL) as the proto answers it; conditions when the
 * policy was published and its rule compiles against schema (may be NULL).
 * NULL on allocation failure. */
static Fxb__V1__Policy *policy_proto(fxb_arena *a, const fxb_schema *schema, const char *id,
                                     const redisReply *kv)
{
    fxb_policy core;
    Fxb__V1__Policy *p = fxb_arena_alloc(a, sizeof *p);
    Fxb__V1__PolicyDraft *d = fxb_arena_alloc(a, sizeof *d);
    if (p == NULL || d == NULL || !fxb_policy_from_hash(id, kv, a, &core))
        return NULL;
    fxb__v1__policy__init(p);
    fxb__v1__policy_draft__init(d);
    p->policy_id = fxb_arena_strdup(a, id);
    const char *summary = fxb_store_hash_get(kv, "summary"),
               *basis = fxb_store_hash_get(kv, "legal_basis"),
               *reason = fxb_store_hash_get(kv, "close_reason");
    d->summary = fxb_arena_strdup(a, str_or_empty(summary));
    d->legal_basis = fxb_arena_strdup(a, str_or_empty(basis));
    p->close_reason = fxb_arena_strdup(a, str_or_empty(reason));
    if (p->policy_id == NULL || d->summary == NULL || d->legal_basis == NULL ||
        p->close_reason == NULL)
        return NULL;
    d->code = (char *)core.code;
    d->title = (char *)core.title;
    d->category = (Fxb__V1__PolicyCategory)core.category;
    d->department = (char *)core.department;
    d->subject_type = (Fxb__V1__SubjectType)fxb_store_hash_int(kv, "subject_type");
    d->rule = (char *)core.rule;
    d->benefit_kind = (Fxb__V1__BenefitKind)core.kind;
    d->amount_fen = core.amount_fen;
    d->valid_from_ms = core.valid_from_ms;
    d->valid_until_ms = core.valid_until_ms;
    d->budget_fen = core.budget_fen;
    d->quota = core.quota;
    d->confirmation_required = core.confirm;
    p->draft = d;
    p->status = (Fxb__V1__PolicyStatus)core.status;
    p->version = core.version;
    p->created_at_ms = fxb_store_hash_int(kv, "created_at_ms");
    p->published_at_ms = fxb_store_hash_int(kv, "published_at_ms");
    p->closed_at_ms = fxb_store_hash_int(kv, "closed_at_ms");
    p->matched = fxb_store_hash_int(kv, "n_matched");
    p->confirmed = fxb_store_hash_int(kv, "n_confirmed");
    p->granted = fxb_store_hash_int(kv, "n_granted");
    p->paid = fxb_store_hash_int(kv, "n_paid");
    p->declined = fxb_store_hash_int(kv, "n_declined");
    p->ended = fxb_store_hash_int(kv, "n_ended");
    p->grants_used = fxb_store_hash_int(kv, "grants_used");
    p->budget_used_fen = fxb_store_hash_int(kv, "budget_used_fen");
    p->last_match_at_ms = fxb_store_hash_int(kv, "last_match_at_ms");
    p->last_match_subjects = fxb_store_hash_int(kv, "last_match_subjects");
    if (schema != NULL && core.status != FXB_POLICY_DRAFT) {
        fxb_rule *rule = NULL;
        fxb_err ignored;
        if (fxb_rule_compile(schema, core.subject, core.rule, &rule, NULL, &ignored) == FXB_OK) {
            bool ok = conditions_proto(a, rule, &p->conditions, &p->n_conditions);
            fxb_rule_free(rule);
            if (!ok)
                return NULL;
        }
    }
    return p;
}

/* The schema for conditions, or NULL when none is stored (the answer then
 * lists none; the caller releases a non-NULL one). */
static const fxb_schema *schema_or_null(fxb_ctx *ctx)
{
    const fxb_schema *schema = NULL;
    fxb_err err;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &schema, &err) != FXB_OK)
        return NULL;
    return schema;
}

/* HGETALL of one policy: the core in *core and the answer in *out (either
 * may be NULL). NOT_FOUND POLICY_NOT_FOUND. */
static fxb_code read_policy(fxb_ctx *ctx, const char *id, fxb_policy *core, Fxb__V1__Policy **out)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *key = fxb_policy_key(a, id, "policy");
    if (key == NULL)
        return policy_id_check(ctx, id);
    fxb_err err;
    const char *argv[] = {"HGETALL", key};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 2, argv, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = store_shape(ctx, "HGETALL");
    } else if (r->elements == 0) {
        rc = fxb_ctx_fail(ctx, FXB_NOT_FOUND, "POLICY_NOT_FOUND", "政策不存在",
                          "no policy with that id");
    } else {
        if (core != NULL && !fxb_policy_from_hash(id, r, a, core))
            rc = out_of_memory(ctx);
        if (rc == FXB_OK && out != NULL) {
            const fxb_schema *schema = schema_or_null(ctx);
            *out = policy_proto(a, schema, id, r);
            if (schema != NULL)
                fxb_profile_schema_release(schema);
            if (*out == NULL)
                rc = out_of_memory(ctx);
        }
    }
    freeReplyObject(r);
    return rc;
}

/* A staff action's policy: id checked, read, the department allowed. */
static fxb_code staff_policy(fxb_ctx *ctx, const char *id, fxb_policy *core)
{
    fxb_code rc = policy_id_check(ctx, id);
    if (rc == FXB_OK)
        rc = read_policy(ctx, id, core, NULL);
    if (rc == FXB_OK)
        rc = dept_allowed(ctx, core->department);
    return rc;
}

/* Answers the policy as stored now. */
static fxb_code answer_policy(fxb_ctx *ctx, const char *id, ProtobufCMessage *resp)
{
    Fxb__V1__Policy *p = NULL;
    fxb_code rc = read_policy(ctx, id, NULL, &p);
    if (rc == FXB_OK)
        *(Fxb__V1__Policy *)resp = *p;
    return rc;
}

/* --- entitlements as answers --------------------------------------------------- */

static const char *truth_word(char c)
{
    return c == 'T' ? "TRUE" : c == 'F' ? "FALSE" : "UNKNOWN";
}

/* One entitlement with the policy's facts (p: at least code, title,
 * category, department, kind, amount). NULL on allocation failure. */
static Fxb__V1__Entitlement *ent_proto(fxb_arena *a, const char *pid, const fxb_ent *e,
                                       const fxb_policy *p)
{
    Fxb__V1__Entitlement *x = fxb_arena_alloc(a, sizeof *x);
    if (x == NULL)
        return NULL;
    fxb__v1__entitlement__init(x);
    x->policy_id = fxb_arena_strdup(a, pid);
    x->subject_id = fxb_arena_strdup(a, e->subject);
    x->reason = fxb_arena_strdup(a, e->reason);
    x->state = (Fxb__V1__EntitlementState)e->state;
    x->amount_fen = p->amount_fen;
    x->created_at_ms = e->created_ms;
    x->updated_at_ms = e->updated_ms;
    x->round = e->round;
    x->disbursement_key = "";
    if (p->kind == FXB_BENEFIT_CASH && (e->state == FXB_ENT_GRANTED || e->state == FXB_ENT_PAID)) {
        char key[FXB_ENT_KEY_MAX + 1];
        fxb_ent_disbursement_key(key, pid, e->subject, e->round);
        x->disbursement_key = fxb_arena_strdup(a, key);
    }
    x->policy_code = fxb_arena_strdup(a, str_or_empty(p->code));
    x->policy_title = fxb_arena_strdup(a, str_or_empty(p->title));
    x->department = fxb_arena_strdup(a, str_or_empty(p->department));
    x->category = (Fxb__V1__PolicyCategory)p->category;
    x->benefit_kind = (Fxb__V1__BenefitKind)p->kind;
    if (x->policy_id == NULL || x->subject_id == NULL || x->reason == NULL ||
        x->disbursement_key == NULL || x->policy_code == NULL || x->policy_title == NULL ||
        x->department == NULL)
        return NULL;
    return x;
}

/* The facts HMGET reads for lists (in this order); the rule and the
 * subject type explain each entry. */
static const char *const fact_fields[] = {"code",       "title",      "category", "benefit_kind",
                                          "department", "amount_fen", "rule",     "subject_type"};
#define N_FACTS (sizeof fact_fields / sizeof fact_fields[0])

static bool facts_from(fxb_arena *a, const redisReply *r, fxb_policy *p)
{
    memset(p, 0, sizeof *p);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != N_FACTS ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return false;
    const char *v[N_FACTS];
    for (size_t i = 0; i < N_FACTS; i++)
        v[i] = r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : "";
    p->code = fxb_arena_strdup(a, v[0]);
    p->title = fxb_arena_strdup(a, v[1]);
    p->category = (int)strtol(v[2], NULL, 10);
    p->kind = (int)strtol(v[3], NULL, 10);
    p->department = fxb_arena_strdup(a, v[4]);
    p->amount_fen = strtoll(v[5], NULL, 10);
    p->rule = fxb_arena_strdup(a, v[6]);
    p->subject = strtol(v[7], NULL, 10) == FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE
                     ? FXB_SUBJECT_ENTERPRISE
                     : FXB_SUBJECT_PERSON;
    return p->code != NULL && p->title != NULL && p->department != NULL && p->rule != NULL;
}

/* --- notices and audit ------------------------------------------------------------ */

/* One notice; the entitlement stands whatever happens to it. */
static void notify(fxb_ctx *ctx, const fxb_policy *p, const char *subject,
                   fxb_benefit_notice_kind kind, int64_t now)
{
    const char *subjects[] = {subject};
    fxb_benefit_notice_kind kinds[] = {kind};
    size_t sent = 0;
    fxb_err err;
    if (fxb_benefit_notify(fxb_ctx_store(ctx), p, subjects, kinds, 1, now, &sent, &err) != FXB_OK)
        fxb_log(FXB_LOG_WARN, "benefit notice for policy %s not sent: %s", p->id, err.reason);
}

static fxb_code audit(fxb_ctx *ctx, const char *action, const char *subject, const char *why,
                      int64_t now)
{
    char *text = fxb_arena_strdup(fxb_ctx_arena(ctx), why);
    if (text == NULL)
        return out_of_memory(ctx);
    fxb_utf8_truncate(text, FXB_AUDIT_WHY_MAX);
    fxb_err err;
    if (fxb_audit_append(fxb_ctx_store(ctx), fxb_ctx_caller(ctx)->account_id, subject, action, text,
                         now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

/* --- CreatePolicy / UpdatePolicy / PublishPolicy / ClosePolicy / GetPolicy ---------- */

static fxb_code create_policy(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    const Fxb__V1__CreatePolicyRequest *req = (const Fxb__V1__CreatePolicyRequest *)req_msg;
    fxb_err err;
    if (req->draft == NULL) {
        fxb_policy_draft_check(NULL, &err);
        return fxb_ctx_fail_err(ctx, &err);
    }
    fxb_code rc = dept_allowed(ctx, req->draft->department);
    if (rc != FXB_OK)
        return rc;
    char id[FXB_POLICY_ID_LEN + 1];
    if (fxb_policy_create(fxb_ctx_store(ctx), req->draft, fxb_ctx_caller(ctx)->account_id,
                          fxb_wall_ms(), id, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return answer_policy(ctx, id, resp_msg);
}

static fxb_code update_policy(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    const Fxb__V1__UpdatePolicyRequest *req = (const Fxb__V1__UpdatePolicyRequest *)req_msg;
    fxb_policy cur;
    fxb_code rc = staff_policy(ctx, req->policy_id, &cur);
    if (rc != FXB_OK)
        return rc;
    fxb_err err;
    if (req->draft == NULL) {
        fxb_policy_draft_check(NULL, &err);
        return fxb_ctx_fail_err(ctx, &err);
    }
    if (req->expected_version < 0)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "VERSION_INVALID", "版本号不正确",
                            "expected_version must be 0 (no check) or a version read");
    Fxb__V1__PolicyDraft d = *req->draft;
    if (d.department == NULL || d.department[0] == '\0')
        d.department = (char *)cur.department; /* "" keeps it */
    int64_t version = 0;
    if (fxb_policy_update(fxb_ctx_store(ctx), &cur, req->expected_version, &d, fxb_wall_ms(),
                          &version, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return answer_policy(ctx, cur.id, resp_msg);
}

static fxb_code publish_policy(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__PublishPolicyRequest *req = (const Fxb__V1__PublishPolicyRequest *)req_msg;
    fxb_policy cur;
    fxb_code rc = staff_policy(ctx, req->policy_id, &cur);
    if (rc != FXB_OK)
        return rc;
    fxb_err err;
    const fxb_schema *schema;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &schema, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    int64_t version = 0;
    rc = fxb_policy_publish(fxb_ctx_store(ctx), schema, &cur, fxb_wall_ms(), NULL, &version, &err);
    fxb_profile_schema_release(schema);
    if (rc != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return answer_policy(ctx, cur.id, resp_msg);
}

static fxb_code close_policy(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ClosePolicyRequest *req = (const Fxb__V1__ClosePolicyRequest *)req_msg;
    fxb_policy cur;
    fxb_code rc = staff_policy(ctx, req->policy_id, &cur);
    if (rc == FXB_OK)
        rc = text_check(ctx, req->reason, 1, FXB_POLICY_CLOSE_REASON_MAX, "reason",
                        "CLOSE_REASON_INVALID", "请填写关闭原因（1至200个字符）");
    if (rc != FXB_OK)
        return rc;
    fxb_err err;
    int64_t version = 0;
    if (fxb_policy_close(fxb_ctx_store(ctx), &cur, req->reason, fxb_wall_ms(), &version, &err) !=
        FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return answer_policy(ctx, cur.id, resp_msg);
}

static fxb_code get_policy(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetPolicyRequest *req = (const Fxb__V1__GetPolicyRequest *)req_msg;
    fxb_policy core;
    Fxb__V1__Policy *p = NULL;
    fxb_code rc = policy_id_check(ctx, req->policy_id);
    if (rc == FXB_OK)
        rc = read_policy(ctx, req->policy_id, &core, &p);
    if (rc == FXB_OK)
        rc = dept_allowed(ctx, core.department);
    if (rc == FXB_OK)
        *(Fxb__V1__Policy *)resp_msg = *p;
    return rc;
}

/* --- ListPolicies ----------------------------------------------------------------- */

/* ListPolicies' fetch and take (zpager): the policy record; kept when it
 * matches the status and department asked. */
typedef struct policy_pick {
    fxb_ctx *ctx;
    const Fxb__V1__ListPoliciesRequest *req;
    const char *dept;
    Fxb__V1__Policy **out;
    size_t m;
    const fxb_schema *schema;
} policy_pick;

static bool policy_fetch(void *arg, fxb_arena *a, const char *id, const char **argv[])
{
    (void)arg;
    const char **get = fxb_arena_calloc(a, 3, sizeof *get);
    if (get == NULL || (get[1] = fxb_policy_key(a, id, "policy")) == NULL)
        return false;
    get[0] = "HGETALL";
    argv[0] = get;
    return true;
}

static fxb_code policy_take(void *arg, const char *id, redisReply *const *replies, bool *taken)
{
    policy_pick *pk = arg;
    const redisReply *kv = replies[0];
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY || kv->elements == 0)
        return FXB_OK; /* an index entry left behind */
    if (pk->req->status != 0 && fxb_store_hash_int(kv, "status") != pk->req->status)
        return FXB_OK;
    if (pk->dept[0] && strcmp(str_or_empty(fxb_store_hash_get(kv, "department")), pk->dept) != 0)
        return FXB_OK;
    pk->out[pk->m] = policy_proto(fxb_ctx_arena(pk->ctx), pk->schema, id, kv);
    if (pk->out[pk->m] == NULL)
        return out_of_memory(pk->ctx);
    pk->m++;
    *taken = true;
    return FXB_OK;
}

static fxb_code list_policies(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListPoliciesRequest *req = (const Fxb__V1__ListPoliciesRequest *)req_msg;
    Fxb__V1__ListPoliciesResponse *resp = (Fxb__V1__ListPoliciesResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *dept = str_or_empty(req->department);
    /* officers: the runtime admitted only their own department */
    if (dept[0] == '\0' ? !is_admin(ctx) : !fxb_policy_dept_valid(dept))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "DEPARTMENT_INVALID", "部门代码不正确",
                            "department must be 1..%d characters of [a-z0-9-] (admins: or "
                            "empty for every department)",
                            FXB_POLICY_DEPT_MAX);
    if ((unsigned)req->status > FXB__V1__POLICY_STATUS__POLICY_STATUS_CLOSED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "STATUS_INVALID", "查询条件不正确",
                            "status must be 0 (any), DRAFT, PUBLISHED or CLOSED");
    size_t page = 0;
    fxb_code rc = page_size_check(ctx, req->page_size, &page);
    if (rc != FXB_OK)
        return rc;
    const char *scope = fxb_arena_printf(a, "policies|%s|%d", dept, (int)req->status);
    if (scope == NULL)
        return out_of_memory(ctx);
    const char *key = dept[0] ? fxb_arena_printf(a, "fxb:benefit:dept:%s", dept)
                              : fxb_arena_strdup(a, "fxb:benefit:policies");
    policy_pick pk = {
        ctx, req, dept, fxb_arena_calloc(a, page, sizeof *pk.out), 0, schema_or_null(ctx)};
    if (key == NULL || pk.out == NULL) {
        if (pk.schema != NULL)
            fxb_profile_schema_release(pk.schema);
        return out_of_memory(ctx);
    }
    zpager z = {key, scope, req->page_token, page, 1, policy_fetch, policy_take, &pk};
    const char *next = "";
    rc = zpage(ctx, &z, &next);
    if (pk.schema != NULL)
        fxb_profile_schema_release(pk.schema);
    if (rc != FXB_OK)
        return rc;
    resp->policies = pk.out;
    resp->n_policies = pk.m;
    resp->next_page_token = (char *)next;
    return FXB_OK;
}

/* --- ListPublishedPolicies (public) ------------------------------------------------ */

typedef struct pub_entry {
    const char *id;
    int64_t at;
} pub_entry;

/* Newest first; ties by id, descending. */
static int pub_cmp(const void *x, const void *y)
{
    const pub_entry *a = x, *b = y;
    if (a->at != b->at)
        return a->at > b->at ? -1 : 1;
    return strcmp(b->id, a->id);
}

static fxb_code list_published(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListPublishedPoliciesRequest *req =
        (const Fxb__V1__ListPublishedPoliciesRequest *)req_msg;
    Fxb__V1__ListPoliciesResponse *resp = (Fxb__V1__ListPoliciesResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    if ((unsigned)req->category > FXB__V1__POLICY_CATEGORY__POLICY_CATEGORY_FINANCE)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "CATEGORY_INVALID", "查询条件不正确",
                            "category must be 0 (any) or a PolicyCategory");
    if ((unsigned)req->subject_type > FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "SUBJECT_TYPE_INVALID", "查询条件不正确",
                            "subject_type must be 0 (any), PERSON or ENTERPRISE");
    size_t page = 0;
    fxb_code rc = page_size_check(ctx, req->page_size, &page);
    if (rc != FXB_OK)
        return rc;
    const char *scope =
        fxb_arena_printf(a, "published|%d|%d", (int)req->category, (int)req->subject_type);
    if (scope == NULL)
        return out_of_memory(ctx);
    int64_t cur_at = 0;
    const char *cur_id = NULL;
    if (req->page_token != NULL && req->page_token[0] != '\0') {
        char *pos = token_open(a, scope, req->page_token);
        if (pos == NULL || !parse_score_pos(pos, &cur_at, &cur_id) || !fxb_policy_id_valid(cur_id))
            return bad_token(ctx);
    }
    fxb_err err;
    char **ids = NULL;
    size_t n = 0;
    if (fxb_policy_published_ids(st, a, &ids, &n, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    /* the facts to filter and order by, a chunk per round trip */
    pub_entry *e = fxb_arena_calloc(a, n ? n : 1, sizeof *e);
    if (e == NULL)
        return out_of_memory(ctx);
    size_t m = 0;
    for (size_t at = 0; at < n; at += PUBLISHED_CHUNK) {
        size_t k = n - at < PUBLISHED_CHUNK ? n - at : PUBLISHED_CHUNK;
        fxb_store_cmd *cmds = fxb_arena_calloc(a, k, sizeof *cmds);
        redisReply **rs = fxb_arena_calloc(a, k, sizeof *rs);
        if (cmds == NULL || rs == NULL)
            return out_of_memory(ctx);
        for (size_t i = 0; i < k; i++) {
            const char **argv = fxb_arena_calloc(a, 6, sizeof *argv);
            if (argv == NULL)
                return out_of_memory(ctx);
            argv[0] = "HMGET";
            argv[1] = fxb_policy_key(a, ids[at + i], "policy");
            argv[2] = "status";
            argv[3] = "published_at_ms";
            argv[4] = "category";
            argv[5] = "subject_type";
            if (argv[1] == NULL)
                return out_of_memory(ctx);
            cmds[i] = (fxb_store_cmd){6, argv, NULL};
        }
        if (fxb_store_pipeline(st, &err, k, cmds, rs) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        for (size_t i = 0; i < k; i++) {
            const redisReply *r = rs[i];
            bool keep = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 4;
            for (size_t j = 0; keep && j < 4; j++)
                keep = r->element[j]->type == REDIS_REPLY_STRING;
            keep = keep && strtol(r->element[0]->str, NULL, 10) == FXB_POLICY_PUBLISHED &&
                   (req->category == 0 || strtol(r->element[2]->str, NULL, 10) == req->category) &&
                   (req->subject_type == 0 ||
                    strtol(r->element[3]->str, NULL, 10) == req->subject_type);
            if (keep) {
                e[m].id = ids[at + i];
                e[m].at = strtoll(r->element[1]->str, NULL, 10);
                pub_entry c = {cur_id, cur_at};
                if (cur_id == NULL || pub_cmp(&e[m], &c) > 0)
                    m++;
            }
            if (rs[i] != NULL)
                freeReplyObject(rs[i]);
        }
    }
    qsort(e, m, sizeof *e, pub_cmp);
    size_t take = m < page ? m : page;
    Fxb__V1__Policy **out = fxb_arena_calloc(a, take ? take : 1, sizeof *out);
    fxb_store_cmd *cmds = fxb_arena_calloc(a, take ? take : 1, sizeof *cmds);
    redisReply **rs = fxb_arena_calloc(a, take ? take : 1, sizeof *rs);
    if (out == NULL || cmds == NULL || rs == NULL)
        return out_of_memory(ctx);
    for (size_t i = 0; i < take; i++) {
        const char **argv = fxb_arena_calloc(a, 2, sizeof *argv);
        if (argv == NULL)
            return out_of_memory(ctx);
        argv[0] = "HGETALL";
        argv[1] = fxb_policy_key(a, e[i].id, "policy");
        if (argv[1] == NULL)
            return out_of_memory(ctx);
        cmds[i] = (fxb_store_cmd){2, argv, NULL};
    }
    if (take > 0 && fxb_store_pipeline(st, &err, take, cmds, rs) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    const fxb_schema *schema = schema_or_null(ctx);
    size_t got = 0;
    rc = FXB_OK;
    for (size_t i = 0; i < take; i++) {
        if (rc == FXB_OK && rs[i] != NULL && rs[i]->type == REDIS_REPLY_ARRAY &&
            rs[i]->elements > 0) {
            out[got] = policy_proto(a, schema, e[i].id, rs[i]);
            if (out[got++] == NULL)
                rc = out_of_memory(ctx);
        }
        if (rs[i] != NULL)
            freeReplyObject(rs[i]);
    }
    if (schema != NULL)
        fxb_profile_schema_release(schema);
    if (rc != FXB_OK)
        return rc;
    resp->policies = out;
    resp->n_policies = got;
    resp->next_page_token = "";
    if (m > take) {
        const char *pos = fxb_arena_printf(a, "%" PRId64 ".%s", e[take - 1].at, e[take - 1].id);
        resp->next_page_token = pos ? token_make(a, scope, pos) : NULL;
        if (resp->next_page_token == NULL)
            return out_of_memory(ctx);
    }
    return FXB_OK;
}

/* --- CheckRule ------------------------------------------------------------------- */

static fxb_code check_rule(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    const Fxb__V1__CheckRuleRequest *req = (const Fxb__V1__CheckRuleRequest *)req_msg;
    Fxb__V1__CheckRuleResponse *resp = (Fxb__V1__CheckRuleResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_subject_type type;
    if (req->subject_type == FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON)
        type = FXB_SUBJECT_PERSON;
    else if (req->subject_type == FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE)
        type = FXB_SUBJECT_ENTERPRISE;
    else
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "SUBJECT_TYPE_INVALID",
                            "请选择政策对象（个人或企业）",
                            "subject_type must be PERSON or ENTERPRISE");
    fxb_err err;
    const fxb_schema *schema;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &schema, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_rule *rule = NULL;
    fxb_rule_error where;
    fxb_code rc = fxb_rule_compile(schema, type, str_or_empty(req->rule), &rule, &where, &err);
    if (rc == FXB_OK) {
        resp->ok = true;
        if (!conditions_proto(a, rule, &resp->conditions, &resp->n_conditions))
            rc = out_of_memory(ctx);
        fxb_rule_free(rule);
    } else if (rc == FXB_INVALID_ARGUMENT) {
        Fxb__V1__RuleError *e = fxb_arena_alloc(a, sizeof *e);
        if (e == NULL) {
            rc = out_of_memory(ctx);
        } else {
            fxb__v1__rule_error__init(e);
            e->line = where.line;
            e->column = where.col;
            e->token = fxb_arena_strdup(a, where.token);
            e->reason = fxb_arena_strdup(a, err.reason);
            e->message = fxb_arena_strdup(a, where.message);
            resp->ok = false;
            resp->error = e;
            rc = e->token && e->reason && e->message ? FXB_OK : out_of_memory(ctx);
        }
    } else {
        rc = fxb_ctx_fail_err(ctx, &err);
    }
    fxb_profile_schema_release(schema);
    return rc;
}

/* --- ListPolicyEntitlements -------------------------------------------------------- */

typedef struct hentry {
    const char *subject;
    const char *value;
    size_t len;
} hentry;

static int hentry_cmp(const void *x, const void *y)
{
    return strcmp(((const hentry *)x)->subject, ((const hentry *)y)->subject);
}

/* "<cursor>.<last subject or ->" */
static bool parse_scan_pos(const char *pos, char cursor[24], const char **last)
{
    const char *dot = strchr(pos, '.');
    if (dot == NULL || dot == pos || dot - pos > 20)
        return false;
    for (const char *p = pos; p < dot; p++)
        if (*p < '0' || *p > '9')
            return false;
    memcpy(cursor, pos, (size_t)(dot - pos));
    cursor[dot - pos] = '\0';
    *last = strcmp(dot + 1, "-") == 0 ? NULL : dot + 1;
    return *last == NULL || subject_valid(*last, 0);
}

static fxb_code list_policy_entitlements(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                         ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListPolicyEntitlementsRequest *req =
        (const Fxb__V1__ListPolicyEntitlementsRequest *)req_msg;
    Fxb__V1__ListEntitlementsResponse *resp = (Fxb__V1__ListEntitlementsResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_policy p;
    fxb_code rc = staff_policy(ctx, req->policy_id, &p);
    if (rc != FXB_OK)
        return rc;
    if ((unsigned)req->state > FXB__V1__ENTITLEMENT_STATE__ENTITLEMENT_STATE_ENDED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "STATE_INVALID", "查询条件不正确",
                            "state must be 0 (any) or an EntitlementState");
    size_t page = 0;
    rc = page_size_check(ctx, req->page_size, &page);
    if (rc != FXB_OK)
        return rc;
    const char *scope = fxb_arena_printf(a, "ents|%s|%d", p.id, (int)req->state);
    const char *key = fxb_policy_key(a, p.id, "ent");
    Fxb__V1__Entitlement **out = fxb_arena_calloc(a, page, sizeof *out);
    const char **helds = fxb_arena_calloc(a, page, sizeof *helds);
    fxb_policy *pols = fxb_arena_calloc(a, page, sizeof *pols);
    if (scope == NULL || key == NULL || out == NULL || helds == NULL || pols == NULL)
        return out_of_memory(ctx);
    char cursor[24] = "0";
    const char *last = NULL;
    if (req->page_token != NULL && req->page_token[0] != '\0') {
        char *pos = token_open(a, scope, req->page_token);
        if (pos == NULL || !parse_scan_pos(pos, cursor, &last))
            return bad_token(ctx);
    }
    size_t m = 0;
    const char *next_pos = NULL;
    fxb_err err;
    for (int round = 0; round < HSCAN_ROUNDS; round++) {
        const char *argv[] = {"HSCAN", key, cursor, "COUNT", HSCAN_COUNT};
        redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 5, argv, NULL);
        if (r == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
            r->element[1]->elements % 2 != 0 || r->element[0]->len >= 24) {
            freeReplyObject(r);
            return store_shape(ctx, "HSCAN");
        }
        char next[24];
        memcpy(next, r->element[0]->str, r->element[0]->len + 1);
        /* the batch in subject order, so that a page may end inside it */
        const redisReply *kv = r->element[1];
        size_t nb = kv->elements / 2, k = 0;
        hentry *b = fxb_arena_calloc(a, nb ? nb : 1, sizeof *b);
        if (b == NULL) {
            freeReplyObject(r);
            return out_of_memory(ctx);
        }
        for (size_t i = 0; i < nb; i++) {
            const redisReply *f = kv->element[2 * i], *v = kv->element[2 * i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                !subject_valid(f->str, 0))
                continue;
            if (last != NULL && strcmp(f->str, last) <= 0)
                continue;
            b[k].subject = fxb_arena_strdup(a, f->str);
            b[k].value = fxb_arena_strndup(a, v->str, v->len);
            b[k].len = v->len;
            if (b[k].subject == NULL || b[k].value == NULL) {
                freeReplyObject(r);
                return out_of_memory(ctx);
            }
            k++;
        }
        freeReplyObject(r);
        qsort(b, k, sizeof *b, hentry_cmp);
        size_t i = 0;
        for (; i < k && m < page; i++) {
            fxb_ent e;
            if (!fxb_ent_parse(b[i].subject, b[i].value, b[i].len, &e))
                continue;
            if (req->state != 0 && e.state != (int)req->state)
                continue;
            if ((out[m++] = ent_proto(a, p.id, &e, &p)) == NULL)
                return out_of_memory(ctx);
        }
        if (m == page && i < k) {
            /* more of this batch: resume at the same cursor after it */
            next_pos = fxb_arena_printf(a, "%s.%s", cursor, b[i - 1].subject);
            if (next_pos == NULL)
                return out_of_memory(ctx);
            break;
        }
        last = NULL;
        memcpy(cursor, next, sizeof next);
        if (strcmp(cursor, "0") == 0)
            break;
        if (m == page || round + 1 == HSCAN_ROUNDS) {
            next_pos = fxb_arena_printf(a, "%s.-", cursor);
            if (next_pos == NULL)
                return out_of_memory(ctx);
            break;
        }
    }
    resp->entitlements = out;
    resp->n_entitlements = m;
    resp->next_page_token = "";
    if (next_pos != NULL && (resp->next_page_token = token_make(a, scope, next_pos)) == NULL)
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- ConfirmEntitlement / RejectEntitlement ------------------------------------------ */

static fxb_code subject_check(fxb_ctx *ctx, const char *subject)
{
    if (subject_valid(subject, 0))
        return FXB_OK;
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "SUBJECT_ID_INVALID", "对象标识无效",
                        "subject_id must be \"p\" or \"e\" followed by 24 lower-case hex digits");
}

/* ConfirmEntitlement / RejectEntitlement once checked: the transition, the
 * subject's notice (granted at once, or ended), the audit entry "<pid>
 * confirmed[: note]" / "<pid> rejected: reason", the entitlement as the
 * answer. */
static fxb_code staff_step(fxb_ctx *ctx, const fxb_policy *p, const char *subject, bool confirm,
                           const char *text, ProtobufCMessage *resp_msg)
{
    int64_t now = fxb_wall_ms();
    fxb_ent e;
    fxb_err err;
    const char *by = fxb_ctx_caller(ctx)->account_id;
    fxb_code rc = confirm ? fxb_ent_confirm(fxb_ctx_store(ctx), p->id, subject, now, by, &e, &err)
                          : fxb_ent_reject(fxb_ctx_store(ctx), p->id, subject, now, by, &e, &err);
    if (rc != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (!confirm)
        notify(ctx, p, subject, FXB_NOTICE_ENDED, now);
    else if (e.state == FXB_ENT_GRANTED)
        notify(ctx, p, subject, FXB_NOTICE_GRANTED, now);
    const char *why =
        fxb_arena_printf(fxb_ctx_arena(ctx), "%s %s%s%s", p->id, confirm ? "confirmed" : "rejected",
                         text && text[0] ? ": " : "", str_or_empty(text));
    if (why == NULL)
        return out_of_memory(ctx);
    rc = audit(ctx, confirm ? "benefit.confirm" : "benefit.reject", subject, why, now);
    if (rc != FXB_OK)
        return rc;
    Fxb__V1__Entitlement *x = ent_proto(fxb_ctx_arena(ctx), p->id, &e, p);
    if (x == NULL)
        return out_of_memory(ctx);
    *(Fxb__V1__Entitlement *)resp_msg = *x;
    return FXB_OK;
}

static fxb_code confirm_entitlement(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                    ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ConfirmEntitlementRequest *req =
        (const Fxb__V1__ConfirmEntitlementRequest *)req_msg;
    fxb_policy p;
    fxb_code rc = staff_policy(ctx, req->policy_id, &p);
    if (rc == FXB_OK)
        rc = subject_check(ctx, req->subject_id);
    if (rc == FXB_OK)
        rc = text_check(ctx, req->note, 0, NOTE_MAX, "note", "NOTE_INVALID", "备注最多200个字符");
    if (rc != FXB_OK)
        return rc;
    return staff_step(ctx, &p, req->subject_id, true, req->note, resp_msg);
}

static fxb_code reject_entitlement(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RejectEntitlementRequest *req =
        (const Fxb__V1__RejectEntitlementRequest *)req_msg;
    fxb_policy p;
    fxb_code rc = staff_policy(ctx, req->policy_id, &p);
    if (rc == FXB_OK)
        rc = subject_check(ctx, req->subject_id);
    if (rc == FXB_OK)
        rc = text_check(ctx, req->reason, 1, REASON_MAX, "reason", "REASON_REQUIRED",
                        "请填写不予兑现的理由（1至200个字符）");
    if (rc != FXB_OK)
        return rc;
    return staff_step(ctx, &p, req->subject_id, false, req->reason, resp_msg);
}

/* --- RecordPayment ------------------------------------------------------------------ */

static bool reference_valid(const char *s)
{
    size_t n = s ? strnlen(s, 65) : 0;
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static fxb_code record_payment(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RecordPaymentRequest *req = (const Fxb__V1__RecordPaymentRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *key = str_or_empty(req->disbursement_key);
    size_t klen = strnlen(key, FXB_ENT_KEY_MAX + 1);
    if (klen <= FXB_POLICY_ID_LEN || klen > FXB_ENT_KEY_MAX || key[FXB_POLICY_ID_LEN] != ':')
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "DISBURSEMENT_KEY_INVALID", "兑付标识不正确",
                            "disbursement_key must be <policy id>:<subject>:<round>");
    if (!reference_valid(req->payment_reference))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAYMENT_REFERENCE_INVALID",
                            "支付流水号不正确",
                            "payment_reference must be 1..64 of [A-Za-z0-9-_.]");
    int64_t now = fxb_wall_ms();
    if (req->paid_at_ms < 0 || req->paid_at_ms > now + PAID_AHEAD_MS)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAID_AT_INVALID", "支付时间不正确",
                            "paid_at_ms must be 0 (now) or a time not after tomorrow");
    char pid[FXB_POLICY_ID_LEN + 1];
    memcpy(pid, key, FXB_POLICY_ID_LEN);
    pid[FXB_POLICY_ID_LEN] = '\0';
    /* a repeated payment answers the same and notifies nobody again */
    bool repeat = false;
    const char *paid_key = fxb_policy_key(a, pid, "paid");
    fxb_err err;
    if (paid_key != NULL) {
        const char *argv[] = {"HEXISTS", paid_key, key};
        redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 3, argv, NULL);
        if (r == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        repeat = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    fxb_ent e;
    char pid_out[FXB_POLICY_ID_LEN + 1] = "";
    if (fxb_ent_pay(fxb_ctx_store(ctx), key, req->payment_reference, req->paid_at_ms, now, &e,
                    pid_out, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_policy p;
    fxb_code rc = read_policy(ctx, pid_out, &p, NULL);
    if (rc != FXB_OK)
        return rc;
    if (!repeat)
        notify(ctx, &p, e.subject, FXB_NOTICE_PAID, now);
    Fxb__V1__Entitlement *x = ent_proto(a, p.id, &e, &p);
    if (x == NULL)
        return out_of_memory(ctx);
    *(Fxb__V1__Entitlement *)resp_msg = *x;
    return FXB_OK;
}

/* Explanations: each condition of the policy's rule and its truth for the
 * entitlement's own subject when decided (the stored letters, one per
 * condition), or, when none were stored, for its profile now. Only that
 * subject's profile is read; a rule the schema no longer admits (or no
 * schema) leaves the entitlement unexplained, never refused. */

/* x->explanation from the rule's conditions and n truth letters. */
static bool explanation_set(fxb_arena *a, const fxb_rule *rule, const char *held,
                            Fxb__V1__Entitlement *x)
{
    size_t n = 0;
    const char **src = condition_sources(a, rule, &n);
    Fxb__V1__ConditionResult **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    Fxb__V1__ConditionResult *items = fxb_arena_calloc(a, n ? n : 1, sizeof *items);
    if (src == NULL || list == NULL || items == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        fxb__v1__condition_result__init(&items[i]);
        items[i].index = (uint32_t)i;
        items[i].source = (char *)src[i];
        items[i].held = (char *)truth_word(held[i]);
        list[i] = &items[i];
    }
    x->explanation = list;
    x->n_explanation = n;
    return true;
}

/* The subject's profile as it is now (one HGETALL), decoded into the
 * arena; a missing profile decodes as empty (every condition UNKNOWN). */
static fxb_code profile_now(fxb_ctx *ctx, const fxb_schema *schema, const char *subject,
                            fxb_subject_type type, fxb_profile_view *out)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *key = subject_key(a, subject, "profile");
    if (key == NULL)
        return out_of_memory(ctx);
    fxb_err err;
    const char *argv[] = {"HGETALL", key};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 2, argv, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_profile_decoded dec;
    bool ok = fxb_profile_decode(schema, type, r, a, &dec);
    freeReplyObject(r);
    if (!ok)
        return out_of_memory(ctx);
    *out = fxb_profile_decoded_view(&dec);
    return FXB_OK;
}

/* One letter per condition of rule: the stored ones when there is one per
 * condition, else the rule evaluated on *view, read (profile_now) the first
 * time it is needed (*have_view tells whether it was). */
static fxb_code truth_letters(fxb_ctx *ctx, const fxb_schema *schema, const fxb_rule *rule,
                              const char *stored, const char *subject, fxb_subject_type type,
                              fxb_profile_view *view, bool *have_view, char **out)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    size_t n = fxb_rule_conditions(rule);
    char *held = fxb_arena_calloc(a, n + 1, 1);
    fxb_truth *t = fxb_arena_calloc(a, n ? n : 1, sizeof *t);
    if (held == NULL || t == NULL)
        return out_of_memory(ctx);
    if (strlen(stored) == n) {
        memcpy(held, stored, n);
    } else {
        if (!*have_view) {
            fxb_code rc = profile_now(ctx, schema, subject, type, view);
            if (rc != FXB_OK)
                return rc;
            *have_view = true;
        }
        fxb_rule_eval(rule, view, (uint32_t)today(), t);
        for (size_t i = 0; i < n; i++)
            held[i] = t[i] == FXB_TRUE ? 'T' : t[i] == FXB_FALSE ? 'F' : 'U';
    }
    *out = held;
    return FXB_OK;
}

/* The explanation of e (GetMyEntitlement). */
static fxb_code explain(fxb_ctx *ctx, const fxb_policy *p, const fxb_ent *e,
                        Fxb__V1__Entitlement *x)
{
    fxb_err err;
    const fxb_schema *schema;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &schema, &err) != FXB_OK)
        return FXB_OK; /* no schema, no explanation: the entitlement stands */
    fxb_rule *rule = NULL;
    if (fxb_rule_compile(schema, p->subject, p->rule, &rule, NULL, &err) != FXB_OK) {
        fxb_profile_schema_release(schema);
        return FXB_OK; /* the schema changed under the rule */
    }
    fxb_profile_view view;
    bool have_view = false;
    char *held = NULL;
    fxb_code rc =
        truth_letters(ctx, schema, rule, e->held, e->subject, p->subject, &view, &have_view, &held);
    if (rc == FXB_OK && !explanation_set(fxb_ctx_arena(ctx), rule, held, x))
        rc = out_of_memory(ctx);
    fxb_rule_free(rule);
    fxb_profile_schema_release(schema);
    return rc;
}

/* The explanations of one page of the caller's own entitlements
 * (ListMyEntitlements), exactly as explain() gives each: the schema
 * acquired once, each entry's rule compiled once (a subject holds one
 * entitlement per policy, so every entry is a distinct policy), and the
 * subject's profile read at most once, only for entries without stored
 * letters. helds[i] / pols[i]: entry i's stored letters and policy facts
 * (rule, subject type). */
static fxb_code explain_page(fxb_ctx *ctx, const char *subject, Fxb__V1__Entitlement **out,
                             const char *const *helds, const fxb_policy *pols, size_t m)
{
    if (m == 0)
        return FXB_OK;
    fxb_err err;
    const fxb_schema *schema;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &schema, &err) != FXB_OK)
        return FXB_OK;
    fxb_subject_type type = subject[0] == 'e' ? FXB_SUBJECT_ENTERPRISE : FXB_SUBJECT_PERSON;
    fxb_profile_view view;
    bool have_view = false;
    fxb_code rc = FXB_OK;
    for (size_t i = 0; i < m && rc == FXB_OK; i++) {
        fxb_rule *rule = NULL;
        if (pols[i].subject != type ||
            fxb_rule_compile(schema, type, pols[i].rule, &rule, NULL, &err) != FXB_OK)
            continue;
        char *held = NULL;
        rc = truth_letters(ctx, schema, rule, helds[i], subject, type, &view, &have_view, &held);
        if (rc == FXB_OK && !explanation_set(fxb_ctx_arena(ctx), rule, held, out[i]))
            rc = out_of_memory(ctx);
        fxb_rule_free(rule);
    }
    fxb_profile_schema_release(schema);
    return rc;
}

/* --- ListMyEntitlements / GetMyEntitlement / DeclineEntitlement ------------------------ */

/* ListMyEntitlements' fetch and take (zpager): the subject's entitlement
 * and the policy's facts; kept when it parses and has the state asked. */
typedef struct ent_pick {
    fxb_ctx *ctx;
    const Fxb__V1__ListMyEntitlementsRequest *req;
    const char *subject;
    Fxb__V1__Entitlement **out;
    const char **helds;
    fxb_policy *pols;
    size_t m;
} ent_pick;

static bool ent_fetch(void *arg, fxb_arena *a, const char *id, const char **argv[])
{
    const ent_pick *pk = arg;
    const char **get = fxb_arena_calloc(a, 4, sizeof *get);
    const char **facts = fxb_arena_calloc(a, 3 + N_FACTS, sizeof *facts);
    if (get == NULL || facts == NULL || (get[1] = fxb_policy_key(a, id, "ent")) == NULL ||
        (facts[1] = fxb_policy_key(a, id, "policy")) == NULL)
        return false;
    get[0] = "HGET";
    get[2] = pk->subject;
    facts[0] = "HMGET";
    for (size_t f = 0; f < N_FACTS; f++)
        facts[2 + f] = fact_fields[f];
    argv[0] = get;
    argv[1] = facts;
    return true;
}

static fxb_code ent_take(void *arg, const char *id, redisReply *const *replies, bool *taken)
{
    ent_pick *pk = arg;
    fxb_arena *a = fxb_ctx_arena(pk->ctx);
    const redisReply *ev = replies[0];
    fxb_ent e;
    fxb_policy p;
    if (ev == NULL || ev->type != REDIS_REPLY_STRING ||
        !fxb_ent_parse(pk->subject, ev->str, ev->len, &e) || !facts_from(a, replies[1], &p))
        return FXB_OK; /* an index entry left behind */
    if (pk->req->state != 0 && e.state != (int)pk->req->state)
        return FXB_OK;
    if ((pk->out[pk->m] = ent_proto(a, id, &e, &p)) == NULL ||
        (pk->helds[pk->m] = fxb_arena_strdup(a, e.held)) == NULL)
        return out_of_memory(pk->ctx);
    pk->pols[pk->m++] = p;
    *taken = true;
    return FXB_OK;
}

static fxb_code list_my_entitlements(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                     ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListMyEntitlementsRequest *req =
        (const Fxb__V1__ListMyEntitlementsRequest *)req_msg;
    Fxb__V1__ListEntitlementsResponse *resp = (Fxb__V1__ListEntitlementsResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    if ((unsigned)req->state > FXB__V1__ENTITLEMENT_STATE__ENTITLEMENT_STATE_ENDED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "STATE_INVALID", "查询条件不正确",
                            "state must be 0 (any) or an EntitlementState");
    size_t page = 0;
    fxb_code rc = page_size_check(ctx, req->page_size, &page);
    if (rc != FXB_OK)
        return rc;
    char subject[SUBJECT_LEN + 1];
    rc = my_subject(ctx, req->enterprise_id, subject);
    if (rc != FXB_OK)
        return rc;
    /* entries a large match has not listed yet (lists.h) first */
    fxb_err lerr;
    if (fxb_lists_repair(fxb_ctx_store(ctx), subject, NULL, &lerr) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &lerr);
    const char *scope = fxb_arena_printf(a, "mine|%s|%d", subject, (int)req->state);
    const char *key = subject_key(a, subject, "benefits");
    Fxb__V1__Entitlement **out = fxb_arena_calloc(a, page, sizeof *out);
    const char **helds = fxb_arena_calloc(a, page, sizeof *helds);
    fxb_policy *pols = fxb_arena_calloc(a, page, sizeof *pols);
    if (scope == NULL || key == NULL || out == NULL || helds == NULL || pols == NULL)
        return out_of_memory(ctx);
    ent_pick pk = {ctx, req, subject, out, helds, pols, 0};
    zpager z = {key, scope, req->page_token, page, 2, ent_fetch, ent_take, &pk};
    const char *next = "";
    rc = zpage(ctx, &z, &next);
    if (rc == FXB_OK)
        rc = explain_page(ctx, subject, out, helds, pols, pk.m);
    if (rc != FXB_OK)
        return rc;
    resp->entitlements = out;
    resp->n_entitlements = pk.m;
    resp->next_page_token = (char *)next;
    return FXB_OK;
}

static fxb_code get_my_entitlement(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetMyEntitlementRequest *req = (const Fxb__V1__GetMyEntitlementRequest *)req_msg;
    fxb_code rc = policy_id_check(ctx, req->policy_id);
    char subject[SUBJECT_LEN + 1];
    if (rc == FXB_OK)
        rc = my_subject(ctx, req->enterprise_id, subject);
    if (rc != FXB_OK)
        return rc;
    fxb_ent e;
    fxb_err err;
    if (fxb_ent_get(fxb_ctx_store(ctx), req->policy_id, subject, &e, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_policy p;
    rc = read_policy(ctx, req->policy_id, &p, NULL);
    if (rc != FXB_OK)
        return rc;
    Fxb__V1__Entitlement *x = ent_proto(fxb_ctx_arena(ctx), p.id, &e, &p);
    if (x == NULL)
        return out_of_memory(ctx);
    rc = explain(ctx, &p, &e, x);
    if (rc != FXB_OK)
        return rc;
    *(Fxb__V1__Entitlement *)resp_msg = *x;
    return FXB_OK;
}

static fxb_code decline_entitlement(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                    ProtobufCMessage *resp_msg)
{
    const Fxb__V1__DeclineEntitlementRequest *req =
        (const Fxb__V1__DeclineEntitlementRequest *)req_msg;
    fxb_code rc = policy_id_check(ctx, req->policy_id);
    if (rc == FXB_OK)
        rc = text_check(ctx, req->reason, 0, REASON_MAX, "reason", "REASON_INVALID",
                        "理由最多200个字符");
    char subject[SUBJECT_LEN + 1];
    if (rc == FXB_OK)
        rc = my_subject(ctx, req->enterprise_id, subject);
    if (rc != FXB_OK)
        return rc;
    fxb_ent e;
    fxb_err err;
    if (fxb_ent_decline(fxb_ctx_store(ctx), req->policy_id, subject, fxb_wall_ms(),
                        fxb_ctx_caller(ctx)->account_id, &e, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_policy p;
    rc = read_policy(ctx, req->policy_id, &p, NULL);
    if (rc != FXB_OK)
        return rc;
    Fxb__V1__Entitlement *x = ent_proto(fxb_ctx_arena(ctx), p.id, &e, &p);
    if (x == NULL)
        return out_of_memory(ctx);
    *(Fxb__V1__Entitlement *)resp_msg = *x;
    return FXB_OK;
}

/* --- SetPayoutAccount / GetPayoutAccount -------------------------------------------------- */

static bool digits(const char *s, size_t min, size_t max)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static fxb_code not_configured(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "PAYOUT_NOT_CONFIGURED", ZH_BUSY,
                        "payout accounts need the data keys, which this server has not loaded");
}

/* Opens a sealed field of subject's payout hash (arena), or NULL. */
static char *open_sealed(fxb_ctx *ctx, const char *label, const char *subject, const redisReply *v,
                         fxb_err *err)
{
    if (v->type != REDIS_REPLY_STRING || v->len > FXB_CRYPTO_SEALED_MAX) {
        fxb_err_set(err, FXB_DATA_LOSS, "PAYOUT_CORRUPT", ZH_BUSY,
                    "a stored payout account field is missing");
        return NULL;
    }
    uint8_t *pt = NULL;
    size_t len = 0;
    if (fxb_crypto_open(deps.crypto, label, subject, v->str, fxb_ctx_arena(ctx), &pt, &len, err) !=
        FXB_OK)
        return NULL;
    return (char *)pt;
}

/* The masked account of subject into *out (set = false when none). */
static fxb_code read_payout(fxb_ctx *ctx, const char *subject, Fxb__V1__PayoutAccount *out)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *key = subject_key(a, subject, "payout");
    if (key == NULL)
        return out_of_memory(ctx);
    fxb_err err;
    const char *argv[] = {"HMGET", key, "bank_name", "account_enc", "name_enc", "updated_at_ms"};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 6, argv, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        freeReplyObject(r);
        return store_shape(ctx, "HMGET");
    }
    out->bank_name = out->account_masked = out->account_name_masked = "";
    if (r->element[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return FXB_OK;
    }
    char *number = open_sealed(ctx, FXB_PAYOUT_LABEL_ACCOUNT, subject, r->element[1], &err);
    char *name =
        number ? open_sealed(ctx, FXB_PAYOUT_LABEL_NAME, subject, r->element[2], &err) : NULL;
    fxb_code rc = FXB_OK;
    if (number == NULL || name == NULL) {
        rc = fxb_ctx_fail_err(ctx, &err);
    } else {
        size_t n = strlen(number);
        char masked_name[4 * FXB_PAYOUT_NAME_MAX + 1];
        fxb_mask_name(name, masked_name, sizeof masked_name);
        out->account_masked =
            n >= 8 ? fxb_arena_printf(a, "%.4s **** **** %s", number, number + n - 4) : "****";
        out->account_name_masked = fxb_arena_strdup(a, masked_name);
        out->bank_name = fxb_arena_strdup(
            a, r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : "");
        out->updated_at_ms =
            r->element[3]->type == REDIS_REPLY_STRING ? strtoll(r->element[3]->str, NULL, 10) : 0;
        out->set = true;
        if (out->account_masked == NULL || out->account_name_masked == NULL ||
            out->bank_name == NULL)
            rc = out_of_memory(ctx);
    }
    if (number != NULL)
        OPENSSL_cleanse(number, strlen(number));
    if (name != NULL)
        OPENSSL_cleanse(name, strlen(name));
    freeReplyObject(r);
    return rc;
}

static fxb_code set_payout_account(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SetPayoutAccountRequest *req = (const Fxb__V1__SetPayoutAccountRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    if (deps.crypto == NULL)
        return not_configured(ctx);
    fxb_code rc = text_check(ctx, req->bank_name, 1, FXB_PAYOUT_BANK_MAX, "bank_name",
                             "BANK_NAME_INVALID", "请填写开户银行（1至60个字符）");
    if (rc != FXB_OK)
        return rc;
    if (!digits(req->account_number, FXB_PAYOUT_NUMBER_MIN, FXB_PAYOUT_NUMBER_MAX))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "ACCOUNT_NUMBER_INVALID",
                            "银行账号须为8至32位数字", "account_number must be %d..%d digits",
                            FXB_PAYOUT_NUMBER_MIN, FXB_PAYOUT_NUMBER_MAX);
    rc = text_check(ctx, req->account_name, 1, FXB_PAYOUT_NAME_MAX, "account_name",
                    "ACCOUNT_NAME_INVALID", "请填写账户名（1至60个字符）");
    char subject[SUBJECT_LEN + 1];
    if (rc == FXB_OK)
        rc = my_subject(ctx, req->enterprise_id, subject);
    if (rc != FXB_OK)
        return rc;
    int64_t now = fxb_wall_ms();
    fxb_err err;
    char *number_enc = NULL, *name_enc = NULL;
    const char *number = req->account_number;
    size_t n = strlen(number);
    if (fxb_crypto_seal(deps.crypto, FXB_PAYOUT_LABEL_ACCOUNT, subject, (const uint8_t *)number, n,
                        a, &number_enc, &err) != FXB_OK ||
        fxb_crypto_seal(deps.crypto, FXB_PAYOUT_LABEL_NAME, subject,
                        (const uint8_t *)req->account_name, strlen(req->account_name), a, &name_enc,
                        &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char last4[5], at[24];
    memcpy(last4, number + n - 4, 5);
    snprintf(at, sizeof at, "%" PRId64, now);
    const char *key = subject_key(a, subject, "payout");
    if (key == NULL)
        return out_of_memory(ctx);
    /* the audit record first: no change without one */
    rc = audit(ctx, "benefit.payout_account", subject, "payout account set, step-up verified", now);
    if (rc != FXB_OK)
        return rc;
    const char *argv[] = {"HSET",        key,        "bank_name",     req->bank_name,
                          "account_enc", number_enc, "name_enc",      name_enc,
                          "last4",       last4,      "updated_at_ms", at};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 12, argv, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    freeReplyObject(r);
    return read_payout(ctx, subject, (Fxb__V1__PayoutAccount *)resp_msg);
}

static fxb_code get_payout_account(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetPayoutAccountRequest *req = (const Fxb__V1__GetPayoutAccountRequest *)req_msg;
    if (deps.crypto == NULL)
        return not_configured(ctx);
    char subject[SUBJECT_LEN + 1];
    fxb_code rc = my_subject(ctx, req->enterprise_id, subject);
    if (rc != FXB_OK)
        return rc;
    return read_payout(ctx, subject, (Fxb__V1__PayoutAccount *)resp_msg);
}

/* --- method table -------------------------------------------------------------------- */

#define SVC "/fxb.v1.BenefitService/"

/* Admins, and officers (their department checked by the handler). */
#define STAFF                                                                                      \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .roles = FXB_ROLE_OFFICER | FXB_ROLE_ADMIN                   \
    }
/* The subject's own, or through a proxy with benefits.read. */
#define BENEFITS_READER                                                                            \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = FXB_LEVEL_REAL_NAME, .delegable = true,         \
        .scope = FXB_CAP_BENEFITS_READ                                                             \
    }
/* The subject itself, never through a proxy. */
#define OWN_SUBJECT                                                                                \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = FXB_LEVEL_REAL_NAME                             \
    }

/* The payment system's feed, or an admin. */
#define PAYMENT_SYSTEM                                                                             \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .roles = FXB_ROLE_DATA_FEED | FXB_ROLE_ADMIN                 \
    }
#define ANYONE                                                                                     \
    {                                                                                              \
        .kind = FXB_ACCESS_PUBLIC                                                                  \
    }
/* Where money goes: the subject itself at L3, with a fresh step-up. */
#define OWN_SUBJECT_STEP_UP                                                                        \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = FXB_LEVEL_REAL_FACE,                            \
        .step_up_s = FXB_PAYOUT_STEP_UP_S                                                          \
    }

#define UNARY(name, req, resp, fn, acc, max)                                                       \
    {                                                                                              \
        .path = SVC name, .request = &req##__descriptor, .response = &resp##__descriptor,          \
        .kind = FXB_RPC_UNARY, .unary = fn, .access = acc, .limits = {                             \
            .max_request_bytes = max                                                               \
        }                                                                                          \
    }

static const fxb_method methods[] = {
    UNARY("CreatePolicy", fxb__v1__create_policy_request, fxb__v1__policy, create_policy, STAFF,
          DRAFT_REQUEST),
    UNARY("UpdatePolicy", fxb__v1__update_policy_request, fxb__v1__policy, update_policy, STAFF,
          DRAFT_REQUEST),
    UNARY("PublishPolicy", fxb__v1__publish_policy_request, fxb__v1__policy, publish_policy, STAFF,
          SMALL_REQUEST),
    UNARY("ClosePolicy", fxb__v1__close_policy_request, fxb__v1__policy, close_policy, STAFF,
          SMALL_REQUEST),
    UNARY("GetPolicy", fxb__v1__get_policy_request, fxb__v1__policy, get_policy, STAFF,
          SMALL_REQUEST),
    {.path = SVC "ListPolicies",
     .request = &fxb__v1__list_policies_request__descriptor,
     .response = &fxb__v1__list_policies_response__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = list_policies,
     .access = {.kind = FXB_ACCESS_SIGNED_IN,
                .roles = FXB_ROLE_OFFICER | FXB_ROLE_ADMIN,
                .dept_field = "department"},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    UNARY("CheckRule", fxb__v1__check_rule_request, fxb__v1__check_rule_response, check_rule, STAFF,
          DRAFT_REQUEST),
    UNARY("ListPolicyEntitlements", fxb__v1__list_policy_entitlements_request,
          fxb__v1__list_entitlements_response, list_policy_entitlements, STAFF, SMALL_REQUEST),
    UNARY("ConfirmEntitlement", fxb__v1__confirm_entitlement_request, fxb__v1__entitlement,
          confirm_entitlement, STAFF, SMALL_REQUEST),
    UNARY("RejectEntitlement", fxb__v1__reject_entitlement_request, fxb__v1__entitlement,
          reject_entitlement, STAFF, SMALL_REQUEST),
    UNARY("RecordPayment", fxb__v1__record_payment_request, fxb__v1__entitlement, record_payment,
          PAYMENT_SYSTEM, SMALL_REQUEST),
    UNARY("ListPublishedPolicies", fxb__v1__list_published_policies_request,
          fxb__v1__list_policies_response, list_published, ANYONE, SMALL_REQUEST),
    UNARY("ListMyEntitlements", fxb__v1__list_my_entitlements_request,
          fxb__v1__list_entitlements_response, list_my_entitlements, BENEFITS_READER,
          SMALL_REQUEST),
    UNARY("GetMyEntitlement", fxb__v1__get_my_entitlement_request, fxb__v1__entitlement,
          get_my_entitlement, BENEFITS_READER, SMALL_REQUEST),
    UNARY("DeclineEntitlement", fxb__v1__decline_entitlement_request, fxb__v1__entitlement,
          decline_entitlement, OWN_SUBJECT, SMALL_REQUEST),
    UNARY("SetPayoutAccount", fxb__v1__set_payout_account_request, fxb__v1__payout_account,
          set_payout_account, OWN_SUBJECT_STEP_UP, SMALL_REQUEST),
    UNARY("GetPayoutAccount", fxb__v1__get_payout_account_request, fxb__v1__payout_account,
          get_payout_account, OWN_SUBJECT, SMALL_REQUEST),
};

const fxb_service fxb_benefit_service = {
    .name = "fxb.v1.BenefitService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
