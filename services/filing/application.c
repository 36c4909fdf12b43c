/* Applications: the record, its state machine, its indexes, its notices and
 * the sweeper's deadlines (the key schema is in application.h). A status
 * change is one script on the application's slot ({a:<aid>}: record,
 * history, materials) that checks the current status, writes the new one
 * and its fields, appends the history entry and returns the record as
 * written; the indexes of other slots (department queue and running list,
 * the subject's wallet counters, the timers) follow from that record, then
 * the notices. Index writes after the script are not atomic with it: a
 * crash between the two leaves an index stale until the next transition of
 * that application (readers always trust the record, never an index). */
#include "services/filing/application.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/log.h"
#include "services/calendar/calendar.h"
#include "services/material/material.h"
#include "services/rating/rating.h"
#include "store/inbox.h"
#include "store/keys.h"

#define ZH_BUSY        "系统繁忙，请稍后重试"
#define HISTORY_MAX    1000 /* transitions read back */
#define DUE_SOON_DAYS  2
#define NOTICE_KIND    "filing.status"
#define SWEEP_BATCH    100
#define CREDIT_PREFIX  "fxb:credit:"
#define DEPT_PREFIX    "fxb:dept:"
#define MATERIALS_WORD "materials"

/* --- statuses --------------------------------------------------------------- */

typedef struct status_info {
    fxb_app_status status;
    const char *word; /* stored */
    const char *name; /* English messages */
    const char *zh;
    int rank; /* how far along: a bundle shows its least advanced child */
    bool ended;
} status_info;

#define S(x) FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_##x

static const status_info statuses[] = {
    {S(DRAFT), "draft", "DRAFT", "草稿", 1, false},
    {S(SUBMITTED), "submitted", "SUBMITTED", "已提交，等待受理", 3, false},
    {S(NEEDS_CORRECTION), "needs_correction", "NEEDS_CORRECTION", "需要补正", 2, false},
    {S(ACCEPTED), "accepted", "ACCEPTED", "已受理", 4, false},
    {S(IN_REVIEW), "in_review", "IN_REVIEW", "审查中", 5, false},
    {S(SPECIAL_PROCEDURE), "special_procedure", "SPECIAL_PROCEDURE",
     "特别程序中（办理时限暂停计算）", 6, false},
    {S(APPROVED), "approved", "APPROVED", "已批准", 7, false},
    {S(DENIED), "denied", "DENIED", "不予批准", 8, true},
    {S(COMPLETED), "completed", "COMPLETED", "已办结", 9, true},
    {S(WITHDRAWN), "withdrawn", "WITHDRAWN", "已撤回", 9, true},
    {S(REVOKED), "revoked", "REVOKED", "已撤销", 9, true},
};
#define N_STATUSES (sizeof statuses / sizeof statuses[0])

static const status_info *info_of(fxb_app_status s)
{
    for (size_t i = 0; i < N_STATUSES; i++)
        if (statuses[i].status == s)
            return &statuses[i];
    return NULL;
}

static const status_info *info_by_word(const char *word)
{
    for (size_t i = 0; word != NULL && i < N_STATUSES; i++)
        if (strcmp(statuses[i].word, word) == 0)
            return &statuses[i];
    return NULL;
}

const char *fxb_app_status_word(fxb_app_status s)
{
    const status_info *in = info_of(s);
    return in ? in->word : NULL;
}

fxb_app_status fxb_app_status_parse(const char *word)
{
    const status_info *in = info_by_word(word);
    return in ? in->status : S(UNSPECIFIED);
}

bool fxb_app_status_ended(fxb_app_status s)
{
    const status_info *in = info_of(s);
    return in != NULL && in->ended;
}

const char *fxb_app_status_zh(fxb_app_status s)
{
    const status_info *in = info_of(s);
    return in ? in->zh : "";
}

/* --- small helpers ------------------------------------------------------------ */

static fxb_code oom(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code shape(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                       "%s answered in an unexpected shape", what);
}

bool fxb_app_id_valid(const char *aid)
{
    if (aid == NULL || strnlen(aid, FXB_APP_ID_LEN + 1) != FXB_APP_ID_LEN)
        return false;
    return fxb_key_id_valid(aid);
}

char *fxb_app_key(fxb_arena *a, const char *aid, const char *suffix)
{
    if (!fxb_app_id_valid(aid))
        return NULL;
    return fxb_key_owned(a, "a", aid, suffix);
}

static bool dept_valid(const char *d)
{
    size_t n = d ? strnlen(d, FXB_DEPT_MAX + 1) : 0;
    if (n == 0 || n > FXB_DEPT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= '0' && d[i] <= '9') || d[i] == '-' ||
              d[i] == '_' || (d[i] >= 'A' && d[i] <= 'Z')))
            return false;
    return true;
}

static char *dup_of(fxb_arena *a, const redisReply *kv, const char *name)
{
    const char *v = fxb_store_hash_get(kv, name);
    return fxb_arena_strdup(a, v ? v : "");
}

