/* Benefit policies: the stored record ({b:<pid>}:policy, keys in policy.h),
 * the view the engine and the entitlement code load, and the lifecycle
 * DRAFT -> PUBLISHED -> CLOSED that BenefitService drives (declared in
 * benefit.h). Every status change is one Lua script on the record that
 * checks status and version; the indexes (code, lists, the published set,
 * the revision and its wake-up message) follow in separate commands, so a
 * crash in between leaves the record authoritative and the rest repairable
 * by a retry. */
#include "services/benefit/policy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "server/text.h"
#include "services/benefit/benefit.h"
#include "services/benefit/rule.h"
#include "store/keys.h"

#define ID_BYTES 8 /* 16 hex digits */

#define KEY_CODE_PREFIX "fxb:benefit:code:"
#define KEY_ALL         "fxb:benefit:policies"
#define KEY_DEPT_PREFIX "fxb:benefit:dept:"

#define ZH_BUSY      "系统繁忙，请稍后重试"
#define ZH_NOT_FOUND "政策不存在"

/* --- ids and keys ----------------------------------------------------------- */

static bool hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool fxb_policy_id_valid(const char *id)
{
    return id != NULL && id[0] == 'b' && strnlen(id, FXB_POLICY_ID_LEN + 1) == FXB_POLICY_ID_LEN &&
           hex_lower(id + 1, FXB_POLICY_ID_LEN - 1);
}

char *fxb_policy_key(fxb_arena *a, const char *id, const char *suffix)
{
    if (!fxb_policy_id_valid(id))
        return NULL;
    return fxb_key_owned(a, "b", id, suffix);
}

static char *code_key(fxb_arena *a, const char *code)
{
    return fxb_arena_printf(a, KEY_CODE_PREFIX "%s", code);
}

static char *dept_key(fxb_arena *a, const char *dept)
{
    return fxb_arena_printf(a, KEY_DEPT_PREFIX "%s", dept);
}

/* --- reading ---------------------------------------------------------------- */

static const char *hstr(fxb_arena *a, const redisReply *kv, const char *name)
{
    const char *v = fxb_store_hash_get(kv, name);
    return fxb_arena_strdup(a, v ? v : "");
}

bool fxb_policy_from_hash(const char *id, const redisReply *kv, fxb_arena *a, fxb_policy *out)
{
    memset(out, 0, sizeof *out);
    if (!fxb_policy_id_valid(id) || kv == NULL || kv->type != REDIS_REPLY_ARRAY ||
        kv->elements == 0)
        return false;
    memcpy(out->id, id, FXB_POLICY_ID_LEN + 1);
    out->code = hstr(a, kv, "code");
    out->title = hstr(a, kv, "title");
    out->department = hstr(a, kv, "department");
    out->rule = hstr(a, kv, "rule");
    if (out->code == NULL || out->title == NULL || out->department == NULL || out->rule == NULL)
        return false;
    out->category = (int)fxb_store_hash_int(kv, "category");
    out->subject =
        fxb_store_hash_int(kv, "subject_type") == FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE
            ? FXB_SUBJECT_ENTERPRISE
            : FXB_SUBJECT_PERSON;
    out->kind = (int)fxb_store_hash_int(kv, "benefit_kind");
    out->amount_fen = fxb_store_hash_int(kv, "amount_fen");
    out->valid_from_ms = fxb_store_hash_int(kv, "valid_from_ms");
    out->valid_until_ms = fxb_store_hash_int(kv, "valid_until_ms");
    out->budget_fen = fxb_store_hash_int(kv, "budget_fen");
    out->quota = fxb_store_hash_int(kv, "quota");
    out->confirm = fxb_store_hash_int(kv, "confirm") == 1;
    out->status = (int)fxb_store_hash_int(kv, "status");
    out->version = fxb_store_hash_int(kv, "version");
    return true;
}

