/* OfficerService handlers (proto/fxb/v1/officer.proto): the department
 * officers' side of applications (regulation art. 18, 20, 21, 36). Every
 * status change goes through fxb_app_transition (services/filing/
 * application.h: history, indexes, notices); this file checks the request,
 * the department and the guide, computes deadlines with the working-day
 * calendar, and writes the audit stream.
 *
 * Fields of {a:<aid>}:app this file writes besides the proto's:
 *   correction_submission  the submission an officer last asked to correct
 *                          (once per submission, art. 18)
 *   special_started_ms     when the running special procedure started (its
 *                          working days are added to the deadline at its end)
 *   result_claim           "p<ms>" while a completion adds the licence result,
 *                          "m<material id>" once added (a retry reuses it, so
 *                          a double click never issues two licences)
 * A broken 告知承诺 commitment is commitment_broken "1" + rectify_by_ms: the
 * transition puts the timer "<aid> rectify" in fxb:app:timers from them, and
 * the sweeper revokes when rectify_by passes and flags the applicant's
 * credit (art. 21); ConfirmRectified deletes both, and with them the timer.
 *
 * Access: officers of the request's department (the runtime refuses another
 * department before a handler runs) and admins; every handler also refuses
 * an application that is not the named department's (PERMISSION_DENIED
 * DEPARTMENT_MISMATCH, never NOT_FOUND), so naming one's own department
 * opens nobody else's files. Reads of one application are audited with
 * their purpose (art. 36 (4)); queue listings and reports are not
 * individual reads. */
#include "services/filing/filing.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fxb/v1/catalog.pb-c.h"
#include "fxb/v1/officer.pb-c.h"
#include "server/config.h"
#include "server/log.h"
#include "server/text.h"
#include "services/calendar/calendar.h"
#include "services/catalog/catalog.h"
#include "services/filing/application.h"
#include "services/material/material.h"
#include "store/audit.h"
#include "store/keys.h"
#include "store/store.h"

#define SVC "/fxb.v1.OfficerService/"

#define PURPOSE_MAX          100 /* characters */
#define NOTE_MAX             500
#define WHY_MAX              200
#define DENIAL_REASON_MAX    500
#define LEGAL_BASIS_MAX      200
#define BROKEN_REASON_MAX    500
#define CORRECTION_ITEMS_MAX 30
#define MATERIAL_CODE_MAX    16 /* bytes, as the material service takes them */
#define PROCEDURE_CODE_MAX   16
#define RECTIFY_DAYS_DEFAULT 15 /* working days */
#define RECTIFY_DAYS_MAX     60
#define DUE_SOON_DAYS        2 /* working days left at most: due soon */
#define PAGE_DEFAULT         20
#define PAGE_MAX             100
#define PAGE_TOKEN_MAX       64
#define QUEUE_BATCH          100  /* queue entries read per round */
#define QUEUE_SCAN_MAX       1000 /* queue entries examined per ListQueue call */
#define OVERDUE_LIST_MAX     100
#define CLAIM_STALE_MS       (30LL * 1000) /* an unfinished completion's claim */
#define SMALL_REQUEST        1024
#define TEXT_REQUEST         8192
#define CORRECTION_REQUEST   (64 * 1024)

#define ZH_BUSY "系统繁忙，请稍后重试"

/* reasons */
#define R_DEPT_MISMATCH      "DEPARTMENT_MISMATCH"
#define R_DEPT_INVALID       "DEPARTMENT_INVALID"
#define R_PURPOSE            "PURPOSE_REQUIRED"
#define R_NOTE               "NOTE_INVALID"
#define R_ITEMS              "CORRECTION_ITEMS_INVALID"
#define R_ITEM_WHY           "CORRECTION_WHY_INVALID"
#define R_ITEM_DUPLICATE     "CORRECTION_ITEM_DUPLICATE"
#define R_NOT_IN_GUIDE       "MATERIAL_NOT_IN_GUIDE"
#define R_ALREADY_REQUESTED  "CORRECTION_ALREADY_REQUESTED"
#define R_SUPPLEMENT_PENDING "SUPPLEMENT_PENDING"
#define R_PROC_NOT_IN_GUIDE  "PROCEDURE_NOT_IN_GUIDE"
#define R_DENIAL_REASON      "DENIAL_REASON_REQUIRED"
#define R_LEGAL_BASIS        "LEGAL_BASIS_REQUIRED"
#define R_LICENCE_NUMBER     "LICENCE_NUMBER_INVALID"
#define R_LICENCE_VALIDITY   "LICENCE_VALID_UNTIL_INVALID"
#define R_COMPLETING         "COMPLETION_IN_PROGRESS"
#define R_NOT_NOTIFY_COMMIT  "NOT_NOTIFY_COMMIT"
#define R_BROKEN_REASON      "REASON_REQUIRED"
#define R_RECTIFY_DAYS       "RECTIFY_DAYS_INVALID"
#define R_ALREADY_BROKEN     "COMMITMENT_ALREADY_BROKEN"
#define R_NOT_BROKEN         "COMMITMENT_NOT_BROKEN"
#define R_STATUS_FILTER      "STATUS_INVALID"
#define R_TIME_STATE_FILTER  "TIME_STATE_INVALID"
#define R_PAGE_SIZE          "PAGE_SIZE_INVALID"
#define R_PAGE_TOKEN         "PAGE_TOKEN_INVALID"

/* This file's own fields of the record (the others: APP_F_*). */
#define F_CORRECTION_SUB  "correction_submission"
#define F_SPECIAL_STARTED "special_started_ms"
#define F_RESULT_CLAIM    "result_claim"

/* --- statuses in messages --------------------------------------------------- */

/* "SUBMITTED" for English messages (arena), from the stored word. */
static const char *status_name(fxb_arena *a, fxb_app_status s)
{
    const char *word = fxb_app_status_word(s);
    char *name = fxb_arena_strdup(a, word ? word : "unspecified");
    for (char *p = name; p != NULL && *p != '\0'; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return name ? name : "UNKNOWN";
}

/* The statuses of the department's queue (officer.proto ListQueue). */
static bool status_waiting(fxb_app_status s)
{
    switch (s) {
    case FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SUBMITTED:
    case FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_ACCEPTED:
    case FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_IN_REVIEW:
    case FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SPECIAL_PROCEDURE:
    case FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED:
        return true;
    default:
        return false;
    }
}

/* --- small helpers ---------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code key_failed(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
}

static fxb_code store_shape(fxb_ctx *ctx, const char *what)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                        "%s answered in an unexpected shape", what);
}

/* A free-text field: FXB_OK, or INVALID_ARGUMENT reason naming field. */
static fxb_code text_check(fxb_ctx *ctx, const char *s, long min, long max, const char *field,
                           const char *reason, const char *zh)
{
    if (fxb_text_ok(s, min, max))
        return FXB_OK;
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, reason, zh,
                        "%s must be %ld..%ld characters of UTF-8 text without control characters",
                        field, min, max);
}