/* Splits a space-separated list (copied into the arena); *n words. */
static char **split_words(fxb_arena *a, const char *text, size_t *n)
{
    *n = 0;
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        if (*p == ' ')
            cap++;
    char **out = fxb_arena_calloc(a, cap, sizeof *out);
    char *copy = fxb_arena_strdup(a, text);
    if (out == NULL || copy == NULL)
        return NULL;
    char *save = NULL;
    for (char *w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
        out[(*n)++] = w;
    return out;
}

fxb_code fxb_app_deadline(fxb_store *s, int64_t from_ms, uint32_t working_days, uint32_t *date,
                          int64_t *end_ms, fxb_err *err)
{
    uint32_t d;
    if (fxb_calendar_add_working_days(s, fxb_calendar_date_of(from_ms), working_days, &d, err) !=
        FXB_OK)
        return err->code;
    if (date != NULL)
        *date = d;
    if (end_ms != NULL)
        *end_ms = fxb_calendar_end_of_day_ms(d);
    return FXB_OK;
}

/* --- problems as stored ---------------------------------------------------------- */

char *fxb_app_problems_encode(fxb_arena *a, Fxb__V1__Problem *const *problems, size_t n)
{
    if (n == 0)
        return fxb_arena_strdup(a, "");
    Fxb__V1__Application holder;
    fxb__v1__application__init(&holder);
    holder.problems = (Fxb__V1__Problem **)problems;
    holder.n_problems = n;
    size_t len = fxb__v1__application__get_packed_size(&holder);
    uint8_t *buf = fxb_arena_alloc(a, len ? len : 1);
    char *hex = fxb_arena_alloc(a, 2 * len + 1);
    if (buf == NULL || hex == NULL)
        return NULL;
    fxb__v1__application__pack(&holder, buf);
    for (size_t i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", buf[i]);
    hex[2 * len] = '\0';
    return hex;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The problems of a stored hex text; false when it cannot be read. */
static bool problems_decode(fxb_arena *a, const char *hex, Fxb__V1__Problem ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t len = hex ? strlen(hex) : 0;
    if (len == 0)
        return true;
    if (len % 2 != 0)
        return false;
    uint8_t *buf = fxb_arena_alloc(a, len / 2);
    if (buf == NULL)
        return false;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        buf[i] = (uint8_t)(hi * 16 + lo);
    }
    Fxb__V1__Application *holder =
        fxb__v1__application__unpack(fxb_arena_allocator(a), len / 2, buf);
    if (holder == NULL)
        return false;
    *out = holder->problems;
    *n = holder->n_problems;
    return true;
}

/* --- reading ----------------------------------------------------------------------- */

static const status_info *record_status(const redisReply *rec)
{
    return info_by_word(fxb_store_hash_get(rec, APP_F_STATUS));
}

/* The materials hash into MaterialGiven messages. */
static fxb_code materials_from(fxb_arena *a, const redisReply *kv, Fxb__V1__Application *app,
                               fxb_err *err)
{
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY || kv->elements < 2)
        return FXB_OK;
    size_t n = kv->elements / 2;
    app->materials = fxb_arena_calloc(a, n, sizeof *app->materials);
    if (app->materials == NULL)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        const redisReply *k = kv->element[2 * i], *v = kv->element[2 * i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        Fxb__V1__MaterialGiven *g = fxb_arena_alloc(a, sizeof *g);
        size_t nw;
        char **words = split_words(a, v->str, &nw);
        if (g == NULL || words == NULL)
            return oom(err);
        fxb__v1__material_given__init(g);
        g->material_code = fxb_arena_strdup(a, k->str);
        if (g->material_code == NULL)
            return oom(err);
        for (size_t w = 0; w < nw; w++)
            if (words[w][0] == '+') {
                words[w]++;
                g->auto_attached = true;
            }
        g->material_ids = words;
        g->n_material_ids = nw;
        app->materials[app->n_materials++] = g;
    }
    /* a stable order: by material code */
    for (size_t i = 1; i < app->n_materials; i++)
        for (size_t j = i; j > 0 && strcmp(app->materials[j - 1]->material_code,
                                           app->materials[j]->material_code) > 0;
             j--) {
            Fxb__V1__MaterialGiven *t = app->materials[j];
            app->materials[j] = app->materials[j - 1];
            app->materials[j - 1] = t;
        }
    return FXB_OK;
}

static fxb_code history_from(fxb_arena *a, const redisReply *r, Fxb__V1__Application *app,
                             fxb_err *err)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return FXB_OK;
    app->history = fxb_arena_calloc(a, r->elements, sizeof *app->history);
    if (app->history == NULL)
        return oom(err);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        const redisReply *kv = e->element[1];
        Fxb__V1__Transition *t = fxb_arena_alloc(a, sizeof *t);
        if (t == NULL)
            return oom(err);
        fxb__v1__transition__init(t);
        t->at_ms = fxb_store_hash_int(kv, "at_ms");
        t->from = fxb_app_status_parse(fxb_store_hash_get(kv, "from"));
        t->to = fxb_app_status_parse(fxb_store_hash_get(kv, "to"));
        t->actor_role = dup_of(a, kv, "actor_role");
        t->actor_id = dup_of(a, kv, "actor_id");
        t->reason = dup_of(a, kv, "reason");
        t->legal_basis = dup_of(a, kv, "legal_basis");
        if (t->actor_role == NULL || t->actor_id == NULL || t->reason == NULL ||
            t->legal_basis == NULL)
            return oom(err);
        app->history[app->n_history++] = t;
    }
    return FXB_OK;
}

/* ON_TIME / DUE_SOON / OVERDUE / PAUSED for accepted, undecided
 * applications. A calendar without the needed year leaves the days
 * uncounted (the state then follows the clock alone). */
static void time_state(fxb_store *s, int64_t now_ms, Fxb__V1__Application *app)
{
    app->time_state = FXB__V1__TIME_STATE__TIME_STATE_UNSPECIFIED;
    app->working_days_left = 0;
    if (app->status == S(SPECIAL_PROCEDURE)) {
        app->time_state = FXB__V1__TIME_STATE__TIME_STATE_PAUSED;
        return;
    }
    if ((app->status != S(ACCEPTED) && app->status != S(IN_REVIEW)) || app->deadline_date == 0)
        return;
    if (app->deadline_ms > 0 && now_ms > app->deadline_ms) {
        app->time_state = FXB__V1__TIME_STATE__TIME_STATE_OVERDUE;
        return;
    }
    uint32_t left = 0;
    fxb_err err;
    if (fxb_calendar_working_days_between(s, fxb_calendar_date_of(now_ms), app->deadline_date,
                                          &left, &err) != FXB_OK) {
        app->time_state = FXB__V1__TIME_STATE__TIME_STATE_ON_TIME;
        return;
    }
    app->working_days_left = left;
    app->time_state = left <= DUE_SOON_DAYS ? FXB__V1__TIME_STATE__TIME_STATE_DUE_SOON
                                            : FXB__V1__TIME_STATE__TIME_STATE_ON_TIME;
}