fxb_code fxb_policy_load(fxb_store *s, const char *id, fxb_arena *a, fxb_policy *out, fxb_err *err)
{
    memset(out, 0, sizeof *out);
    if (!fxb_policy_id_valid(id))
        return fxb_err_set(err, FXB_NOT_FOUND, "POLICY_NOT_FOUND", ZH_NOT_FOUND,
                           "no policy with that id");
    const char *key = fxb_policy_key(a, id, "policy");
    if (key == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    const char *argv[] = {"HGETALL", key};
    redisReply *r = fxb_store_commandv(s, err, 2, argv, NULL);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_ARRAY)
        rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                         "HGETALL answered in an unexpected shape");
    else if (r->elements == 0)
        rc = fxb_err_set(err, FXB_NOT_FOUND, "POLICY_NOT_FOUND", ZH_NOT_FOUND,
                         "no policy with that id");
    else if (!fxb_policy_from_hash(id, r, a, out))
        rc = fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    freeReplyObject(r);
    return rc;
}

fxb_code fxb_policy_published_ids(fxb_store *s, fxb_arena *a, char ***ids, size_t *n, fxb_err *err)
{
    *ids = NULL;
    *n = 0;
    const char *argv[] = {"SMEMBERS", FXB_BENEFIT_PUBLISHED};
    redisReply *r = fxb_store_commandv(s, err, 2, argv, NULL);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                           "SMEMBERS answered in an unexpected shape");
    }
    char **out = fxb_arena_calloc(a, r->elements ? r->elements : 1, sizeof *out);
    size_t m = 0;
    bool ok = out != NULL;
    for (size_t i = 0; ok && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || !fxb_policy_id_valid(e->str))
            continue; /* not a policy id: never ours */
        out[m] = fxb_arena_strdup(a, e->str);
        ok = out[m++] != NULL;
    }
    freeReplyObject(r);
    if (!ok)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    *ids = out;
    *n = m;
    return FXB_OK;
}

bool fxb_policy_in_window(const fxb_policy *p, int64_t now_ms)
{
    return now_ms >= p->valid_from_ms && (p->valid_until_ms == 0 || now_ms < p->valid_until_ms);
}

/* KEYS[1] the record; ARGV at_ms, subjects. Only an existing record: a
 * policy deleted by hand does not come back as a stub. */
static fxb_script note_script =
    FXB_SCRIPT("policy_note_match",
               "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
               "redis.call('HSET', KEYS[1], 'last_match_at_ms', ARGV[1], 'last_match_subjects',\n"
               "           ARGV[2])\n"
               "return 1\n");

fxb_code fxb_policy_note_match(fxb_store *s, const char *id, int64_t at_ms, uint64_t subjects,
                               fxb_err *err)
{
    char key[64], at[24], n[24];
    if (!fxb_policy_id_valid(id))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "POLICY_ID_INVALID", ZH_BUSY,
                           "not a policy id");
    snprintf(key, sizeof key, "{b:%s}:policy", id);
    snprintf(at, sizeof at, "%" PRId64, at_ms);
    snprintf(n, sizeof n, "%" PRIu64, subjects);
    const char *keys[] = {key};
    const char *args[] = {at, n};
    redisReply *r = fxb_store_eval(s, err, &note_script, 1, keys, 2, args, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}

/* --- checking a draft ------------------------------------------------------- */