static const char *text_or_empty(const char *s)
{
    return s ? s : "";
}

/* A client's code as messages may name it: itself when it looks like a
 * code (1..max of [A-Za-z0-9_-]), else a stand-in. */
static const char *shown_code(const char *code, size_t max)
{
    if (code == NULL || code[0] == '\0')
        return "\"\"";
    if (strnlen(code, max + 1) > max || !fxb_key_id_valid(code))
        return "(not a code)";
    return code;
}

static fxb_code aid_check(fxb_ctx *ctx, const char *aid)
{
    if (!fxb_app_id_valid(aid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, FXB_APP_ID_INVALID, "办件编号格式不正确",
                            "application_id must be %d characters of base64url", FXB_APP_ID_LEN);
    return FXB_OK;
}

static fxb_code note_check(fxb_ctx *ctx, const char *note)
{
    return text_check(ctx, note, 0, NOTE_MAX, "note", R_NOTE, "备注最多500个字符");
}

/* Department codes that may form the queue keys (officers' codes are
 * 1..FXB_DEPT_MAX of [A-Za-z0-9_-]). */
static fxb_code dept_check(fxb_ctx *ctx, const char *dept)
{
    if (dept == NULL || strnlen(dept, FXB_DEPT_MAX + 1) > FXB_DEPT_MAX || !fxb_key_id_valid(dept))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_DEPT_INVALID, "部门代码不正确",
                            "department must be 1..%d of [A-Za-z0-9_-]", FXB_DEPT_MAX);
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

static fxb_code state_fail(fxb_ctx *ctx, const Fxb__V1__Application *app, const char *needs)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *zh =
        fxb_arena_printf(a, "办件当前状态为“%s”，不能进行此操作", fxb_app_status_zh(app->status));
    return fxb_ctx_fail(
        ctx, FXB_FAILED_PRECONDITION, FXB_APP_STATE, zh ? zh : "办件当前状态不能进行此操作",
        "the application is %s; this action needs %s", status_name(a, app->status), needs);
}

static char *num(fxb_arena *a, int64_t v)
{
    return fxb_arena_printf(a, "%" PRId64, v);
}

/* --- loading ---------------------------------------------------------------- */

/* What an officer action works on: the application, and its guide when
 * asked for. */
typedef struct loaded {
    Fxb__V1__Application *app;
    Fxb__V1__ServiceItem *item; /* with item->guide */
} loaded;

/* Reads aid for the request's department: APPLICATION_ID_INVALID,
 * APPLICATION_NOT_FOUND, or PERMISSION_DENIED DEPARTMENT_MISMATCH when the
 * application is another department's (never NOT_FOUND: the officer is told
 * the truth, that it is not theirs to handle). */
static fxb_code load(fxb_ctx *ctx, const char *dept, const char *aid, bool with_history,
                     bool with_guide, int64_t now, loaded *out)
{
    memset(out, 0, sizeof *out);
    fxb_code rc = aid_check(ctx, aid);
    if (rc != FXB_OK)
        return rc;
    fxb_err err;
    if (fxb_app_read(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), aid, with_history, now, &out->app,
                     &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (dept == NULL || out->app->department == NULL || strcmp(out->app->department, dept) != 0)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, R_DEPT_MISMATCH, "无权办理其他部门的事项",
                            "the application is not the department's named in the request");
    if (!with_guide)
        return FXB_OK;
    if (fxb_catalog_get(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), out->app->item_code,
                        out->app->guide_version, &out->item, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (out->item->guide == NULL)
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "GUIDE_MISSING", ZH_BUSY,
                            "the application's guide version could not be read");
    return FXB_OK;
}

/* One field of the record into *out (arena; "" when absent). */
static fxb_code record_field(fxb_ctx *ctx, const char *aid, const char *field, const char **out)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    *out = "";
    const char *key = fxb_app_key(a, aid, "app");
    if (key == NULL)
        return key_failed(ctx);
    fxb_err err;
    const char *argv[] = {"HGET", key, field};
    redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 3, argv, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    int type = r->type;
    if (type == REDIS_REPLY_STRING)
        *out = fxb_arena_strdup(a, r->str);
    freeReplyObject(r);
    if (type != REDIS_REPLY_STRING && type != REDIS_REPLY_NIL)
        return store_shape(ctx, "HGET");
    if (*out == NULL)
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- the change, its audit, the answer -------------------------------------- */

/* The status change by the calling officer (history actor "officer");
 * the error in *err, the call not yet failed. */
static fxb_code change_err(fxb_ctx *ctx, const char *aid, const fxb_app_status *from, size_t n_from,
                           fxb_app_status to, const char *reason, const char *legal_basis,
                           const char *const *set, const char *const *del, int64_t now,
                           fxb_err *err)
{
    static const char *const none[] = {NULL};
    fxb_app_change c = {
        .aid = aid,
        .from = from,
        .n_from = n_from,
        .to = to,
        .actor_role = "officer",
        .actor_id = fxb_ctx_caller(ctx)->account_id,
        .reason = reason,
        .legal_basis = legal_basis,
        .set = set ? set : none,
        .del = del ? del : none,
        .now_ms = now,
    };
    return fxb_app_transition(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), &c, err);
}