/* The record (HGETALL), materials and history replies into an Application. */
static fxb_code app_from(fxb_store *s, fxb_arena *a, const char *aid, const redisReply *rec,
                         const redisReply *mats, const redisReply *hist, int64_t now_ms,
                         Fxb__V1__Application **out, fxb_err *err)
{
    *out = NULL;
    const status_info *st = record_status(rec);
    if (st == NULL)
        return fxb_err_set(err, FXB_NOT_FOUND, FXB_APP_NOT_FOUND, "未找到该办件",
                           "no such application");
    Fxb__V1__Application *app = fxb_arena_alloc(a, sizeof *app);
    if (app == NULL)
        return oom(err);
    fxb__v1__application__init(app);
    app->application_id = fxb_arena_strdup(a, aid);
    app->subject_id = dup_of(a, rec, APP_F_SUBJECT);
    app->filed_by = dup_of(a, rec, APP_F_FILED_BY);
    app->grant_id = dup_of(a, rec, APP_F_GRANT);
    app->item_code = dup_of(a, rec, APP_F_ITEM);
    app->item_name = dup_of(a, rec, APP_F_ITEM_NAME);
    app->department = dup_of(a, rec, APP_F_DEPT);
    app->bundle_code = dup_of(a, rec, APP_F_BUNDLE);
    app->parent_application_id = dup_of(a, rec, APP_F_PARENT);
    app->special_procedure_code = dup_of(a, rec, APP_F_SPECIAL);
    app->denial_reason = dup_of(a, rec, APP_F_DENIAL_REASON);
    app->denial_legal_basis = dup_of(a, rec, APP_F_DENIAL_BASIS);
    app->result_material_id = dup_of(a, rec, APP_F_RESULT_MATERIAL);
    if (app->application_id == NULL || app->subject_id == NULL || app->filed_by == NULL ||
        app->grant_id == NULL || app->item_code == NULL || app->item_name == NULL ||
        app->department == NULL || app->bundle_code == NULL || app->parent_application_id == NULL ||
        app->special_procedure_code == NULL || app->denial_reason == NULL ||
        app->denial_legal_basis == NULL || app->result_material_id == NULL)
        return oom(err);
    app->status = st->status;
    app->guide_version = (uint32_t)fxb_store_hash_int(rec, APP_F_GUIDE_VERSION);
    app->created_at_ms = fxb_store_hash_int(rec, APP_F_CREATED);
    app->submitted_at_ms = fxb_store_hash_int(rec, APP_F_SUBMITTED);
    app->accepted_at_ms = fxb_store_hash_int(rec, APP_F_ACCEPTED);
    app->decided_at_ms = fxb_store_hash_int(rec, APP_F_DECIDED);
    app->completed_at_ms = fxb_store_hash_int(rec, APP_F_COMPLETED);
    app->submission = (uint32_t)fxb_store_hash_int(rec, APP_F_SUBMISSION);
    app->fix_by_ms = fxb_store_hash_int(rec, APP_F_FIX_BY);
    app->supplement_by_ms = fxb_store_hash_int(rec, APP_F_SUPPLEMENT_BY);
    app->notify_commit = fxb_store_hash_int(rec, APP_F_NOTIFY_COMMIT) == 1;
    app->commitment_broken = fxb_store_hash_int(rec, APP_F_BROKEN) == 1;
    app->rectify_by_ms = fxb_store_hash_int(rec, APP_F_RECTIFY_BY);
    app->time_limit_working_days = (uint32_t)fxb_store_hash_int(rec, APP_F_TIME_LIMIT);
    app->deadline_date = (uint32_t)fxb_store_hash_int(rec, APP_F_DEADLINE_DATE);
    app->deadline_ms = fxb_store_hash_int(rec, APP_F_DEADLINE_MS);
    app->rated = fxb_store_hash_int(rec, APP_F_RATED) == 1;
    const char *tol = fxb_store_hash_get(rec, APP_F_TOLERATED);
    if (tol != NULL && tol[0] != '\0' &&
        (app->tolerated_missing = split_words(a, tol, &app->n_tolerated_missing)) == NULL)
        return oom(err);
    const char *kids = fxb_store_hash_get(rec, APP_F_CHILDREN);
    if (kids != NULL && kids[0] != '\0' &&
        (app->child_application_ids = split_words(a, kids, &app->n_child_application_ids)) == NULL)
        return oom(err);
    if (!problems_decode(a, fxb_store_hash_get(rec, APP_F_PROBLEMS), &app->problems,
                         &app->n_problems))
        return fxb_err_set(err, FXB_DATA_LOSS, "APPLICATION_UNREADABLE", ZH_BUSY,
                           "the problems of an application cannot be read");
    if (materials_from(a, mats, app, err) != FXB_OK || history_from(a, hist, app, err) != FXB_OK)
        return err->code;
    time_state(s, now_ms, app);
    *out = app;
    return FXB_OK;
}