/* [A-Z0-9-]{3,32} */
static bool code_valid(const char *s)
{
    size_t n = s ? strnlen(s, FXB_POLICY_CODE_MAX + 1) : 0;
    if (n < FXB_POLICY_CODE_MIN || n > FXB_POLICY_CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

bool fxb_policy_dept_valid(const char *s)
{
    size_t n = s ? strnlen(s, FXB_POLICY_DEPT_MAX + 1) : 0;
    if (n < 1 || n > FXB_POLICY_DEPT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* 1..FXB_RULE_TEXT_MAX bytes of well-formed UTF-8 whose only control
 * characters are tabs and line breaks (rules span lines). */
static bool rule_text_ok(const char *s)
{
    size_t n = s ? strnlen(s, FXB_RULE_TEXT_MAX + 1) : 0;
    if (n < 1 || n > FXB_RULE_TEXT_MAX)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = fxb_utf8_next(p + i, n - i, &cp);
        if (k == 0)
            return false;
        if (fxb_text_is_control(cp) && cp != '\t' && cp != '\n' && cp != '\r')
            return false;
        i += k;
    }
    return true;
}

fxb_code fxb_policy_draft_check(const Fxb__V1__PolicyDraft *d, fxb_err *err)
{
    if (d == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DRAFT_REQUIRED", "请填写政策内容",
                           "draft is required");
    if (!code_valid(d->code))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "POLICY_CODE_INVALID",
                           "政策编码须为3至32位大写字母、数字或连字符",
                           "code must be %d..%d characters of [A-Z0-9-]", FXB_POLICY_CODE_MIN,
                           FXB_POLICY_CODE_MAX);
    if (!fxb_text_ok(d->title, 1, FXB_POLICY_TITLE_MAX))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "TITLE_INVALID", "政策名称须为1至100个字符",
                           "title must be 1..%d characters of UTF-8 text without control "
                           "characters",
                           FXB_POLICY_TITLE_MAX);
    if (d->category < FXB__V1__POLICY_CATEGORY__POLICY_CATEGORY_ENTERPRISE ||
        d->category > FXB__V1__POLICY_CATEGORY__POLICY_CATEGORY_FINANCE)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "CATEGORY_INVALID", "请选择政策类别",
                           "category must be one of ENTERPRISE, PEOPLE, TALENT, INVESTMENT, "
                           "FINANCE");
    if (!fxb_policy_dept_valid(d->department))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DEPARTMENT_INVALID", "部门代码不正确",
                           "department must be 1..%d characters of [a-z0-9-]", FXB_POLICY_DEPT_MAX);
    if (d->subject_type != FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON &&
        d->subject_type != FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SUBJECT_TYPE_INVALID",
                           "请选择政策对象（个人或企业）",
                           "subject_type must be PERSON or ENTERPRISE");
    if (!rule_text_ok(d->rule))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "RULE_INVALID",
                           "条件规则须为1至2000字节的文本",
                           "rule must be 1..%d bytes of UTF-8 text (tabs and line breaks are "
                           "the only control characters allowed)",
                           FXB_RULE_TEXT_MAX);
    if (d->benefit_kind < FXB__V1__BENEFIT_KIND__BENEFIT_KIND_CASH ||
        d->benefit_kind > FXB__V1__BENEFIT_KIND__BENEFIT_KIND_VOUCHER)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BENEFIT_KIND_INVALID", "请选择兑现方式",
                           "benefit_kind must be one of CASH, SUBSIDY, SERVICE, VOUCHER");
    if (d->amount_fen < 0 || d->amount_fen > FXB_POLICY_FEN_MAX ||
        (d->benefit_kind == FXB__V1__BENEFIT_KIND__BENEFIT_KIND_CASH && d->amount_fen == 0))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "AMOUNT_INVALID", "金额不正确",
                           "amount_fen must be 0..%lld (CASH: 1..%lld)", FXB_POLICY_FEN_MAX,
                           FXB_POLICY_FEN_MAX);
    if (d->valid_from_ms < 0 || d->valid_from_ms > FXB_POLICY_TIME_MAX || d->valid_until_ms < 0 ||
        d->valid_until_ms > FXB_POLICY_TIME_MAX ||
        (d->valid_until_ms != 0 && d->valid_until_ms <= d->valid_from_ms))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "VALIDITY_INVALID", "有效期不正确",
                           "valid_until_ms must be 0 (open-ended) or after valid_from_ms, both "
                           "within 0..%lld",
                           FXB_POLICY_TIME_MAX);
    if (d->budget_fen < 0 || d->budget_fen > FXB_POLICY_FEN_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BUDGET_INVALID", "预算金额不正确",
                           "budget_fen must be 0 (no limit)..%lld", FXB_POLICY_FEN_MAX);
    if (d->quota < 0 || d->quota > FXB_POLICY_QUOTA_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "QUOTA_INVALID", "名额不正确",
                           "quota must be 0 (no limit)..%lld", FXB_POLICY_QUOTA_MAX);
    if (!fxb_text_ok(d->summary, 0, FXB_POLICY_SUMMARY_MAX))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SUMMARY_INVALID", "政策说明最多500个字符",
                           "summary must be 0..%d characters of UTF-8 text without control "
                           "characters",
                           FXB_POLICY_SUMMARY_MAX);
    if (!fxb_text_ok(d->legal_basis, 0, FXB_POLICY_LEGAL_BASIS_MAX))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "LEGAL_BASIS_INVALID",
                           "政策依据最多200个字符",
                           "legal_basis must be 0..%d characters of UTF-8 text without control "
                           "characters",
                           FXB_POLICY_LEGAL_BASIS_MAX);
    return FXB_OK;
}