/* The same, failing the call on error. */
static fxb_code change(fxb_ctx *ctx, const char *aid, const fxb_app_status *from, size_t n_from,
                       fxb_app_status to, const char *reason, const char *legal_basis,
                       const char *const *set, const char *const *del, int64_t now)
{
    fxb_err err;
    if (change_err(ctx, aid, from, n_from, to, reason, legal_basis, set, del, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

/* The audit record of an officer's act on (or read of) an application:
 * "filing.<action>", the officer, the applicant, why (arena text; cut to
 * the stream's bound at a character boundary). No act without one. */
static fxb_code audit(fxb_ctx *ctx, const char *action, const Fxb__V1__Application *app,
                      const char *why, int64_t now)
{
    char *text = fxb_arena_strdup(fxb_ctx_arena(ctx), why ? why : app->application_id);
    if (text == NULL)
        return out_of_memory(ctx);
    fxb_utf8_truncate(text, FXB_AUDIT_WHY_MAX);
    fxb_err err;
    if (fxb_audit_append(fxb_ctx_store(ctx), fxb_ctx_caller(ctx)->account_id, app->subject_id,
                         action, text, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

/* Audits the act, then answers the application as it is now. */
static fxb_code finish(fxb_ctx *ctx, const char *action, const Fxb__V1__Application *before,
                       const char *why, int64_t now, ProtobufCMessage *resp)
{
    fxb_code rc = audit(ctx, action, before, why, now);
    if (rc != FXB_OK)
        return rc;
    Fxb__V1__Application *app = NULL;
    fxb_err err;
    if (fxb_app_read(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), before->application_id, false, now,
                     &app, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    *(Fxb__V1__Application *)resp = *app;
    return FXB_OK;
}

/* "<reason>" or "<reason>：<note>" for the history. */
static const char *with_note(fxb_arena *a, const char *what, const char *note)
{
    if (note == NULL || note[0] == '\0')
        return what;
    return fxb_arena_printf(a, "%s：%s", what, note);
}

/* Today (China date) plus n working days, and the end of that day. */
static fxb_code days_ahead(fxb_ctx *ctx, int64_t now, uint32_t n, uint32_t *date, int64_t *end_ms)
{
    fxb_err err;
    if (fxb_app_deadline(fxb_ctx_store(ctx), now, n, date, end_ms, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

/* --- ListQueue -------------------------------------------------------------- */

/* Page tokens: "<submitted_at_ms>.<application id>" of the last queue entry
 * looked at. */
static bool parse_queue_token(const char *tok, int64_t *score, char aid[FXB_APP_ID_LEN + 1])
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
    if (!fxb_app_id_valid(dot + 1))
        return false;
    *score = strtoll(tok, NULL, 10);
    memcpy(aid, dot + 1, FXB_APP_ID_LEN + 1);
    return true;
}

static fxb_code list_queue(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListQueueRequest *req = (const Fxb__V1__ListQueueRequest *)req_msg;
    Fxb__V1__ListQueueResponse *resp = (Fxb__V1__ListQueueResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;

    fxb_code rc = dept_check(ctx, req->department);
    if (rc != FXB_OK)
        return rc;
    if (req->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_UNSPECIFIED &&
        !status_waiting(req->status))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_STATUS_FILTER, "查询条件不正确",
                            "status must be UNSPECIFIED or a waiting status (SUBMITTED, ACCEPTED, "
                            "IN_REVIEW, SPECIAL_PROCEDURE, APPROVED)");
    if ((unsigned)req->time_state > FXB__V1__TIME_STATE__TIME_STATE_PAUSED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_TIME_STATE_FILTER, "查询条件不正确",
                            "time_state is not a known TimeState");
    size_t page = 0;
    rc = page_size_check(ctx, req->page_size, &page);
    if (rc != FXB_OK)
        return rc;
    int64_t cur_score = 0;
    char cur_aid[FXB_APP_ID_LEN + 1] = "";
    bool have_cursor = req->page_token != NULL && req->page_token[0] != '\0';
    if (have_cursor && !parse_queue_token(req->page_token, &cur_score, cur_aid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_PAGE_TOKEN,
                            "分页标记无效，请从第一页重新查询",
                            "page_token is not one this method returned");

    const char *key = fxb_arena_printf(a, "fxb:dept:%s:queue", req->department);
    Fxb__V1__Application **out = fxb_arena_calloc(a, page, sizeof *out);
    if (key == NULL || out == NULL)
        return out_of_memory(ctx);
    char min[24], batch[16];
    snprintf(min, sizeof min, "%" PRId64, have_cursor ? cur_score : 0);
    snprintf(batch, sizeof batch, "%d", QUEUE_BATCH);
    size_t m = 0, examined = 0, offset = 0;
    bool more = false, full = false;
    int64_t last_score = cur_score;
    const char *last_aid = have_cursor ? cur_aid : NULL;
    while (!full && examined < QUEUE_SCAN_MAX) {
        char off[24];
        snprintf(off, sizeof off, "%zu", offset);
        const char *argv[] = {"ZRANGEBYSCORE", key, min, "+inf", "WITHSCORES", "LIMIT", off, batch};
        redisReply *r = fxb_store_commandv(st, &err, 8, argv, NULL);
        if (r == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
            freeReplyObject(r);
            return store_shape(ctx, "ZRANGEBYSCORE");
        }
        size_t got = r->elements / 2;
        offset += got;
        size_t i = 0;
        for (; i < got && !full && examined < QUEUE_SCAN_MAX; i++) {
            const redisReply *mem = r->element[2 * i], *sc = r->element[2 * i + 1];
            if (mem->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
                !fxb_app_id_valid(mem->str))
                continue;
            int64_t score = strtoll(sc->str, NULL, 10);
            if (have_cursor &&
                (score < cur_score || (score == cur_score && strcmp(mem->str, cur_aid) <= 0)))
                continue;
            examined++;
            last_score = score;
            last_aid = fxb_arena_strdup(a, mem->str);
            if (last_aid == NULL) {
                freeReplyObject(r);
                return out_of_memory(ctx);
            }
            Fxb__V1__Application *app = NULL;
            if (fxb_app_read(st, a, last_aid, false, now, &app, &err) != FXB_OK) {
                if (err.code == FXB_NOT_FOUND)
                    continue; /* an index entry left behind */
                freeReplyObject(r);
                return fxb_ctx_fail_err(ctx, &err);
            }
            if (app->department == NULL || strcmp(app->department, req->department) != 0 ||
                !status_waiting(app->status))
                continue;
            if (req->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_UNSPECIFIED &&
                app->status != req->status)
                continue;
            if (req->time_state != FXB__V1__TIME_STATE__TIME_STATE_UNSPECIFIED &&
                app->time_state != req->time_state)
                continue;
            out[m++] = app;
            full = m == page;
        }
        /* entries left unread in this batch, or a full batch: more may follow */
        more = i < got || got == QUEUE_BATCH;
        freeReplyObject(r);
        if (got < QUEUE_BATCH && i == got)
            break;
    }
    resp->applications = out;
    resp->n_applications = m;
    resp->next_page_token = "";
    if (more && last_aid != NULL) {
        resp->next_page_token = fxb_arena_printf(a, "%" PRId64 ".%s", last_score, last_aid);
        if (resp->next_page_token == NULL)
            return out_of_memory(ctx);
    }
    return FXB_OK;
}

/* --- GetApplication --------------------------------------------------------- */

static fxb_code get_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OfficerGetRequest *req = (const Fxb__V1__OfficerGetRequest *)req_msg;
    int64_t now = fxb_wall_ms();
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;
    if (!fxb_text_ok(req->purpose, 1, PURPOSE_MAX))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_PURPOSE, "请填写查阅事由（1至100个字符）",
                            "purpose must be 1..%d characters of UTF-8 text without control "
                            "characters: every officer read is audited with it",
                            PURPOSE_MAX);
    loaded l;
    rc = load(ctx, req->department, req->application_id, true, false, now, &l);
    if (rc != FXB_OK)
        return rc;
    /* art. 36 (4): no read without its audit record */
    const char *why =
        fxb_arena_printf(fxb_ctx_arena(ctx), "%s: %s", l.app->application_id, req->purpose);
    if (why == NULL)
        return out_of_memory(ctx);
    rc = audit(ctx, "filing.officer_read", l.app, why, now);
    if (rc != FXB_OK)
        return rc;
    *(Fxb__V1__Application *)resp_msg = *l.app;
    return FXB_OK;
}

/* --- AcceptApplication ------------------------------------------------------ */

static const fxb_app_status from_submitted[] = {
    FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SUBMITTED};
static const fxb_app_status from_accepted[] = {
    FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_ACCEPTED};
static const fxb_app_status from_in_review[] = {
    FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_IN_REVIEW};
static const fxb_app_status from_special[] = {
    FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SPECIAL_PROCEDURE};
static const fxb_app_status from_approved[] = {
    FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED};

static fxb_code accept_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OfficerActionRequest *req = (const Fxb__V1__OfficerActionRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc == FXB_OK)
        rc = note_check(ctx, req->note);
    loaded l;
    if (rc == FXB_OK)
        rc = load(ctx, req->department, req->application_id, false, true, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SUBMITTED)
        return state_fail(ctx, l.app, "SUBMITTED");

    /* the time limit runs from acceptance, in working days */
    uint32_t limit = l.item->guide->time_limit_working_days, deadline = 0;
    int64_t deadline_ms = 0;
    rc = days_ahead(ctx, now, limit, &deadline, &deadline_ms);
    if (rc != FXB_OK)
        return rc;
    const char *set[] = {APP_F_ACCEPTED,    num(a, now),         APP_F_TIME_LIMIT,
                         num(a, limit),     APP_F_DEADLINE_DATE, num(a, deadline),
                         APP_F_DEADLINE_MS, num(a, deadline_ms), NULL};
    for (size_t i = 1; i < 8; i += 2)
        if (set[i] == NULL)
            return out_of_memory(ctx);
    static const char *const del[] = {APP_F_FIX_BY, NULL};
    const char *reason = with_note(a, "受理", req->note);
    if (reason == NULL)
        return out_of_memory(ctx);
    rc = change(ctx, l.app->application_id, from_submitted, 1,
                FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_ACCEPTED, reason, NULL, set, del,
                now);
    if (rc != FXB_OK)
        return rc;
    return finish(ctx, "filing.accept", l.app, NULL, now, resp_msg);
}

/* --- RequestCorrection ------------------------------------------------------ */

static const Fxb__V1__MaterialSpec *guide_material(const Fxb__V1__Guide *g, const char *code)
{
    for (size_t i = 0; code != NULL && i < g->n_materials; i++)
        if (g->materials[i]->code != NULL && strcmp(g->materials[i]->code, code) == 0)
            return g->materials[i];
    return NULL;
}

/* Whether an officer already asked to correct submission sub. */
static fxb_code correction_asked(fxb_ctx *ctx, const char *aid, const char *sub, bool *asked)
{
    const char *v = "";
    fxb_code rc = record_field(ctx, aid, F_CORRECTION_SUB, &v);
    *asked = rc == FXB_OK && v[0] != '\0' && strcmp(v, sub) == 0;
    return rc;
}

static fxb_code already_requested(fxb_ctx *ctx, const char *sub)
{
    return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_ALREADY_REQUESTED,
                        "本次提交已一次性告知过需补正的全部内容，请等待申请人重新提交",
                        "a correction was already requested for submission %s; another may "
                        "follow only a new submission",
                        sub);
}

static fxb_code request_correction(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RequestCorrectionRequest *req =
        (const Fxb__V1__RequestCorrectionRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;
    if (req->n_items == 0 || req->n_items > CORRECTION_ITEMS_MAX)
        return fxb_ctx_fail(
            ctx, FXB_INVALID_ARGUMENT, R_ITEMS, "请一次性列出需要补正的全部材料（1至30项）",
            "items must list 1..%d materials to correct, all at once", CORRECTION_ITEMS_MAX);
    for (size_t i = 0; i < req->n_items; i++) {
        const Fxb__V1__CorrectionItem *it = req->items[i];
        if (!fxb_text_ok(it->why, 1, WHY_MAX))
            return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_ITEM_WHY,
                                "请说明每项材料需要补正的原因（1至200个字符）",
                                "items[%zu].why must be 1..%d characters of UTF-8 text without "
                                "control characters",
                                i, WHY_MAX);
        for (size_t j = 0; j < i; j++)
            if (strcmp(text_or_empty(req->items[j]->material_code),
                       text_or_empty(it->material_code)) == 0)
                return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_ITEM_DUPLICATE,
                                    "同一材料请合并为一项说明",
                                    "items[%zu] repeats a material_code of items[%zu]", i, j);
    }
    loaded l;
    rc = load(ctx, req->department, req->application_id, false, true, now, &l);
    if (rc != FXB_OK)
        return rc;

    /* once per submission: the record keeps the submission last corrected
     * (asked again while that correction is awaited: say so, not just the
     * status) */
    char sub[16];
    snprintf(sub, sizeof sub, "%" PRIu32, l.app->submission);
    bool asked = false;
    rc = correction_asked(ctx, l.app->application_id, sub, &asked);
    if (rc != FXB_OK)
        return rc;
    if (asked && l.app->status == FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_NEEDS_CORRECTION)
        return already_requested(ctx, sub);
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SUBMITTED)
        return state_fail(ctx, l.app, "SUBMITTED");

    /* art. 17: nothing outside the guide */
    const Fxb__V1__Guide *g = l.item->guide;
    Fxb__V1__Problem **problems = fxb_arena_calloc(a, req->n_items, sizeof *problems);
    Fxb__V1__Problem *ps = fxb_arena_calloc(a, req->n_items, sizeof *ps);
    if (problems == NULL || ps == NULL)
        return out_of_memory(ctx);
    for (size_t i = 0; i < req->n_items; i++) {
        const Fxb__V1__CorrectionItem *it = req->items[i];
        const Fxb__V1__MaterialSpec *spec = guide_material(g, it->material_code);
        if (spec == NULL) {
            const char *code = shown_code(it->material_code, MATERIAL_CODE_MAX);
            return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_NOT_IN_GUIDE,
                                "办事指南未列出该材料，不得要求申请人提交",
                                "material %s is not in the guide (version %" PRIu32 ") of item %s",
                                code, g->version, l.app->item_code);
        }
        fxb__v1__problem__init(&ps[i]);
        ps[i].material_code = spec->code;
        ps[i].material_name = spec->name ? spec->name : "";
        ps[i].kind = FXB__V1__PROBLEM_KIND__PROBLEM_KIND_OFFICER_NOTE;
        ps[i].why = it->why;
        ps[i].how_to_fix = spec->description && spec->description[0]
                               ? fxb_arena_printf(a, "请按要求重新提交：%s", spec->description)
                               : "请按办事指南的要求重新提交该材料";
        if (ps[i].how_to_fix == NULL)
            return out_of_memory(ctx);
        problems[i] = &ps[i];
    }
    const char *stored = fxb_app_problems_encode(a, problems, req->n_items);
    if (stored == NULL)
        return out_of_memory(ctx);

    uint32_t fix_date = 0;
    int64_t fix_by = 0;
    rc = days_ahead(ctx, now, g->correction_working_days, &fix_date, &fix_by);
    if (rc != FXB_OK)
        return rc;
    const char *set[] = {APP_F_PROBLEMS,   stored, APP_F_FIX_BY, num(a, fix_by),
                         F_CORRECTION_SUB, sub,    NULL};
    if (set[3] == NULL)
        return out_of_memory(ctx);
    char *reason = fxb_arena_printf(
        a, "一次性告知补正%zu项材料，请于%04" PRIu32 "-%02" PRIu32 "-%02" PRIu32 "前补正",
        req->n_items, fix_date / 10000, fix_date / 100 % 100, fix_date % 100);
    if (reason == NULL)
        return out_of_memory(ctx);
    fxb_err err;
    if (change_err(ctx, l.app->application_id, from_submitted, 1,
                   FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_NEEDS_CORRECTION, reason, NULL,
                   set, NULL, now, &err) != FXB_OK) {
        /* another officer's request got there first */
        if (strcmp(err.reason, FXB_APP_STATE) == 0 &&
            correction_asked(ctx, l.app->application_id, sub, &asked) == FXB_OK && asked)
            return already_requested(ctx, sub);
        return fxb_ctx_fail_err(ctx, &err);
    }
    return finish(ctx, "filing.request_correction", l.app, NULL, now, resp_msg);
}

/* The common start of an action on one application: its id and note
 * checked, then the application loaded for the request's department. */
static fxb_code load_action(fxb_ctx *ctx, const Fxb__V1__OfficerActionRequest *req, int64_t now,
                            loaded *l)
{
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc == FXB_OK)
        rc = note_check(ctx, req->note);
    if (rc == FXB_OK)
        rc = load(ctx, req->department, req->application_id, false, false, now, l);
    return rc;
}

/* --- StartReview ------------------------------------------------------------ */

static fxb_code start_review(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OfficerActionRequest *req = (const Fxb__V1__OfficerActionRequest *)req_msg;
    int64_t now = fxb_wall_ms();
    loaded l;
    fxb_code rc = load_action(ctx, req, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_ACCEPTED)
        return state_fail(ctx, l.app, "ACCEPTED");
    /* art. 20: 容缺 materials still owed wait for their supplement (or for
     * supplement_by, when the sweeper withdraws the application) */
    if (l.app->n_tolerated_missing > 0)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_SUPPLEMENT_PENDING,
                            "容缺受理的材料尚未补齐，暂不能开始审查",
                            "%zu tolerated material(s) are still owed (first: %s)",
                            l.app->n_tolerated_missing, l.app->tolerated_missing[0]);
    const char *reason = with_note(fxb_ctx_arena(ctx), "开始审查", req->note);
    if (reason == NULL)
        return out_of_memory(ctx);
    rc = change(ctx, l.app->application_id, from_accepted, 1,
                FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_IN_REVIEW, reason, NULL, NULL, NULL,
                now);
    if (rc != FXB_OK)
        return rc;
    return finish(ctx, "filing.start_review", l.app, NULL, now, resp_msg);
}

/* --- special procedures ----------------------------------------------------- */

static const Fxb__V1__SpecialProcedure *guide_procedure(const Fxb__V1__Guide *g, const char *code)
{
    for (size_t i = 0; code != NULL && i < g->n_special_procedures; i++)
        if (g->special_procedures[i]->code != NULL &&
            strcmp(g->special_procedures[i]->code, code) == 0)
            return g->special_procedures[i];
    return NULL;
}

static fxb_code start_special_procedure(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                        ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SpecialProcedureRequest *req = (const Fxb__V1__SpecialProcedureRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    loaded l;
    fxb_code rc = load(ctx, req->department, req->application_id, false, true, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_IN_REVIEW)
        return state_fail(ctx, l.app, "IN_REVIEW");
    const Fxb__V1__SpecialProcedure *p = guide_procedure(l.item->guide, req->procedure_code);
    if (p == NULL) {
        const char *code = shown_code(req->procedure_code, PROCEDURE_CODE_MAX);
        return fxb_ctx_fail(
            ctx, FXB_INVALID_ARGUMENT, R_PROC_NOT_IN_GUIDE, "办事指南未列出该特别程序",
            "special procedure %s is not in the guide of item %s", code, l.app->item_code);
    }
    const char *set[] = {APP_F_SPECIAL, p->code, F_SPECIAL_STARTED, num(a, now), NULL};
    const char *reason = fxb_arena_printf(a, "特别程序开始：%s（%s），办理时限暂停计算",
                                          text_or_empty(p->name), p->code);
    if (set[3] == NULL || reason == NULL)
        return out_of_memory(ctx);
    rc = change(ctx, l.app->application_id, from_in_review, 1,
                FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SPECIAL_PROCEDURE, reason, NULL,
                set, NULL, now);
    if (rc != FXB_OK)
        return rc;
    const char *why = fxb_arena_printf(a, "%s %s", l.app->application_id, p->code);
    return finish(ctx, "filing.start_special_procedure", l.app, why, now, resp_msg);
}

static fxb_code end_special_procedure(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                      ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OfficerActionRequest *req = (const Fxb__V1__OfficerActionRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc == FXB_OK)
        rc = note_check(ctx, req->note);
    loaded l;
    if (rc == FXB_OK)
        rc = load(ctx, req->department, req->application_id, false, true, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_SPECIAL_PROCEDURE)
        return state_fail(ctx, l.app, "SPECIAL_PROCEDURE");
    const char *started_s = "";
    rc = record_field(ctx, l.app->application_id, F_SPECIAL_STARTED, &started_s);
    if (rc != FXB_OK)
        return rc;
    int64_t started = started_s[0] ? strtoll(started_s, NULL, 10) : now;

    /* the clock was paused: the working days spent move the deadline */
    uint32_t spent = 0, deadline = l.app->deadline_date;
    if (fxb_calendar_working_days_between(st, fxb_calendar_date_of(started),
                                          fxb_calendar_date_of(now), &spent, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (deadline != 0 &&
        fxb_calendar_add_working_days(st, l.app->deadline_date, spent, &deadline, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    int64_t deadline_ms = deadline ? fxb_calendar_end_of_day_ms(deadline) : 0;

    const char *code = text_or_empty(l.app->special_procedure_code);
    const Fxb__V1__SpecialProcedure *p = guide_procedure(l.item->guide, code);
    const char *what =
        fxb_arena_printf(a, "特别程序结束：%s（%s），用时%" PRIu32 "个工作日，办理期限相应顺延",
                         p && p->name ? p->name : code, code, spent);
    const char *reason = what ? with_note(a, what, req->note) : NULL;
    const char *set[] = {APP_F_DEADLINE_DATE, num(a, deadline), APP_F_DEADLINE_MS,
                         num(a, deadline_ms), NULL};
    static const char *const del[] = {APP_F_SPECIAL, F_SPECIAL_STARTED, NULL};
    if (reason == NULL || set[1] == NULL || set[3] == NULL)
        return out_of_memory(ctx);
    rc = change(ctx, l.app->application_id, from_special, 1,
                FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_IN_REVIEW, reason, NULL, set, del,
                now);
    if (rc != FXB_OK)
        return rc;
    const char *why = fxb_arena_printf(a, "%s %s %" PRIu32, l.app->application_id, code, spent);
    return finish(ctx, "filing.end_special_procedure", l.app, why, now, resp_msg);
}

/* --- decisions -------------------------------------------------------------- */

static fxb_code approve_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                    ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OfficerActionRequest *req = (const Fxb__V1__OfficerActionRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    loaded l;
    fxb_code rc = load_action(ctx, req, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_IN_REVIEW)
        return state_fail(ctx, l.app, "IN_REVIEW");
    const char *set[] = {APP_F_DECIDED, num(a, now), NULL};
    const char *reason = with_note(a, "审查通过，准予批准", req->note);
    if (set[1] == NULL || reason == NULL)
        return out_of_memory(ctx);
    rc = change(ctx, l.app->application_id, from_in_review, 1,
                FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED, reason, NULL, set, NULL,
                now);
    if (rc != FXB_OK)
        return rc;
    return finish(ctx, "filing.approve", l.app, NULL, now, resp_msg);
}

static fxb_code deny_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__DenyApplicationRequest *req = (const Fxb__V1__DenyApplicationRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;
    rc = text_check(ctx, req->reason, 1, DENIAL_REASON_MAX, "reason", R_DENIAL_REASON,
                    "不予批准须说明理由（1至500个字符）");
    if (rc == FXB_OK)
        rc = text_check(ctx, req->legal_basis, 1, LEGAL_BASIS_MAX, "legal_basis", R_LEGAL_BASIS,
                        "不予批准须写明法律依据（1至200个字符）");
    if (rc != FXB_OK)
        return rc;
    loaded l;
    rc = load(ctx, req->department, req->application_id, false, false, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_IN_REVIEW)
        return state_fail(ctx, l.app, "IN_REVIEW");
    const char *set[] = {APP_F_DECIDED, num(a, now),        APP_F_DENIAL_REASON,
                         req->reason,   APP_F_DENIAL_BASIS, req->legal_basis,
                         NULL};
    if (set[1] == NULL)
        return out_of_memory(ctx);
    rc = change(ctx, l.app->application_id, from_in_review, 1,
                FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_DENIED, req->reason,
                req->legal_basis, set, NULL, now);
    if (rc != FXB_OK)
        return rc;
    return finish(ctx, "filing.deny", l.app, NULL, now, resp_msg);
}

/* --- CompleteApplication ---------------------------------------------------- */

/* The crypto that seals licence numbers in the wallet. */
static const fxb_crypto *licence_crypto(fxb_ctx *ctx, fxb_err *err);

/* Claims the licence result of aid: *mid set when an earlier attempt
 * already added it to the wallet (reuse it), "" when this call adds it.
 * FAILED_PRECONDITION COMPLETION_IN_PROGRESS while another call holds a
 * fresh claim. */
static fxb_code claim_result(fxb_ctx *ctx, const char *aid, int64_t now, const char **mid)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_err err;
    *mid = "";
    const char *key = fxb_app_key(a, aid, "app");
    const char *mine = fxb_arena_printf(a, "p%" PRId64, now);
    if (key == NULL || mine == NULL)
        return key == NULL ? key_failed(ctx) : out_of_memory(ctx);
    const char *nx[] = {"HSETNX", key, F_RESULT_CLAIM, mine};
    redisReply *r = fxb_store_commandv(st, &err, 4, nx, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool claimed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (claimed)
        return FXB_OK;
    const char *held = "";
    fxb_code rc = record_field(ctx, aid, F_RESULT_CLAIM, &held);
    if (rc != FXB_OK)
        return rc;
    if (held[0] == 'm' && fxb_key_id_valid(held + 1)) {
        *mid = held + 1;
        return FXB_OK;
    }
    if (held[0] == 'p' && now - strtoll(held + 1, NULL, 10) < CLAIM_STALE_MS)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_COMPLETING,
                            "该申请正在办结，请稍后刷新查看",
                            "another call is completing the application");
    /* a claim left by a call that died: take it over */
    const char *set[] = {"HSET", key, F_RESULT_CLAIM, mine};
    r = fxb_store_commandv(st, &err, 4, set, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    freeReplyObject(r);
    return FXB_OK;
}

/* Sets (mid != NULL: "m<mid>") or drops the claim; best effort. */
static void settle_claim(fxb_ctx *ctx, const char *aid, const char *mid)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *key = fxb_app_key(a, aid, "app");
    const char *v = mid ? fxb_arena_printf(a, "m%s", mid) : NULL;
    if (key == NULL || (mid != NULL && v == NULL))
        return;
    fxb_err err;
    const char *hset[] = {"HSET", key, F_RESULT_CLAIM, v};
    const char *hdel[] = {"HDEL", key, F_RESULT_CLAIM};
    redisReply *r = mid ? fxb_store_commandv(fxb_ctx_store(ctx), &err, 4, hset, NULL)
                        : fxb_store_commandv(fxb_ctx_store(ctx), &err, 3, hdel, NULL);
    if (r == NULL)
        fxb_log(FXB_LOG_WARN, "officer: completion claim of %s not settled: %s", aid, err.reason);
    else
        freeReplyObject(r);
}

static fxb_code complete_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                     ProtobufCMessage *resp_msg)
{
    const Fxb__V1__CompleteApplicationRequest *req =
        (const Fxb__V1__CompleteApplicationRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;
    const char *number_in = text_or_empty(req->licence_number);
    if (number_in[0] != '\0' && fxb_text_chars_max(number_in, FXB_LICENCE_NUMBER_MAX) < 0)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_LICENCE_NUMBER, "证照编号不正确",
                            "licence_number must be 0..%d bytes of UTF-8 text without control "
                            "characters",
                            FXB_LICENCE_NUMBER_MAX);
    if (req->licence_valid_until_ms != 0 && req->licence_valid_until_ms <= now)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_LICENCE_VALIDITY, "证照有效期不正确",
                            "licence_valid_until_ms must be 0 (no end) or in the future");
    loaded l;
    rc = load(ctx, req->department, req->application_id, false, true, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (l.app->status != FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED)
        return state_fail(ctx, l.app, "APPROVED");

    const Fxb__V1__Guide *g = l.item->guide;
    const char *aid = l.app->application_id;
    const char *mid = "";
    bool licence = g->result_licence_type != NULL && g->result_licence_type[0] != '\0';
    if (licence) {
        rc = claim_result(ctx, aid, now, &mid);
        if (rc != FXB_OK)
            return rc;
    }
    if (licence && mid[0] == '\0') {
        char id[FXB_ID_MAX + 1];
        const char *number =
            number_in[0] ? number_in : fxb_arena_printf(a, "%s-%s", l.app->item_code, aid);
        fxb_licence lic = {
            .type = g->result_licence_type,
            .name = g->result_name && g->result_name[0] ? g->result_name : l.item->name,
            .number = number,
            .issuer = l.item->department_name && l.item->department_name[0]
                          ? l.item->department_name
                          : "放新办",
            .valid_until_ms = req->licence_valid_until_ms,
            .source_application = aid,
        };
        fxb_err err;
        if (number == NULL) {
            settle_claim(ctx, aid, NULL);
            return out_of_memory(ctx);
        }
        const fxb_crypto *keys = licence_crypto(ctx, &err);
        if (keys == NULL || fxb_wallet_add_licence(fxb_ctx_store(ctx), keys, l.app->subject_id,
                                                   &lic, now, id, &err) != FXB_OK) {
            settle_claim(ctx, aid, NULL);
            return fxb_ctx_fail_err(ctx, &err);
        }
        mid = fxb_arena_strdup(a, id);
        if (mid == NULL)
            return out_of_memory(ctx);
        settle_claim(ctx, aid, mid);
    }
    const char *set[] = {APP_F_COMPLETED, num(a, now), APP_F_RESULT_MATERIAL, mid, NULL};
    static const char *const del[] = {F_RESULT_CLAIM, NULL};
    const char *what = licence ? fxb_arena_printf(a, "办结：%s已发放至申请人的证照夹",
                                                  text_or_empty(g->result_name))
                               : "办结：办理结果已送达";
    if (set[1] == NULL || what == NULL)
        return out_of_memory(ctx);
    if (!licence)
        set[2] = NULL;
    rc = change(ctx, aid, from_approved, 1,
                FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_COMPLETED, what, NULL, set,
                licence ? del : NULL, now);
    if (rc != FXB_OK)
        return rc;
    const char *why = licence ? fxb_arena_printf(a, "%s licence %s", aid, mid) : NULL;
    return finish(ctx, "filing.complete", l.app, why, now, resp_msg);
}

/* --- 告知承诺: broken commitments ---------------------------------------------- */

static bool decided_with_commitment(fxb_app_status s)
{
    return s == FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED ||
           s == FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_COMPLETED;
}

static fxb_code mark_commitment_broken(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                       ProtobufCMessage *resp_msg)
{
    const Fxb__V1__MarkCommitmentBrokenRequest *req =
        (const Fxb__V1__MarkCommitmentBrokenRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;
    rc = text_check(ctx, req->reason, 1, BROKEN_REASON_MAX, "reason", R_BROKEN_REASON,
                    "请说明承诺不实的情况（1至500个字符）");
    if (rc != FXB_OK)
        return rc;
    if (req->rectify_working_days > RECTIFY_DAYS_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_RECTIFY_DAYS, "整改期限为1至60个工作日",
                            "rectify_working_days must be 1..%d (0 = %d)", RECTIFY_DAYS_MAX,
                            RECTIFY_DAYS_DEFAULT);
    uint32_t days = req->rectify_working_days ? req->rectify_working_days : RECTIFY_DAYS_DEFAULT;
    loaded l;
    rc = load(ctx, req->department, req->application_id, false, false, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (!l.app->notify_commit)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_NOT_NOTIFY_COMMIT,
                            "该申请未适用告知承诺制",
                            "the application was not approved under 告知承诺 (notify_commit)");
    if (!decided_with_commitment(l.app->status))
        return state_fail(ctx, l.app, "APPROVED or COMPLETED");
    if (l.app->commitment_broken)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_ALREADY_BROKEN,
                            "已责令整改，请在整改期限届满前确认整改结果",
                            "the commitment is already marked broken (rectify by %" PRId64 ")",
                            l.app->rectify_by_ms);

    uint32_t by_date = 0;
    int64_t by_ms = 0;
    rc = days_ahead(ctx, now, days, &by_date, &by_ms);
    if (rc != FXB_OK)
        return rc;
    const char *set[] = {APP_F_BROKEN, "1", APP_F_RECTIFY_BY, num(a, by_ms), NULL};
    const char *reason = fxb_arena_printf(
        a, "承诺不实，责令于%04" PRIu32 "-%02" PRIu32 "-%02" PRIu32 "前整改，逾期未整改将撤销：%s",
        by_date / 10000, by_date / 100 % 100, by_date % 100, req->reason);
    if (set[3] == NULL || reason == NULL)
        return out_of_memory(ctx);
    /* the status stays; the change is recorded like any other */
    fxb_app_status now_status = l.app->status;
    rc = change(ctx, l.app->application_id, &now_status, 1, now_status, reason, NULL, set, NULL,
                now);
    if (rc != FXB_OK)
        return rc;
    return finish(ctx, "filing.mark_commitment_broken", l.app, NULL, now, resp_msg);
}

static fxb_code confirm_rectified(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                  ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OfficerActionRequest *req = (const Fxb__V1__OfficerActionRequest *)req_msg;
    int64_t now = fxb_wall_ms();
    loaded l;
    fxb_code rc = load_action(ctx, req, now, &l);
    if (rc != FXB_OK)
        return rc;
    if (!decided_with_commitment(l.app->status))
        return state_fail(ctx, l.app, "APPROVED or COMPLETED");
    if (!l.app->commitment_broken)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_NOT_BROKEN, "该申请没有待整改的承诺",
                            "the commitment is not marked broken");
    static const char *const del[] = {APP_F_BROKEN, APP_F_RECTIFY_BY, NULL};
    const char *reason = with_note(fxb_ctx_arena(ctx), "已按承诺整改到位", req->note);
    if (reason == NULL)
        return out_of_memory(ctx);
    fxb_app_status now_status = l.app->status;
    rc = change(ctx, l.app->application_id, &now_status, 1, now_status, reason, NULL, NULL, del,
                now);
    if (rc != FXB_OK)
        return rc;
    return finish(ctx, "filing.confirm_rectified", l.app, NULL, now, resp_msg);
}

/* --- OverdueReport ---------------------------------------------------------- */

static fxb_code overdue_report(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__OverdueReportRequest *req = (const Fxb__V1__OverdueReportRequest *)req_msg;
    Fxb__V1__OverdueReportResponse *resp = (Fxb__V1__OverdueReportResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;
    fxb_code rc = dept_check(ctx, req->department);
    if (rc != FXB_OK)
        return rc;
    /* due soon: the deadline's day is at most DUE_SOON_DAYS working days
     * ahead (deadlines fall on working days) */
    uint32_t soon_date = 0;
    int64_t soon_end = 0;
    rc = days_ahead(ctx, now, DUE_SOON_DAYS, &soon_date, &soon_end);
    if (rc != FXB_OK)
        return rc;

    const char *key = fxb_arena_printf(a, "fxb:dept:%s:running", req->department);
    const char *past = fxb_arena_printf(a, "(%" PRId64, now);
    const char *from = num(a, now);
    const char *to = num(a, soon_end);
    if (key == NULL || past == NULL || from == NULL || to == NULL)
        return out_of_memory(ctx);
    char limit[16];
    snprintf(limit, sizeof limit, "%d", OVERDUE_LIST_MAX);
    const char *card[] = {"ZCARD", key};
    const char *n_over[] = {"ZCOUNT", key, "-inf", past};
    const char *n_soon[] = {"ZCOUNT", key, from, to};
    const char *list[] = {"ZRANGEBYSCORE", key, "-inf", past, "LIMIT", "0", limit};
    fxb_store_cmd cmds[] = {{2, card, NULL}, {4, n_over, NULL}, {4, n_soon, NULL}, {7, list, NULL}};
    redisReply *rs[4] = {NULL, NULL, NULL, NULL};
    if (fxb_store_pipeline(st, &err, 4, cmds, rs) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    bool shape = rs[0] && rs[0]->type == REDIS_REPLY_INTEGER && rs[1] &&
                 rs[1]->type == REDIS_REPLY_INTEGER && rs[2] &&
                 rs[2]->type == REDIS_REPLY_INTEGER && rs[3] && rs[3]->type == REDIS_REPLY_ARRAY;
    const char **ids = NULL;
    size_t n_ids = 0;
    if (shape) {
        resp->running = (uint32_t)rs[0]->integer;
        resp->overdue = (uint32_t)rs[1]->integer;
        resp->due_soon = (uint32_t)rs[2]->integer;
        ids = fxb_arena_calloc(a, rs[3]->elements + 1, sizeof *ids);
        for (size_t i = 0; ids != NULL && i < rs[3]->elements; i++) {
            const redisReply *e = rs[3]->element[i];
            if (e->type == REDIS_REPLY_STRING && fxb_app_id_valid(e->str) &&
                (ids[n_ids] = fxb_arena_strdup(a, e->str)) != NULL)
                n_ids++;
        }
    }
    for (size_t i = 0; i < 4; i++)
        if (rs[i] != NULL)
            freeReplyObject(rs[i]);
    if (!shape)
        return store_shape(ctx, "the overdue counts");
    if (ids == NULL)
        return out_of_memory(ctx);

    /* oldest deadline first, as the index orders them */
    Fxb__V1__Application **out = fxb_arena_calloc(a, n_ids + 1, sizeof *out);
    if (out == NULL)
        return out_of_memory(ctx);
    size_t m = 0;
    for (size_t i = 0; i < n_ids; i++) {
        Fxb__V1__Application *app = NULL;
        if (fxb_app_read(st, a, ids[i], false, now, &app, &err) != FXB_OK) {
            if (err.code == FXB_NOT_FOUND)
                continue;
            return fxb_ctx_fail_err(ctx, &err);
        }
        if (app->department == NULL || strcmp(app->department, req->department) != 0 ||
            fxb_app_status_ended(app->status))
            continue;
        out[m++] = app;
    }
    resp->overdue_applications = out;
    resp->n_overdue_applications = m;
    resp->as_of_ms = now;
    return FXB_OK;
}

/* --- the licence crypto and the problems' stored form ----------------------- */

/* The data keys that seal licence numbers: the server's own (main.c hands
 * them to fxb_filing_service_init), so a rotated key set is the one used. */

static const fxb_crypto *licence_crypto(fxb_ctx *ctx, fxb_err *err)
{
    (void)ctx;
    const fxb_crypto *c = fxb_filing_crypto();
    if (c == NULL)
        fxb_err_set(err, FXB_UNAVAILABLE, "NOT_CONFIGURED", ZH_BUSY,
                    "the data keys for licence numbers are not configured on this server");
    return c;
}

/* --- method table ----------------------------------------------------------- */

/* Officers of the request's department, and admins; never delegated. */
#define OFFICER                                                                                    \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .roles = FXB_ROLE_OFFICER | FXB_ROLE_ADMIN,                  \
        .dept_field = "department", .delegable = false                                             \
    }

#define UNARY(name, fn, req, resp, max)                                                            \
    {                                                                                              \
        .path = SVC name, .request = &req##__descriptor, .response = &resp##__descriptor,          \
        .unary = fn, .access = OFFICER, .limits = {                                                \
            .max_request_bytes = (max)                                                             \
        }                                                                                          \
    }

static const fxb_method methods[] = {
    UNARY("ListQueue", list_queue, fxb__v1__list_queue_request, fxb__v1__list_queue_response,
          SMALL_REQUEST),
    UNARY("GetApplication", get_application, fxb__v1__officer_get_request, fxb__v1__application,
          SMALL_REQUEST),
    UNARY("AcceptApplication", accept_application, fxb__v1__officer_action_request,
          fxb__v1__application, TEXT_REQUEST),
    UNARY("RequestCorrection", request_correction, fxb__v1__request_correction_request,
          fxb__v1__application, CORRECTION_REQUEST),
    UNARY("StartReview", start_review, fxb__v1__officer_action_request, fxb__v1__application,
          TEXT_REQUEST),
    UNARY("StartSpecialProcedure", start_special_procedure, fxb__v1__special_procedure_request,
          fxb__v1__application, SMALL_REQUEST),
    UNARY("EndSpecialProcedure", end_special_procedure, fxb__v1__officer_action_request,
          fxb__v1__application, TEXT_REQUEST),
    UNARY("ApproveApplication", approve_application, fxb__v1__officer_action_request,
          fxb__v1__application, TEXT_REQUEST),
    UNARY("DenyApplication", deny_application, fxb__v1__deny_application_request,
          fxb__v1__application, TEXT_REQUEST),
    UNARY("CompleteApplication", complete_application, fxb__v1__complete_application_request,
          fxb__v1__application, SMALL_REQUEST),
    UNARY("MarkCommitmentBroken", mark_commitment_broken, fxb__v1__mark_commitment_broken_request,
          fxb__v1__application, TEXT_REQUEST),
    UNARY("ConfirmRectified", confirm_rectified, fxb__v1__officer_action_request,
          fxb__v1__application, TEXT_REQUEST),
    UNARY("OverdueReport", overdue_report, fxb__v1__overdue_report_request,
          fxb__v1__overdue_report_response, SMALL_REQUEST),
};

const fxb_service fxb_officer_service = {
    .name = "fxb.v1.OfficerService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