fxb_code fxb_app_read(fxb_store *s, fxb_arena *a, const char *aid, bool with_history,
                      int64_t now_ms, Fxb__V1__Application **out, fxb_err *err)
{
    *out = NULL;
    if (!fxb_app_id_valid(aid))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_APP_ID_INVALID, "办件编号格式不正确",
                           "application_id must be %d of [A-Za-z0-9_-]", FXB_APP_ID_LEN);
    const char *k_app = fxb_app_key(a, aid, "app");
    const char *k_mat = fxb_app_key(a, aid, MATERIALS_WORD);
    const char *k_hist = fxb_app_key(a, aid, "history");
    if (k_app == NULL || k_mat == NULL || k_hist == NULL)
        return oom(err);
    char count[16];
    snprintf(count, sizeof count, "%d", HISTORY_MAX);
    const char *c0[] = {"HGETALL", k_app};
    const char *c1[] = {"HGETALL", k_mat};
    const char *c2[] = {"XRANGE", k_hist, "-", "+", "COUNT", count};
    fxb_store_cmd cmds[3] = {{2, c0, NULL}, {2, c1, NULL}, {6, c2, NULL}};
    redisReply *r[3] = {NULL, NULL, NULL};
    size_t n = with_history ? 3 : 2;
    if (fxb_store_pipeline(s, err, n, cmds, r) != FXB_OK)
        return err->code;
    fxb_code rc = FXB_OK;
    for (size_t i = 0; i < n; i++)
        if (r[i] == NULL || r[i]->type == REDIS_REPLY_ERROR)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                             "reading an application failed");
    if (rc == FXB_OK)
        rc = app_from(s, a, aid, r[0], r[1], with_history ? r[2] : NULL, now_ms, out, err);
    for (size_t i = 0; i < n; i++)
        if (r[i] != NULL)
            freeReplyObject(r[i]);
    return rc;
}

/* --- wallet counters ------------------------------------------------------------------ */

/* KEYS: material hashes of one subject (one slot); ARGV[1] delta. A hash
 * without a kind is no material (deleted): skipped. Never below 0. */
static fxb_script use_script = FXB_SCRIPT(
    "app_material_use",
    "local d = tonumber(ARGV[1])\n"
    "local n = 0\n"
    "for i = 1, #KEYS do\n"
    "  if redis.call('HEXISTS', KEYS[i], 'kind') == 1 then\n"
    "    local v = tonumber(redis.call('HGET', KEYS[i], '" FXB_MATERIAL_IN_USE_FIELD "')) or 0\n"
    "    local step = d\n"
    "    if v + step < 0 then step = 0 - v end\n"
    "    if step ~= 0 then\n"
    "      redis.call('HINCRBY', KEYS[i], '" FXB_MATERIAL_IN_USE_FIELD "', step)\n"
    "    end\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n");

fxb_code fxb_app_material_use(fxb_store *s, const char *subject, const char *const *ids, size_t n,
                              int delta, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char **keys = fxb_arena_calloc(&a, n, sizeof *keys);
    fxb_code rc = keys ? FXB_OK : oom(err);
    size_t k = 0;
    for (size_t i = 0; rc == FXB_OK && i < n; i++) {
        const char *id = ids[i][0] == '+' ? ids[i] + 1 : ids[i];
        char *key = fxb_wallet_material_key(&a, subject, id);
        if (key != NULL)
            keys[k++] = key;
    }
    if (rc == FXB_OK && k > 0) {
        char d[8];
        snprintf(d, sizeof d, "%d", delta);
        const char *args[] = {d};
        redisReply *r = fxb_store_eval(s, err, &use_script, (int)k, keys, 1, args, NULL);
        if (r == NULL)
            rc = err->code;
        else
            freeReplyObject(r);
    }
    fxb_arena_free(&a);
    if (rc != FXB_OK && delta < 0) {
        fxb_log(FXB_LOG_WARN, "filing: releasing wallet entries failed: %s", err->reason);
        return FXB_OK;
    }
    return rc;
}

/* --- transitions ------------------------------------------------------------------------ */

/* KEYS: app, history, materials. ARGV: now, allowed from words (space
 * separated), to word, actor_role, actor_id, reason, legal_basis, number
 * of set pairs, the pairs, then fields to delete. Returns {previous
 * status, the record as written (HGETALL), the materials (HGETALL)}. */
static fxb_script transition_script = FXB_SCRIPT(
    "app_transition",
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if not st then\n"
    "  return redis.error_reply('FXB 5 " FXB_APP_NOT_FOUND " no such application')\n"
    "end\n"
    "local ok = false\n"
    "for w in string.gmatch(ARGV[2], '%S+') do\n"
    "  if w == st then ok = true end\n"
    "end\n"
    "if not ok then\n"
    "  return redis.error_reply('FXB 9 " FXB_APP_STATE
    " the application is ' .. string.upper(st))\n"
    "end\n"
    "local n = tonumber(ARGV[8])\n"
    "if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 9, 8 + 2 * n)) end\n"
    "for i = 9 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end\n"
    "redis.call('HSET', KEYS[1], 'status', ARGV[3], 'updated_at_ms', ARGV[1])\n"
    "redis.call('XADD', KEYS[2], '*', 'at_ms', ARGV[1], 'from', st, 'to', ARGV[3],\n"
    "  'actor_role', ARGV[4], 'actor_id', ARGV[5], 'reason', ARGV[6], 'legal_basis', ARGV[7])\n"
    "return {st, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[3])}\n");

/* "2025年3月5日" of a UTC time (China date). */
static void date_text(char *buf, size_t cap, int64_t ms)
{
    uint32_t d = fxb_calendar_date_of(ms);
    snprintf(buf, cap, "%u年%u月%u日", (unsigned)(d / 10000), (unsigned)(d / 100 % 100),
             (unsigned)(d % 100));
}

/* Appends text to buf (cap bytes with the NUL), cutting at the bound
 * without splitting a UTF-8 character. */
static void body_add(char *buf, size_t cap, const char *text)
{
    if (text == NULL)
        return;
    size_t used = strlen(buf), len = strlen(text);
    if (used + len + 1 > cap) {
        len = cap - 1 - used;
        while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
            len--;
    }
    memcpy(buf + used, text, len);
    buf[used + len] = '\0';
}

/* The notice of a transition to rec's status (zh-CN, plain): the item and
 * the new status in words, and what the applicant must do next. */