/* --- writing ------------------------------------------------------------------ */

/* The draft's fields as HSET arguments ("name", value, ...) in the arena;
 * *n receives their count. NULL on allocation failure. */
static const char **draft_args(fxb_arena *a, const Fxb__V1__PolicyDraft *d, size_t lead, size_t *n)
{
    enum { PAIRS = 15 };
    const char **v = fxb_arena_calloc(a, lead + 2 * PAIRS, sizeof *v);
    if (v == NULL)
        return NULL;
    size_t i = lead;
#define PUT(name, val) (v[i++] = (name), v[i++] = (val))
    PUT("code", d->code);
    PUT("title", d->title);
    PUT("category", fxb_arena_printf(a, "%d", (int)d->category));
    PUT("department", d->department);
    PUT("subject_type", fxb_arena_printf(a, "%d", (int)d->subject_type));
    PUT("rule", d->rule);
    PUT("benefit_kind", fxb_arena_printf(a, "%d", (int)d->benefit_kind));
    PUT("amount_fen", fxb_arena_printf(a, "%" PRId64, d->amount_fen));
    PUT("valid_from_ms", fxb_arena_printf(a, "%" PRId64, d->valid_from_ms));
    PUT("valid_until_ms", fxb_arena_printf(a, "%" PRId64, d->valid_until_ms));
    PUT("budget_fen", fxb_arena_printf(a, "%" PRId64, d->budget_fen));
    PUT("quota", fxb_arena_printf(a, "%" PRId64, d->quota));
    PUT("confirm", d->confirmation_required ? "1" : "0");
    PUT("summary", d->summary ? d->summary : "");
    PUT("legal_basis", d->legal_basis ? d->legal_basis : "");
#undef PUT
    for (size_t k = lead; k < i; k++)
        if (v[k] == NULL)
            return NULL;
    *n = i - lead;
    return v;
}

static fxb_code oom(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code code_taken(fxb_err *err, const char *code)
{
    return fxb_err_set(err, FXB_ALREADY_EXISTS, "POLICY_CODE_TAKEN", "该政策编码已被使用",
                       "policy code %s is taken by another policy", code);
}

/* KEYS[1] the code's key; ARGV[1] the id holding it (as read), ARGV[2] the
 * new holder. Takes over a code whose holder no longer exists. */
static fxb_script code_take_script =
    FXB_SCRIPT("policy_code_take", "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                   "redis.call('SET', KEYS[1], ARGV[2])\n"
                                   "return 1\n");

/* KEYS[1] the code's key; ARGV[1] the id. Releases it while id holds it. */
static fxb_script code_release_script =
    FXB_SCRIPT("policy_code_release", "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                      "  return redis.call('DEL', KEYS[1])\n"
                                      "end\n"
                                      "return 0\n");

/* Claims code for id: SET NX; a code held by a policy that no longer
 * exists (a create that failed half-way) is taken over. */
static fxb_code code_claim(fxb_store *s, fxb_arena *a, const char *code, const char *id,
                           fxb_err *err)
{
    const char *key = code_key(a, code);
    if (key == NULL)
        return oom(err);
    const char *set[] = {"SET", key, id, "NX"};
    redisReply *r = fxb_store_commandv(s, err, 4, set, NULL);
    if (r == NULL)
        return err->code;
    bool ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (ok)
        return FXB_OK;
    const char *get[] = {"GET", key};
    r = fxb_store_commandv(s, err, 2, get, NULL);
    if (r == NULL)
        return err->code;
    char *holder = r->type == REDIS_REPLY_STRING ? fxb_arena_strdup(a, r->str) : NULL;
    freeReplyObject(r);
    if (holder == NULL || strcmp(holder, id) == 0)
        return holder ? FXB_OK : code_taken(err, code);
    const char *pkey = fxb_policy_key(a, holder, "policy");
    if (pkey != NULL) {
        const char *ex[] = {"EXISTS", pkey};
        r = fxb_store_commandv(s, err, 2, ex, NULL);
        if (r == NULL)
            return err->code;
        bool exists = r->type != REDIS_REPLY_INTEGER || r->integer != 0;
        freeReplyObject(r);
        if (exists)
            return code_taken(err, code);
    }
    const char *keys[] = {key};
    const char *args[] = {holder, id};
    r = fxb_store_eval(s, err, &code_take_script, 1, keys, 2, args, NULL);
    if (r == NULL)
        return err->code;
    ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok ? FXB_OK : code_taken(err, code);
}

static void code_release(fxb_store *s, fxb_arena *a, const char *code, const char *id)
{
    const char *key = code_key(a, code);
    if (key == NULL)
        return;
    const char *keys[] = {key};
    const char *args[] = {id};
    fxb_err ignored;
    redisReply *r = fxb_store_eval(s, &ignored, &code_release_script, 1, keys, 1, args, NULL);
    if (r != NULL)
        freeReplyObject(r);
}

/* KEYS[1] the record; ARGV now, by, then the draft's field/value pairs. */
static fxb_script create_script = FXB_SCRIPT(
    "policy_create", "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
                     "  return redis.error_reply('FXB 6 POLICY_ID_TAKEN policy id in use')\n"
                     "end\n"
                     "local f = {'status', '1', 'version', '1', 'created_at_ms', ARGV[1],\n"
                     "           'created_by', ARGV[2]}\n"
                     "for i = 3, #ARGV do f[#f + 1] = ARGV[i] end\n"
                     "redis.call('HSET', KEYS[1], unpack(f))\n"
                     "return 1\n");

static bool new_id(char id[FXB_POLICY_ID_LEN + 1])
{
    unsigned char b[ID_BYTES];
    if (RAND_bytes(b, sizeof b) != 1)
        return false;
    id[0] = 'b';
    for (size_t i = 0; i < ID_BYTES; i++)
        snprintf(id + 1 + 2 * i, 3, "%02x", b[i]);
    return true;
}

fxb_code fxb_policy_create(fxb_store *s, const Fxb__V1__PolicyDraft *d, const char *by,
                           int64_t now_ms, char id[FXB_POLICY_ID_LEN + 1], fxb_err *err)
{
    id[0] = '\0';
    fxb_code rc = fxb_policy_draft_check(d, err);
    if (rc != FXB_OK)
        return rc;
    if (!new_id(id))
        return fxb_err_set(err, FXB_INTERNAL, "RANDOM_FAILED", ZH_BUSY,
                           "no random bytes for a policy id");
    fxb_arena a;
    fxb_arena_init(&a, 0);
    size_t n = 0;
    const char **args = draft_args(&a, d, 2, &n);
    const char *key = fxb_policy_key(&a, id, "policy");
    const char *all = KEY_ALL, *dept = dept_key(&a, d->department);
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    if (args == NULL || key == NULL || dept == NULL) {
        rc = oom(err);
        goto out;
    }
    args[0] = now;
    args[1] = by ? by : "";
    rc = code_claim(s, &a, d->code, id, err);
    if (rc != FXB_OK)
        goto out;
    /* the lists first: an entry whose record never came is skipped by
     * readers, a record missing from its lists would be lost to them */
    const char *z1[] = {"ZADD", all, now, id};
    const char *z2[] = {"ZADD", dept, now, id};
    fxb_store_cmd cmds[] = {{4, z1, NULL}, {4, z2, NULL}};
    redisReply *rs[2] = {NULL, NULL};
    rc = fxb_store_pipeline(s, err, 2, cmds, rs);
    for (size_t i = 0; i < 2; i++) {
        if (rs[i] != NULL && rs[i]->type == REDIS_REPLY_ERROR && rc == FXB_OK)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY, "ZADD failed");
        if (rs[i] != NULL)
            freeReplyObject(rs[i]);
    }
    redisReply *r = NULL;
    if (rc == FXB_OK) {
        r = fxb_store_eval(s, err, &create_script, 1, &key, (int)(n + 2), args, NULL);
        rc = r != NULL ? FXB_OK : err->code;
        if (r != NULL)
            freeReplyObject(r);
    }
    if (rc != FXB_OK) {
        code_release(s, &a, d->code, id);
        const char *u1[] = {"ZREM", all, id};
        const char *u2[] = {"ZREM", dept, id};
        fxb_store_cmd undo[] = {{3, u1, NULL}, {3, u2, NULL}};
        fxb_err ignored;
        if (fxb_store_pipeline(s, &ignored, 2, undo, rs) == FXB_OK)
            for (size_t i = 0; i < 2; i++)
                if (rs[i] != NULL)
                    freeReplyObject(rs[i]);
    }
out:
    if (rc != FXB_OK)
        id[0] = '\0';
    fxb_arena_free(&a);
    return rc;
}