static void compose_notice(fxb_arena *a, const redisReply *rec, const status_info *to,
                           const char *reason, char *title, size_t tcap, char *body, size_t bcap)
{
    const char *item = fxb_store_hash_get(rec, APP_F_ITEM_NAME);
    if (item == NULL || item[0] == '\0')
        item = "办件";
    title[0] = '\0';
    body[0] = '\0';
    body_add(title, tcap, fxb_arena_printf(a, "办件进度：%s%s", item, to->zh));
    body_add(body, bcap, fxb_arena_printf(a, "您申请的“%s”%s。", item, to->zh));
    char date[40];
    if (to->status == S(NEEDS_CORRECTION)) {
        Fxb__V1__Problem **p;
        size_t n;
        if (problems_decode(a, fxb_store_hash_get(rec, APP_F_PROBLEMS), &p, &n) && n > 0) {
            body_add(body, bcap, "请补正以下问题：");
            for (size_t i = 0; i < n; i++)
                body_add(
                    body, bcap,
                    fxb_arena_printf(a, "%zu.%s：%s；", i + 1, p[i]->material_name, p[i]->why));
        }
        int64_t fix_by = fxb_store_hash_int(rec, APP_F_FIX_BY);
        if (fix_by > 0) {
            date_text(date, sizeof date, fix_by);
            body_add(body, bcap, fxb_arena_printf(a, "请于%s前补正，逾期视为撤回申请。", date));
        }
    } else if (to->status == S(ACCEPTED) && fxb_store_hash_get(rec, APP_F_TOLERATED) != NULL &&
               fxb_store_hash_get(rec, APP_F_TOLERATED)[0] != '\0') {
        date_text(date, sizeof date, fxb_store_hash_int(rec, APP_F_SUPPLEMENT_BY));
        body_add(
            body, bcap,
            fxb_arena_printf(a, "本件为容缺受理，请于%s前补齐容缺材料，逾期视为撤回申请。", date));
    } else if (to->status == S(ACCEPTED) && fxb_store_hash_int(rec, APP_F_DEADLINE_MS) > 0) {
        date_text(date, sizeof date, fxb_store_hash_int(rec, APP_F_DEADLINE_MS));
        body_add(body, bcap, fxb_arena_printf(a, "承诺办结日期：%s。", date));
    }
    if (reason != NULL && reason[0] != '\0' && to->status != S(NEEDS_CORRECTION))
        body_add(body, bcap, fxb_arena_printf(a, "说明：%s", reason));
}