/* KEYS[1] the record; ARGV expected version (0 = any), the code as read,
 * now, then the draft's field/value pairs. Returns the new version. */
static fxb_script update_script = FXB_SCRIPT(
    "policy_update",
    "local h = redis.call('HMGET', KEYS[1], 'status', 'version', 'code')\n"
    "if not h[1] then\n"
    "  return redis.error_reply('FXB 5 POLICY_NOT_FOUND no policy with that id')\n"
    "end\n"
    "if h[1] ~= '1' then\n"
    "  return redis.error_reply('FXB 9 POLICY_STATE only a DRAFT policy can be updated')\n"
    "end\n"
    "if (ARGV[1] ~= '0' and ARGV[1] ~= h[2]) or h[3] ~= ARGV[2] then\n"
    "  return redis.error_reply('FXB 10 VERSION_CONFLICT the policy changed since version ' ..\n"
    "    ARGV[1] .. ' (now ' .. h[2] .. '): read it again')\n"
    "end\n"
    "local f = {'updated_at_ms', ARGV[3]}\n"
    "for i = 4, #ARGV do f[#f + 1] = ARGV[i] end\n"
    "redis.call('HSET', KEYS[1], unpack(f))\n"
    "return redis.call('HINCRBY', KEYS[1], 'version', 1)\n");

/* Replaces the generic zh text of the scripts' business errors. */
static void localize(fxb_err *err)
{
    if (strcmp(err->reason, "POLICY_STATE") == 0)
        snprintf(err->message_zh, sizeof err->message_zh, "%s", "政策当前状态不能进行此操作");
    else if (strcmp(err->reason, "VERSION_CONFLICT") == 0)
        snprintf(err->message_zh, sizeof err->message_zh, "%s", "政策已被他人修改，请刷新后重试");
    else if (strcmp(err->reason, "POLICY_NOT_FOUND") == 0)
        snprintf(err->message_zh, sizeof err->message_zh, "%s", ZH_NOT_FOUND);
}