/* The department queue, the running list and the timers follow rec. */
static void follow_indexes(fxb_store *s, fxb_arena *a, const char *aid, const redisReply *rec,
                           const status_info *to)
{
    const char *dept = fxb_store_hash_get(rec, APP_F_DEPT);
    const char *tol = fxb_store_hash_get(rec, APP_F_TOLERATED);
    fxb_app_status st = to->status;
    bool queued = st == S(SUBMITTED) || st == S(ACCEPTED) || st == S(IN_REVIEW) ||
                  st == S(SPECIAL_PROCEDURE) || st == S(APPROVED);
    int64_t deadline = fxb_store_hash_int(rec, APP_F_DEADLINE_MS);
    bool running = (st == S(ACCEPTED) || st == S(IN_REVIEW)) && deadline > 0;
    int64_t fix_by = fxb_store_hash_int(rec, APP_F_FIX_BY),
            sup_by = fxb_store_hash_int(rec, APP_F_SUPPLEMENT_BY);
    int64_t rect_by = fxb_store_hash_int(rec, APP_F_RECTIFY_BY);
    bool fix = st == S(NEEDS_CORRECTION) && fix_by > 0;
    bool sup = st == S(ACCEPTED) && tol != NULL && tol[0] != '\0' && sup_by > 0;
    bool rect = fxb_store_hash_int(rec, APP_F_BROKEN) == 1 && rect_by > 0 &&
                (st == S(APPROVED) || st == S(COMPLETED));

    const char *argv[5][4];
    fxb_store_cmd cmds[5];
    size_t n = 0;
    char sc[5][24];
    const char *members[3] = {fxb_arena_printf(a, "%s fix", aid),
                              fxb_arena_printf(a, "%s supplement", aid),
                              fxb_arena_printf(a, "%s rectify", aid)};
    const bool on[3] = {fix, sup, rect};
    const int64_t due[3] = {fix_by, sup_by, rect_by};
    if (members[0] == NULL || members[1] == NULL || members[2] == NULL)
        return;
    if (dept_valid(dept)) {
        const char *q = fxb_arena_printf(a, DEPT_PREFIX "%s:queue", dept);
        const char *rn = fxb_arena_printf(a, DEPT_PREFIX "%s:running", dept);
        if (q == NULL || rn == NULL)
            return;
        snprintf(sc[0], sizeof sc[0], "%" PRId64, fxb_store_hash_int(rec, APP_F_SUBMITTED));
        snprintf(sc[1], sizeof sc[1], "%" PRId64, deadline);
        const char *qa[] = {queued ? "ZADD" : "ZREM", q, queued ? sc[0] : aid, aid};
        const char *ra[] = {running ? "ZADD" : "ZREM", rn, running ? sc[1] : aid, aid};
        memcpy(argv[n], qa, sizeof qa);
        cmds[n] = (fxb_store_cmd){queued ? 4 : 3, argv[n], NULL};
        n++;
        memcpy(argv[n], ra, sizeof ra);
        cmds[n] = (fxb_store_cmd){running ? 4 : 3, argv[n], NULL};
        n++;
    }
    for (size_t t = 0; t < 3; t++) {
        snprintf(sc[2 + t], sizeof sc[2 + t], "%" PRId64, due[t]);
        const char *ta[] = {on[t] ? "ZADD" : "ZREM", FXB_APP_TIMERS_KEY,
                            on[t] ? sc[2 + t] : members[t], members[t]};
        memcpy(argv[n], ta, sizeof ta);
        cmds[n] = (fxb_store_cmd){on[t] ? 4 : 3, argv[n], NULL};
        n++;
    }
    redisReply *r[5] = {NULL};
    fxb_err err;
    if (fxb_store_pipeline(s, &err, n, cmds, r) != FXB_OK) {
        fxb_log(FXB_LOG_WARN, "filing: indexes of an application not updated: %s", err.reason);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (r[i] != NULL)
            freeReplyObject(r[i]);
}

/* Releases the wallet entries an ended application used. */
static void release_materials(fxb_store *s, fxb_arena *a, const char *subject,
                              const redisReply *mats)
{
    if (mats == NULL || mats->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < mats->elements; i += 2) {
        const redisReply *v = mats->element[i + 1];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        size_t n;
        char **ids = split_words(a, v->str, &n);
        fxb_err err;
        if (ids != NULL)
            fxb_app_material_use(s, subject, (const char *const *)ids, n, -1, &err);
    }
}

static void notify(fxb_store *s, const char *who, const char *title, const char *body,
                   const char *aid, int64_t now)
{
    fxb_err err;
    if (fxb_inbox_append(s, who, NOTICE_KIND, title, body, aid, now, NULL, &err) != FXB_OK)
        fxb_log(FXB_LOG_WARN, "filing: inbox notice failed: %s", err.reason);
}

static void bundle_settle(fxb_store *s, fxb_arena *a, const char *parent, int64_t now);

static fxb_code state_error(fxb_err *err)
{
    /* the script's message ends with the current status */
    const char *last = strrchr(err->message, ' ');
    char word[32] = "";
    if (last != NULL) {
        snprintf(word, sizeof word, "%s", last + 1);
        for (char *p = word; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    const status_info *in = info_by_word(word);
    snprintf(err->message_zh, sizeof err->message_zh, "办件当前状态为“%s”，不能进行此操作",
             in ? in->zh : "未知");
    return err->code;
}

fxb_code fxb_app_transition(fxb_store *s, fxb_arena *a, const fxb_app_change *c, fxb_err *err)
{
    const status_info *to = info_of(c->to);
    if (to == NULL || c->n_from == 0 || c->from == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "TRANSITION_INVALID", ZH_BUSY,
                           "a transition needs a target status and the statuses it leaves");
    const char *keys[3] = {fxb_app_key(a, c->aid, "app"), fxb_app_key(a, c->aid, "history"),
                           fxb_app_key(a, c->aid, MATERIALS_WORD)};
    if (!fxb_app_id_valid(c->aid))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_APP_ID_INVALID, "办件编号格式不正确",
                           "application_id must be %d of [A-Za-z0-9_-]", FXB_APP_ID_LEN);
    if (keys[0] == NULL || keys[1] == NULL || keys[2] == NULL)
        return oom(err);
    char from[256] = "";
    for (size_t i = 0; i < c->n_from; i++) {
        const status_info *f = info_of(c->from[i]);
        if (f == NULL)
            continue;
        size_t used = strlen(from);
        snprintf(from + used, sizeof from - used, "%s%s", used ? " " : "", f->word);
    }
    size_t n_set = 0, n_del = 0;
    while (c->set != NULL && c->set[2 * n_set] != NULL)
        n_set++;
    while (c->del != NULL && c->del[n_del] != NULL)
        n_del++;
    size_t nargs = 8 + 2 * n_set + n_del;
    const char **args = fxb_arena_calloc(a, nargs, sizeof *args);
    char now[24], nset[24];
    if (args == NULL)
        return oom(err);
    snprintf(now, sizeof now, "%" PRId64, c->now_ms);
    snprintf(nset, sizeof nset, "%zu", n_set);
    args[0] = now;
    args[1] = from;
    args[2] = to->word;
    args[3] = c->actor_role ? c->actor_role : "system";
    args[4] = c->actor_id ? c->actor_id : "";
    args[5] = c->reason ? c->reason : "";
    args[6] = c->legal_basis ? c->legal_basis : "";
    args[7] = nset;
    for (size_t i = 0; i < 2 * n_set; i++)
        args[8 + i] = c->set[i] ? c->set[i] : "";
    for (size_t i = 0; i < n_del; i++)
        args[8 + 2 * n_set + i] = c->del[i];
    redisReply *r = fxb_store_eval(s, err, &transition_script, 3, keys, (int)nargs, args, NULL);
    if (r == NULL) {
        if (strcmp(err->reason, FXB_APP_STATE) == 0)
            return state_error(err);
        if (strcmp(err->reason, FXB_APP_NOT_FOUND) == 0)
            snprintf(err->message_zh, sizeof err->message_zh, "%s", "未找到该办件");
        return err->code;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return shape(err, "the transition script");
    }
    const redisReply *rec = r->element[1], *mats = r->element[2];
    const char *subject = fxb_store_hash_get(rec, APP_F_SUBJECT);
    const char *filed_by = fxb_store_hash_get(rec, APP_F_FILED_BY);
    const char *grant = fxb_store_hash_get(rec, APP_F_GRANT);
    const char *parent = fxb_store_hash_get(rec, APP_F_PARENT);
    const status_info *prev = info_by_word(r->element[0]->str);

    follow_indexes(s, a, c->aid, rec, to);
    if (to->ended && (prev == NULL || !prev->ended) && subject != NULL)
        release_materials(s, a, subject, mats);

    char title[FXB_INBOX_TITLE_MAX + 1], body[FXB_INBOX_BODY_MAX + 1];
    compose_notice(a, rec, to, c->reason, title, sizeof title, body, sizeof body);
    if (subject != NULL)
        notify(s, subject, title, body, c->aid, c->now_ms);
    if (grant != NULL && grant[0] != '\0' && filed_by != NULL && subject != NULL &&
        strcmp(filed_by, subject) != 0)
        notify(s, filed_by, title, body, c->aid, c->now_ms);
    /* ended: the invitation to rate, for applications that were submitted
     * (a draft thrown away has nothing to rate) */
    const char *submissions = fxb_store_hash_get(rec, APP_F_SUBMISSION);
    if (to->ended && (prev == NULL || !prev->ended) && subject != NULL && submissions != NULL &&
        atoi(submissions) > 0) {
        const char *item = fxb_store_hash_get(rec, APP_F_ITEM_NAME);
        fxb_rating_invite(s, c->aid, subject, item ? item : "", c->now_ms);
    }
    char *parent_copy = parent && parent[0] ? fxb_arena_strdup(a, parent) : NULL;
    freeReplyObject(r);
    if (parent_copy != NULL)
        bundle_settle(s, a, parent_copy, c->now_ms);
    return FXB_OK;
}

/* --- bundles ------------------------------------------------------------------------------ */

/* KEYS: parent app, parent history; ARGV: now, new status word, reason.
 * Writes the parent's status (the least advanced child's) when it
 * changed, with a history entry. */
static fxb_script settle_script =
    FXB_SCRIPT("app_bundle_settle",
               "local st = redis.call('HGET', KEYS[1], 'status')\n"
               "if not st or st == ARGV[2] then return 0 end\n"
               "redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at_ms', ARGV[1])\n"
               "redis.call('XADD', KEYS[2], '*', 'at_ms', ARGV[1], 'from', st, 'to', ARGV[2],\n"
               "  'actor_role', 'system', 'actor_id', '', 'reason', ARGV[3], 'legal_basis', '')\n"
               "return 1\n");

/* The parent of a bundle shows its least advanced child's status. */
static void bundle_settle(fxb_store *s, fxb_arena *a, const char *parent, int64_t now)
{
    fxb_err err;
    const char *pkey = fxb_app_key(a, parent, "app");
    if (pkey == NULL)
        return;
    redisReply *r = fxb_store_command(s, &err, "HGET %s " APP_F_CHILDREN, pkey);
    if (r == NULL)
        return;
    size_t n = 0;
    char **kids = r->type == REDIS_REPLY_STRING ? split_words(a, r->str, &n) : NULL;
    freeReplyObject(r);
    const status_info *least = NULL;
    for (size_t i = 0; kids != NULL && i < n; i++) {
        const char *ck = fxb_app_key(a, kids[i], "app");
        if (ck == NULL)
            continue;
        redisReply *cr = fxb_store_command(s, &err, "HGET %s " APP_F_STATUS, ck);
        if (cr == NULL)
            return;
        const status_info *in = cr->type == REDIS_REPLY_STRING ? info_by_word(cr->str) : NULL;
        freeReplyObject(cr);
        if (in != NULL && (least == NULL || in->rank < least->rank))
            least = in;
    }
    if (least == NULL)
        return;
    const char *keys[2] = {pkey, fxb_app_key(a, parent, "history")};
    char now_text[24];
    snprintf(now_text, sizeof now_text, "%" PRId64, now);
    const char *args[3] = {now_text, least->word, "联办子件状态更新"};
    if (keys[1] == NULL)
        return;
    redisReply *sr = fxb_store_eval(s, &err, &settle_script, 2, keys, 3, args, NULL);
    if (sr != NULL)
        freeReplyObject(sr);
}

/* --- the result licence -------------------------------------------------------------------- */

fxb_code fxb_app_issue_result(fxb_store *s, const fxb_crypto *c, const Fxb__V1__Application *app,
                              const Fxb__V1__ServiceItem *item, int64_t now_ms, char *mid_out,
                              fxb_err *err)
{
    if (mid_out != NULL)
        mid_out[0] = '\0';
    const Fxb__V1__Guide *g = item ? item->guide : NULL;
    if (g == NULL || g->result_licence_type == NULL || g->result_licence_type[0] == '\0')
        return FXB_OK;
    char number[FXB_LICENCE_NUMBER_MAX + 1];
    snprintf(number, sizeof number, "%s-%s", item->code, app->application_id);
    const char *name = g->result_name && g->result_name[0] ? g->result_name : item->name;
    const char *issuer =
        item->department_name && item->department_name[0] ? item->department_name : "放新办";
    fxb_licence lic = {.type = g->result_licence_type,
                       .name = name,
                       .number = number,
                       .issuer = issuer,
                       .valid_until_ms = 0,
                       .source_application = app->application_id};
    char mid[FXB_ID_MAX + 1];
    if (fxb_wallet_add_licence(s, c, app->subject_id, &lic, now_ms, mid, err) != FXB_OK)
        return err->code;
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *key = fxb_app_key(&a, app->application_id, "app");
    fxb_code rc = FXB_OK;
    if (key == NULL) {
        rc = oom(err);
    } else {
        redisReply *r = fxb_store_command(s, err, "HSET %s " APP_F_RESULT_MATERIAL " %s", key, mid);
        if (r == NULL)
            rc = err->code;
        else
            freeReplyObject(r);
    }
    fxb_arena_free(&a);
    if (rc == FXB_OK && mid_out != NULL)
        memcpy(mid_out, mid, strlen(mid) + 1);
    return rc;
}

/* --- the sweeper ------------------------------------------------------------------------------ */

typedef enum timer_kind { T_FIX, T_SUPPLEMENT, T_RECTIFY } timer_kind;

/* Ends one application whose timer of kind fell due; true when it ended.
 * *later is set when the record's deadline is after now (the timer goes
 * back at that time). */
static bool sweep_one(fxb_store *s, fxb_arena *a, const char *aid, timer_kind kind, int64_t now,
                      int64_t *later, fxb_err *err)
{
    *later = 0;
    const char *key = fxb_app_key(a, aid, "app");
    if (key == NULL)
        return false;
    redisReply *r = fxb_store_command(s, err,
                                      "HMGET %s " APP_F_STATUS " " APP_F_FIX_BY
                                      " " APP_F_SUPPLEMENT_BY " " APP_F_TOLERATED
                                      " " APP_F_RECTIFY_BY " " APP_F_BROKEN " " APP_F_SUBJECT,
                                      key);
    if (r == NULL)
        return false;
    const char *v[7] = {NULL};
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 7)
        for (size_t i = 0; i < 7; i++)
            v[i] = r->element[i]->type == REDIS_REPLY_STRING
                       ? fxb_arena_strdup(a, r->element[i]->str)
                       : NULL;
    freeReplyObject(r);
    const status_info *st = info_by_word(v[0]);
    if (st == NULL)
        return false;
    const char *due_text = v[kind == T_FIX ? 1 : kind == T_SUPPLEMENT ? 2 : 4];
    int64_t due = due_text ? strtoll(due_text, NULL, 10) : 0;
    if (due <= 0)
        return false;
    if (due > now) {
        /* a later deadline than the timer said: wait for it */
        *later = due;
        return false;
    }
    fxb_app_change c = {.aid = aid, .actor_role = "system", .actor_id = "", .now_ms = now};
    static const fxb_app_status from_fix[] = {S(NEEDS_CORRECTION)};
    static const fxb_app_status from_sup[] = {S(ACCEPTED)};
    static const fxb_app_status from_rect[] = {S(APPROVED), S(COMPLETED)};
    if (kind == T_FIX) {
        if (st->status != S(NEEDS_CORRECTION))
            return false;
        c.from = from_fix;
        c.n_from = 1;
        c.to = S(WITHDRAWN);
        c.reason = "补正期限已过，视为撤回";
    } else if (kind == T_SUPPLEMENT) {
        if (st->status != S(ACCEPTED) || v[3] == NULL || v[3][0] == '\0')
            return false;
        c.from = from_sup;
        c.n_from = 1;
        c.to = S(WITHDRAWN);
        c.reason = "容缺材料未在期限内补齐，视为撤回";
    } else {
        if (v[5] == NULL || strcmp(v[5], "1") != 0)
            return false;
        c.from = from_rect;
        c.n_from = 2;
        c.to = S(REVOKED);
        c.reason = "承诺内容不实且未在期限内整改，依法撤销";
    }
    if (fxb_app_transition(s, a, &c, err) != FXB_OK)
        return false;
    if (kind == T_RECTIFY && v[6] != NULL && fxb_inbox_tag(v[6]) != NULL) {
        fxb_err e2;
        redisReply *cr =
            fxb_store_command(s, &e2, "HSET " CREDIT_PREFIX "%s false_commitment %s", v[6], aid);
        if (cr == NULL)
            fxb_log(FXB_LOG_WARN, "filing: credit record not written: %s", e2.reason);
        else
            freeReplyObject(cr);
    }
    return true;
}

fxb_code fxb_app_sweep(fxb_store *s, int64_t now_ms, size_t max, size_t *done, fxb_err *err)
{
    *done = 0;
    size_t batch = max < SWEEP_BATCH ? max : SWEEP_BATCH;
    if (batch == 0)
        return FXB_OK;
    redisReply *r = fxb_store_command(
        s, err, "ZRANGEBYSCORE " FXB_APP_TIMERS_KEY " -inf %" PRId64 " WITHSCORES LIMIT 0 %llu",
        now_ms, (unsigned long long)batch);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return shape(err, "ZRANGEBYSCORE of the timers");
    }
    fxb_arena a;
    fxb_arena_init(&a, 0);
    size_t n = r->elements / 2;
    char **members = fxb_arena_calloc(&a, n ? n : 1, sizeof *members);
    fxb_code rc = members ? FXB_OK : oom(err);
    for (size_t i = 0; rc == FXB_OK && i < n; i++) {
        const redisReply *m = r->element[2 * i];
        members[i] = m->type == REDIS_REPLY_STRING ? fxb_arena_strdup(&a, m->str) : NULL;
    }
    freeReplyObject(r);
    for (size_t i = 0; rc == FXB_OK && i < n; i++) {
        if (members[i] == NULL)
            continue;
        /* claim it: of several servers, the one whose ZREM removed it acts */
        redisReply *z = fxb_store_command(s, err, "ZREM " FXB_APP_TIMERS_KEY " %s", members[i]);
        if (z == NULL) {
            rc = err->code;
            break;
        }
        bool mine = z->type == REDIS_REPLY_INTEGER && z->integer == 1;
        freeReplyObject(z);
        if (!mine)
            continue;
        char *sp = strchr(members[i], ' ');
        if (sp == NULL)
            continue;
        *sp = '\0';
        const char *word = sp + 1;
        timer_kind kind;
        if (strcmp(word, "fix") == 0)
            kind = T_FIX;
        else if (strcmp(word, "supplement") == 0)
            kind = T_SUPPLEMENT;
        else if (strcmp(word, "rectify") == 0)
            kind = T_RECTIFY;
        else
            continue;
        fxb_err one;
        fxb_err_clear(&one);
        int64_t later = 0;
        if (sweep_one(s, &a, members[i], kind, now_ms, &later, &one)) {
            (*done)++;
            continue;
        }
        bool failed = one.code == FXB_UNAVAILABLE || one.code == FXB_INTERNAL;
        if (!failed && later == 0)
            continue;
        /* not handled now: the timer goes back (at once after a failure) */
        *sp = ' ';
        fxb_err ignored;
        redisReply *back =
            fxb_store_command(s, &ignored, "ZADD " FXB_APP_TIMERS_KEY " %" PRId64 " %s",
                              failed ? now_ms : later, members[i]);
        if (back != NULL)
            freeReplyObject(back);
        if (failed)
            fxb_log(FXB_LOG_WARN, "filing sweeper: an application was not ended: %s", one.reason);
    }
    fxb_arena_free(&a);
    return rc;
}