fxb_code fxb_policy_update(fxb_store *s, const fxb_policy *cur, int64_t expected_version,
                           const Fxb__V1__PolicyDraft *d, int64_t now_ms, int64_t *version,
                           fxb_err *err)
{
    *version = 0;
    fxb_code rc = fxb_policy_draft_check(d, err);
    if (rc != FXB_OK)
        return rc;
    if (strcmp(d->department, cur->department) != 0)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DEPARTMENT_IMMUTABLE",
                           "政策的发布部门不能更改",
                           "a policy's department cannot change (leave it empty or the same)");
    if (cur->status != FXB_POLICY_DRAFT)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "POLICY_STATE",
                           "政策当前状态不能进行此操作",
                           "only a DRAFT policy can be updated; this one is %s",
                           cur->status == FXB_POLICY_PUBLISHED ? "PUBLISHED" : "CLOSED");
    fxb_arena a;
    fxb_arena_init(&a, 0);
    size_t n = 0;
    const char **args = draft_args(&a, d, 3, &n);
    const char *key = fxb_policy_key(&a, cur->id, "policy");
    char ver[24], now[24];
    snprintf(ver, sizeof ver, "%" PRId64, expected_version);
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    if (args == NULL || key == NULL) {
        fxb_arena_free(&a);
        return oom(err);
    }
    args[0] = ver;
    args[1] = cur->code;
    args[2] = now;
    bool new_code = strcmp(d->code, cur->code) != 0;
    if (new_code && (rc = code_claim(s, &a, d->code, cur->id, err)) != FXB_OK) {
        fxb_arena_free(&a);
        return rc;
    }
    redisReply *r = fxb_store_eval(s, err, &update_script, 1, &key, (int)(n + 3), args, NULL);
    if (r == NULL) {
        rc = err->code;
        localize(err);
        if (new_code)
            code_release(s, &a, d->code, cur->id);
        fxb_arena_free(&a);
        return rc;
    }
    if (r->type == REDIS_REPLY_INTEGER)
        *version = r->integer;
    freeReplyObject(r);
    if (new_code)
        code_release(s, &a, cur->code, cur->id);
    fxb_arena_free(&a);
    return FXB_OK;
}

/* KEYS[1] the record; ARGV from status, to status, expected version (0 =
 * any), then field/value pairs to set. Returns the new version. */
static fxb_script move_script = FXB_SCRIPT(
    "policy_move",
    "local h = redis.call('HMGET', KEYS[1], 'status', 'version')\n"
    "if not h[1] then\n"
    "  return redis.error_reply('FXB 5 POLICY_NOT_FOUND no policy with that id')\n"
    "end\n"
    "local names = {['1'] = 'DRAFT', ['2'] = 'PUBLISHED', ['3'] = 'CLOSED'}\n"
    "if h[1] ~= ARGV[1] then\n"
    "  return redis.error_reply('FXB 9 POLICY_STATE the policy is ' .. (names[h[1]] or '?') ..\n"
    "    ': this step needs ' .. names[ARGV[1]])\n"
    "end\n"
    "if ARGV[3] ~= '0' and ARGV[3] ~= h[2] then\n"
    "  return redis.error_reply('FXB 10 VERSION_CONFLICT the policy changed while this step ' ..\n"
    "    'ran: try again')\n"
    "end\n"
    "local f = {'status', ARGV[2]}\n"
    "for i = 4, #ARGV do f[#f + 1] = ARGV[i] end\n"
    "redis.call('HSET', KEYS[1], unpack(f))\n"
    "return redis.call('HINCRBY', KEYS[1], 'version', 1)\n");

/* After a publish or close: the published set, (on close) the engine's
 * to-do set of closes, the revision and the engines' wake-up, in one round
 * trip. The closing set comes before the revision: an engine that sees the
 * new revision finds the id there. */
static fxb_code announce(fxb_store *s, const char *id, bool published, fxb_err *err)
{
    const char *set[] = {published ? "SADD" : "SREM", FXB_BENEFIT_PUBLISHED, id};
    const char *closing[] = {"SADD", FXB_BENEFIT_CLOSING, id};
    const char *incr[] = {"INCR", FXB_BENEFIT_REV};
    const char *pub[] = {"PUBLISH", FXB_BENEFIT_CHANNEL, id};
    fxb_store_cmd cmds[4];
    size_t n = 0;
    cmds[n++] = (fxb_store_cmd){3, set, NULL};
    if (!published)
        cmds[n++] = (fxb_store_cmd){3, closing, NULL};
    cmds[n++] = (fxb_store_cmd){2, incr, NULL};
    cmds[n++] = (fxb_store_cmd){3, pub, NULL};
    redisReply *rs[4] = {NULL, NULL, NULL, NULL};
    fxb_code rc = fxb_store_pipeline(s, err, n, cmds, rs);
    for (size_t i = 0; i < n; i++) {
        if (rs[i] != NULL && rs[i]->type == REDIS_REPLY_ERROR && rc == FXB_OK)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY, "%s failed",
                             cmds[i].argv[0]);
        if (rs[i] != NULL)
            freeReplyObject(rs[i]);
    }
    return rc;
}

static fxb_code move(fxb_store *s, const char *id, int from, int to, int64_t version,
                     const char *const *set, size_t n_set, int64_t *new_version, fxb_err *err)
{
    char key[64], f[4], t[4], v[24];
    snprintf(key, sizeof key, "{b:%s}:policy", id);
    snprintf(f, sizeof f, "%d", from);
    snprintf(t, sizeof t, "%d", to);
    snprintf(v, sizeof v, "%" PRId64, version);
    const char *args[3 + 8];
    if (n_set > 8)
        return fxb_err_set(err, FXB_INTERNAL, "POLICY_ARGUMENT", ZH_BUSY, "too many fields");
    args[0] = f;
    args[1] = t;
    args[2] = v;
    for (size_t i = 0; i < n_set; i++)
        args[3 + i] = set[i];
    const char *keys[] = {key};
    redisReply *r = fxb_store_eval(s, err, &move_script, 1, keys, (int)(3 + n_set), args, NULL);
    if (r == NULL) {
        localize(err);
        return err->code;
    }
    if (new_version != NULL)
        *new_version = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return FXB_OK;
}

/* "line L, column C, near 'tok': why" */
static void rule_message(fxb_err *err, const fxb_rule_error *w)
{
    char zh[FXB_ERR_MESSAGE_MAX];
    char reason[FXB_ERR_REASON_MAX];
    snprintf(zh, sizeof zh, "%s", err->message_zh);
    snprintf(reason, sizeof reason, "%s", err->reason);
    fxb_code code = err->code;
    fxb_err_set(err, code, reason, zh, "line %u, column %u, near '%s': %s", w->line, w->col,
                w->token, w->message);
}

fxb_code fxb_policy_rule_compile(const fxb_schema *schema, const fxb_policy *p, fxb_rule **out,
                                 fxb_rule_error *where, fxb_err *err)
{
    fxb_rule_error w;
    fxb_rule_error *wp = where ? where : &w;
    fxb_code rc = fxb_rule_compile(schema, p->subject, p->rule, out, wp, err);
    if (rc == FXB_INVALID_ARGUMENT)
        rule_message(err, wp);
    return rc;
}

fxb_code fxb_policy_publish(fxb_store *s, const fxb_schema *schema, const fxb_policy *cur,
                            int64_t now_ms, fxb_rule_error *where, int64_t *version, fxb_err *err)
{
    if (where != NULL)
        memset(where, 0, sizeof *where);
    *version = 0;
    if (cur->status != FXB_POLICY_DRAFT)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "POLICY_STATE",
                           "政策当前状态不能进行此操作",
                           "only a DRAFT policy can be published; this one is %s",
                           cur->status == FXB_POLICY_PUBLISHED ? "PUBLISHED" : "CLOSED");
    fxb_rule *rule = NULL;
    fxb_code rc = fxb_policy_rule_compile(schema, cur, &rule, where, err);
    if (rc != FXB_OK)
        return rc;
    fxb_rule_free(rule);
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    const char *set[] = {"published_at_ms", now};
    rc = move(s, cur->id, FXB_POLICY_DRAFT, FXB_POLICY_PUBLISHED, cur->version, set, 2, version,
              err);
    if (rc != FXB_OK)
        return rc;
    return announce(s, cur->id, true, err);
}

fxb_code fxb_policy_close(fxb_store *s, const fxb_policy *cur, const char *reason, int64_t now_ms,
                          int64_t *version, fxb_err *err)
{
    *version = 0;
    if (cur->status != FXB_POLICY_PUBLISHED)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "POLICY_STATE",
                           "政策当前状态不能进行此操作",
                           "only a PUBLISHED policy can be closed; this one is %s",
                           cur->status == FXB_POLICY_DRAFT ? "DRAFT" : "CLOSED");
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    const char *set[] = {"closed_at_ms", now, "close_reason", reason ? reason : ""};
    fxb_code rc =
        move(s, cur->id, FXB_POLICY_PUBLISHED, FXB_POLICY_CLOSED, 0, set, 4, version, err);
    if (rc != FXB_OK)
        return rc;
    return announce(s, cur->id, false, err);
}
