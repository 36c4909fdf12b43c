/* RatingService handlers (好差评, regulation art. 32) and the invitation to
 * rate that the application core sends when an application ends. One
 * rating per application (一事一评), written once by one script; a
 * real-name bad rating opens a follow-up case with its due dates counted on
 * the working-day calendar (call-back: end of the day one working day after
 * the rating's China date; rectification: FOLLOW_UP_RECTIFY_DAYS working
 * days), which officers of the application's department call back and
 * rectify; the applicant then gets the feedback and rates the follow-up.
 *
 * Keys:
 *   {a:<aid>}:rating            hash (the application's hash tag): subject,
 *                               rated_by (the agent when delegated, else the
 *                               subject), level, attitude, efficiency,
 *                               convenience, transparency, comment,
 *                               rated_at_ms, real_name "1" / "0",
 *                               department, item_code, case_id ("" none)
 *   {a:<aid>}:app               field rated "1" (APP_F_RATED), written by
 *                               the same script as the rating
 *   {f:<case>}:followup         hash, one per case: application_id, subject,
 *                               department, item_code, state (open |
 *                               called_back | closed), opened_at_ms,
 *                               call_back_due_ms, rectify_due_ms,
 *                               called_back_at_ms, call_back_note,
 *                               called_back_by, rectified_at_ms,
 *                               rectification_note, rectified_by,
 *                               follow_up_level, follow_up_comment,
 *                               follow_up_rated_at_ms
 *   fxb:dept:<dept>:followups   zset: the department's open and called-back
 *                               cases, score call_back_due_ms
 *   fxb:dept:<dept>:followups:closed  zset: closed cases, score
 *                               rectified_at_ms (the newest CLOSED_KEEP)
 *   fxb:item:<code>:followups   zset: the item's open and called-back cases,
 *                               score call_back_due_ms (public overdue count)
 *   fxb:ratings:dept:<dept>, fxb:ratings:item:<code>  hash: aggregates:
 *                               total, level_1..level_5, <dimension>_sum and
 *                               <dimension>_n, follow_ups_opened,
 *                               follow_ups_closed, follow_ups_closed_late
 *   fxb:audit                   rating.call_back, rating.rectify
 *   inboxes (store/inbox.h)     rating.invite (the application ended),
 *                               rating.case (a case was opened),
 *                               rating.followup (the feedback, and the
 *                               invitation to rate the follow-up); ref = aid
 * A "late" flag means the step was done, or is still not done, after its
 * due time: overdue_only and the public overdue count use the same rule.
 * The rating, the case and the aggregates live in different slots, so no
 * script spans them: a case is written first (not yet listed), then the
 * rating naming it (the one atomic step: a second rating of the same
 * application fails there, and its case is deleted), then the indexes and
 * the aggregates, which only the call whose rating was written touches, so
 * a retry never counts twice. Case transitions are one script on the case
 * (state and department checked there); the indexes and counters follow,
 * again only from the call whose transition happened. Overdue flags are
 * computed when read, with the server's clock (the development clock
 * applies). Aggregates and public results carry no personal data. */
#include "services/rating/rating.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scope.h"
#include "auth/token.h"
#include "fxb/v1/rating.pb-c.h"
#include "server/log.h"
#include "server/text.h"
#include "services/calendar/calendar.h"
#include "services/filing/application.h"
#include "store/audit.h"
#include "store/inbox.h"
#include "store/keys.h"

#define SVC "/fxb.v1.RatingService/"

#define COMMENT_MAX             500 /* characters */
#define NOTE_MAX                500 /* characters */
#define DIMENSION_MAX           5
#define CASE_ID_LEN             22 /* fxb_token_new_id */
#define DEPT_MAX                32
#define ITEM_CODE_MAX           40
#define ITEM_NAME_MAX           60 /* characters (the catalogue's bound) */
#define FOLLOW_UP_CALLBACK_DAYS 1  /* art. 32: within one working day */
#define FOLLOW_UP_RECTIFY_DAYS  15
#define CLOSED_KEEP             10000 /* closed cases listed per department */
#define LIST_READ_MAX           1000  /* cases read per listing */
#define OPEN_SCAN_MAX           1000  /* open cases read for the public overdue count */
#define PAGE_DEFAULT            20
#define PAGE_MAX                100
#define PAGE_TOKEN_MAX          64
#define SMALL_REQUEST           512
#define TEXT_REQUEST            (SMALL_REQUEST + 4 * NOTE_MAX)

#define ZH_BUSY             "系统繁忙，请稍后重试"
#define ZH_APP_NOT_FOUND    "未找到该办件"
#define ZH_RATING_NOT_FOUND "未找到该评价"
#define ZH_CASE_NOT_FOUND   "未找到该差评回访整改记录"

/* reasons */
#define R_NOT_ENDED        "APPLICATION_NOT_ENDED"
#define R_ALREADY_RATED    "ALREADY_RATED"
#define R_LEVEL_REQUIRED   "RATING_LEVEL_REQUIRED"
#define R_LEVEL_INVALID    "RATING_LEVEL_INVALID"
#define R_DIMENSION        "DIMENSION_INVALID"
#define R_COMMENT          "COMMENT_INVALID"
#define R_NOTE             "NOTE_INVALID"
#define R_RATING_NOT_FOUND "RATING_NOT_FOUND"
#define R_CASE_NOT_FOUND   "FOLLOW_UP_NOT_FOUND"
#define R_CASE_ID_INVALID  "CASE_ID_INVALID"
#define R_CASE_STATE       "FOLLOW_UP_STATE"
#define R_CALL_BACK_FIRST  "CALL_BACK_FIRST"
#define R_NOT_CLOSED       "FOLLOW_UP_NOT_CLOSED"
#define R_DEPT_MISMATCH    "DEPARTMENT_MISMATCH"
#define R_DEPT_INVALID     "DEPARTMENT_INVALID"
#define R_ITEM_INVALID     "ITEM_CODE_INVALID"
#define R_SCOPE_REQUIRED   "DEPARTMENT_OR_ITEM_REQUIRED"
#define R_STATE_INVALID    "FOLLOW_UP_STATE_INVALID"
#define R_PAGE_SIZE        "PAGE_SIZE_INVALID"
#define R_PAGE_TOKEN       "PAGE_TOKEN_INVALID"

#define KIND_INVITE   "rating.invite"
#define KIND_CASE     "rating.case"
#define KIND_FOLLOWUP "rating.followup"

/* --- states --------------------------------------------------------------- */

typedef struct state_info {
    const char *word; /* as stored */
    Fxb__V1__FollowUpState state;
} state_info;

static const state_info states[] = {
    {"open", FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_OPEN},
    {"called_back", FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CALLED_BACK},
    {"closed", FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED},
};
#define N_STATES (sizeof states / sizeof states[0])

static const state_info *state_by_word(const char *word)
{
    for (size_t i = 0; word != NULL && i < N_STATES; i++)
        if (strcmp(states[i].word, word) == 0)
            return &states[i];
    return NULL;
}

/* --- scripts -------------------------------------------------------------- */

/* KEYS: the rating, the application; ARGV: field, value pairs. The one
 * step that makes a rating (a second one fails), and marks the application
 * rated. */
static fxb_script rate_script =
    FXB_SCRIPT("rating_rate", "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
                              "  return redis.error_reply('FXB 6 " R_ALREADY_RATED
                              " the application is already rated')\n"
                              "end\n"
                              "redis.call('HSET', KEYS[1], unpack(ARGV))\n"
                              "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
                              "  redis.call('HSET', KEYS[2], '" APP_F_RATED "', '1')\n"
                              "end\n"
                              "return 1\n");

/* KEYS: a case; ARGV: field, value pairs. */
static fxb_script case_create_script = FXB_SCRIPT(
    "rating_case_create", "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
                          "  return redis.error_reply('FXB 10 CASE_ID_CLASH try again')\n"
                          "end\n"
                          "redis.call('HSET', KEYS[1], unpack(ARGV))\n"
                          "return 1\n");

/* KEYS: an aggregate hash; ARGV: field, increment pairs. */
static fxb_script count_script =
    FXB_SCRIPT("rating_count", "for i = 1, #ARGV, 2 do\n"
                               "  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])\n"
                               "end\n"
                               "return 1\n");

/* The case must exist and belong to the department ARGV[1]. */
#define LUA_CASE_CHECK                                                                             \
    "local h = redis.call('HMGET', KEYS[1], 'state', 'department')\n"                              \
    "if not h[1] then\n"                                                                           \
    "  return redis.error_reply('FXB 5 " R_CASE_NOT_FOUND " no such follow-up case')\n"            \
    "end\n"                                                                                        \
    "if h[2] ~= ARGV[1] then\n"                                                                    \
    "  return redis.error_reply('FXB 7 " R_DEPT_MISMATCH                                           \
    " the case belongs to another department')\n"                                                  \
    "end\n"

/* KEYS: the case; ARGV: department, now_ms, note, officer. open ->
 * called_back; returns the case (HGETALL). */
static fxb_script call_back_script =
    FXB_SCRIPT("rating_call_back", LUA_CASE_CHECK
               "if h[1] ~= 'open' then\n"
               "  return redis.error_reply('FXB 9 " R_CASE_STATE " the case is ' .. h[1])\n"
               "end\n"
               "redis.call('HSET', KEYS[1], 'state', 'called_back', 'called_back_at_ms', ARGV[2],\n"
               "           'call_back_note', ARGV[3], 'called_back_by', ARGV[4])\n"
               "return redis.call('HGETALL', KEYS[1])\n");

/* KEYS: the case; ARGV: department, now_ms, note, officer. called_back ->
 * closed; returns the case (HGETALL). */
static fxb_script rectify_script =
    FXB_SCRIPT("rating_rectify", LUA_CASE_CHECK
               "if h[1] == 'open' then\n"
               "  return redis.error_reply('FXB 9 " R_CALL_BACK_FIRST
               " the call-back must be recorded before the rectification')\n"
               "end\n"
               "if h[1] ~= 'called_back' then\n"
               "  return redis.error_reply('FXB 9 " R_CASE_STATE " the case is ' .. h[1])\n"
               "end\n"
               "redis.call('HSET', KEYS[1], 'state', 'closed', 'rectified_at_ms', ARGV[2],\n"
               "           'rectification_note', ARGV[3], 'rectified_by', ARGV[4])\n"
               "return redis.call('HGETALL', KEYS[1])\n");

/* KEYS: the case; ARGV: subject, level, comment, now_ms. Once, when closed. */
static fxb_script rate_follow_up_script = FXB_SCRIPT(
    "rating_rate_follow_up",
    "local h = redis.call('HMGET', KEYS[1], 'state', 'subject', 'follow_up_level')\n"
    "if not h[1] or h[2] ~= ARGV[1] then\n"
    "  return redis.error_reply('FXB 5 " R_CASE_NOT_FOUND " no such follow-up case')\n"
    "end\n"
    "if h[1] ~= 'closed' then\n"
    "  return redis.error_reply('FXB 9 " R_NOT_CLOSED " the follow-up is not closed yet')\n"
    "end\n"
    "if h[3] then\n"
    "  return redis.error_reply('FXB 6 " R_ALREADY_RATED " the follow-up is already rated')\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'follow_up_level', ARGV[2], 'follow_up_comment', ARGV[3],\n"
    "           'follow_up_rated_at_ms', ARGV[4])\n"
    "return 1\n");

/* KEYS: the department's open zset, its closed zset; ARGV: case id,
 * now_ms, closed entries kept. */
static fxb_script close_index_script = FXB_SCRIPT(
    "rating_close_index", "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                          "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
                          "redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[3]) + 1))\n"
                          "return 1\n");

/* --- small helpers -------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code key_failed(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
}

static void text_of(char *buf, size_t cap, int64_t v)
{
    snprintf(buf, cap, "%" PRId64, v);
}

static bool id_valid(const char *id, size_t len)
{
    if (id == NULL || strnlen(id, len + 1) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Department codes of the catalogue: [a-z0-9-]{1,32}. */
static bool dept_valid(const char *d)
{
    size_t n = d ? strnlen(d, DEPT_MAX + 1) : 0;
    if (n == 0 || n > DEPT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= '0' && d[i] <= '9') || d[i] == '-'))
            return false;
    return true;
}

/* Item codes of the catalogue: [A-Za-z0-9._-]{1,40}. */
static bool item_valid(const char *s)
{
    size_t n = s ? strnlen(s, ITEM_CODE_MAX + 1) : 0;
    if (n == 0 || n > ITEM_CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* min_chars..max_chars characters of well-formed UTF-8 without controls
 * (NULL reads as ""). */
static bool text_valid(const char *s, size_t min_chars, size_t max_chars)
{
    if (s == NULL)
        s = "";
    size_t n = strnlen(s, 4 * max_chars + 1);
    if (n > 4 * max_chars)
        return false;
    size_t chars = 0;
    for (size_t i = 0; i < n; chars++) {
        uint32_t cp;
        size_t len = fxb_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (len == 0 || fxb_text_is_control(cp))
            return false;
        i += len;
    }
    return chars >= min_chars && chars <= max_chars;
}

static const char *dup_or_empty(fxb_arena *a, const char *s)
{
    return fxb_arena_strdup(a, s != NULL ? s : "");
}

/* Copies the longest prefix of src that fits cap bytes (with the NUL)
 * without splitting a UTF-8 sequence; true when all of src fit. */
static bool utf8_prefix(char *dst, size_t cap, const char *src)
{
    size_t len = strlen(src), n = len < cap - 1 ? len : cap - 1;
    while (n > 0 && n < len && ((unsigned char)src[n] & 0xc0) == 0x80)
        n--;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n == len;
}

/* A notice to subject's inbox, best effort: the rating or the case has
 * changed either way, and GetRating shows it. */
static void notify(fxb_store *st, const char *subject, const char *kind, const char *title,
                   const char *body, const char *aid, int64_t now)
{
    fxb_err err;
    if (fxb_inbox_append(st, subject, kind, title, body, aid, now, NULL, &err) != FXB_OK)
        fxb_log(FXB_LOG_WARN, "rating: inbox notice %s for application %s failed: %s", kind, aid,
                err.reason);
}

/* --- keys ----------------------------------------------------------------- */

static char *rating_key(fxb_arena *a, const char *aid)
{
    return fxb_key_owned(a, "a", aid, "rating");
}

static char *case_key(fxb_arena *a, const char *cid)
{
    return fxb_key_owned(a, "f", cid, "followup");
}

/* Plain keys of a department or an item (the codes validated first). */
static char *dept_key(fxb_arena *a, const char *dept, const char *suffix)
{
    return dept_valid(dept) ? fxb_arena_printf(a, "fxb:dept:%s:%s", dept, suffix) : NULL;
}

static char *item_open_key(fxb_arena *a, const char *item)
{
    return item_valid(item) ? fxb_arena_printf(a, "fxb:item:%s:followups", item) : NULL;
}

static char *agg_key(fxb_arena *a, bool dept, const char *code)
{
    if (dept ? !dept_valid(code) : !item_valid(code))
        return NULL;
    return fxb_arena_printf(a, "fxb:ratings:%s:%s", dept ? "dept" : "item", code);
}

/* --- the invitation ------------------------------------------------------- */

void fxb_rating_invite(fxb_store *s, const char *aid, const char *subject, const char *item_name,
                       int64_t now_ms)
{
    if (s == NULL || aid == NULL || subject == NULL)
        return;
    char name[4 * ITEM_NAME_MAX + 1], body[FXB_INBOX_BODY_MAX + 1];
    if (!utf8_prefix(name, sizeof name, item_name != NULL ? item_name : ""))
        fxb_log(FXB_LOG_WARN, "rating: item name of application %s cut in the invitation", aid);
    snprintf(body, sizeof body, "您办理的“%s”已结束，欢迎对本次服务作出评价（好差评）。", name);
    fxb_err err;
    if (fxb_inbox_append(s, subject, KIND_INVITE, "请对本次政务服务作出评价", body, aid, now_ms,
                         NULL, &err) != FXB_OK)
        fxb_log(FXB_LOG_WARN, "rating: invitation for application %s failed: %s", aid, err.reason);
}

/* --- cases ---------------------------------------------------------------- */

typedef struct case_rec {
    const char *case_id, *aid, *subject, *dept, *item;
    const state_info *state;
    int64_t opened_at, call_back_due, called_back_at, rectify_due, rectified_at;
    const char *call_back_note, *rectification_note;
    int follow_up_level;
} case_rec;

/* A call-back or rectification is late when it was done, or is still not
 * done, after its due time. */
static bool call_back_late(const case_rec *c, int64_t now)
{
    return (c->called_back_at > 0 ? c->called_back_at : now) > c->call_back_due;
}

static bool rectify_late(const case_rec *c, int64_t now)
{
    return (c->rectified_at > 0 ? c->rectified_at : now) > c->rectify_due;
}

static bool case_late(const case_rec *c, int64_t now)
{
    return call_back_late(c, now) || rectify_late(c, now);
}

/* Fills *c from an HGETALL reply; false when the hash holds no case. */
static bool case_parse(fxb_arena *a, const char *cid, const redisReply *kv, case_rec *c)
{
    memset(c, 0, sizeof *c);
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY)
        return false;
    c->state = state_by_word(fxb_store_hash_get(kv, "state"));
    if (c->state == NULL)
        return false;
    c->case_id = fxb_arena_strdup(a, cid);
    c->aid = dup_or_empty(a, fxb_store_hash_get(kv, "application_id"));
    c->subject = dup_or_empty(a, fxb_store_hash_get(kv, "subject"));
    c->dept = dup_or_empty(a, fxb_store_hash_get(kv, "department"));
    c->item = dup_or_empty(a, fxb_store_hash_get(kv, "item_code"));
    c->call_back_note = dup_or_empty(a, fxb_store_hash_get(kv, "call_back_note"));
    c->rectification_note = dup_or_empty(a, fxb_store_hash_get(kv, "rectification_note"));
    if (c->case_id == NULL || c->aid == NULL || c->subject == NULL || c->dept == NULL ||
        c->item == NULL || c->call_back_note == NULL || c->rectification_note == NULL)
        return false;
    c->opened_at = fxb_store_hash_int(kv, "opened_at_ms");
    c->call_back_due = fxb_store_hash_int(kv, "call_back_due_ms");
    c->called_back_at = fxb_store_hash_int(kv, "called_back_at_ms");
    c->rectify_due = fxb_store_hash_int(kv, "rectify_due_ms");
    c->rectified_at = fxb_store_hash_int(kv, "rectified_at_ms");
    c->follow_up_level = (int)fxb_store_hash_int(kv, "follow_up_level");
    return true;
}

/* HGETALL of n cases in one pipeline; found[i] tells which parsed. */
static fxb_code cases_read(fxb_store *st, fxb_arena *a, char *const *cids, size_t n, case_rec *out,
                           bool *found, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    fxb_store_cmd *cmds = fxb_arena_calloc(a, n, sizeof *cmds);
    const char **argv = fxb_arena_calloc(a, 2 * n, sizeof *argv);
    redisReply **replies = fxb_arena_calloc(a, n, sizeof *replies);
    if (cmds == NULL || argv == NULL || replies == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        argv[2 * i] = "HGETALL";
        argv[2 * i + 1] = case_key(a, cids[i]);
        if (argv[2 * i + 1] == NULL)
            return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                               "a case id cannot form a key");
        cmds[i] = (fxb_store_cmd){.argc = 2, .argv = &argv[2 * i]};
    }
    if (fxb_store_pipeline(st, err, n, cmds, replies) != FXB_OK)
        return err->code;
    fxb_code rc = FXB_OK;
    for (size_t i = 0; i < n; i++) {
        if (replies[i] != NULL && replies[i]->type == REDIS_REPLY_ERROR && rc == FXB_OK)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY, "reading a case failed");
        found[i] = rc == FXB_OK && case_parse(a, cids[i], replies[i], &out[i]);
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    }
    return rc;
}

static void follow_up_of(const case_rec *c, int64_t now, Fxb__V1__FollowUp *m)
{
    m->case_id = (char *)c->case_id;
    m->application_id = (char *)c->aid;
    m->department = (char *)c->dept;
    m->item_code = (char *)c->item;
    m->state = c->state->state;
    m->opened_at_ms = c->opened_at;
    m->call_back_due_ms = c->call_back_due;
    m->called_back_at_ms = c->called_back_at;
    m->call_back_note = (char *)c->call_back_note;
    m->rectify_due_ms = c->rectify_due;
    m->rectified_at_ms = c->rectified_at;
    m->rectification_note = (char *)c->rectification_note;
    m->call_back_overdue = call_back_late(c, now);
    m->rectify_overdue = rectify_late(c, now);
    m->follow_up_level = (Fxb__V1__RatingLevel)c->follow_up_level;
}

/* A new FollowUp in the arena; false out of memory. */
static bool follow_up_new(fxb_arena *a, const case_rec *c, int64_t now, Fxb__V1__FollowUp **out)
{
    Fxb__V1__FollowUp *m = fxb_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return false;
    fxb__v1__follow_up__init(m);
    follow_up_of(c, now, m);
    *out = m;
    return true;
}

/* Adds field, increment pairs to the aggregates of the department and the
 * item (either may be "" = none). Best effort after the change they count:
 * logged on failure. */
static void count(fxb_store *st, fxb_arena *a, const char *dept, const char *item,
                  const char **pairs, size_t n_pairs)
{
    const char *codes[2] = {dept, item};
    for (int i = 0; i < 2; i++) {
        if (codes[i] == NULL || codes[i][0] == '\0')
            continue;
        const char *key = agg_key(a, i == 0, codes[i]);
        if (key == NULL)
            continue;
        fxb_err err;
        const char *keys[] = {key};
        redisReply *r =
            fxb_store_eval(st, &err, &count_script, 1, keys, (int)(2 * n_pairs), pairs, NULL);
        if (r == NULL)
            fxb_log(FXB_LOG_WARN, "rating: aggregate %s %s not updated: %s",
                    i == 0 ? "department" : "item", codes[i], err.reason);
        else
            freeReplyObject(r);
    }
}

/* --- request checks ------------------------------------------------------- */

static fxb_code level_check(fxb_ctx *ctx, Fxb__V1__RatingLevel level)
{
    if (level == FXB__V1__RATING_LEVEL__RATING_LEVEL_UNSPECIFIED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_LEVEL_REQUIRED, "请选择评价等级",
                            "level is required (1 very satisfied .. 5 very dissatisfied)");
    if (level < FXB__V1__RATING_LEVEL__RATING_LEVEL_VERY_SATISFIED ||
        level > FXB__V1__RATING_LEVEL__RATING_LEVEL_VERY_DISSATISFIED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_LEVEL_INVALID, "评价等级不正确",
                            "level must be 1..5");
    return FXB_OK;
}

static fxb_code comment_check(fxb_ctx *ctx, const char *comment)
{
    if (!text_valid(comment, 0, COMMENT_MAX))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_COMMENT,
                            "评价内容最多500个字，且不能含控制字符",
                            "comment must be 0..%d characters of UTF-8 text without control "
                            "characters",
                            COMMENT_MAX);
    return FXB_OK;
}

static fxb_code note_check(fxb_ctx *ctx, const char *note)
{
    if (!text_valid(note, 1, NOTE_MAX))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_NOTE,
                            "请填写说明（1至500个字，不含控制字符）",
                            "note must be 1..%d characters of UTF-8 text without control "
                            "characters",
                            NOTE_MAX);
    return FXB_OK;
}

static fxb_code aid_check(fxb_ctx *ctx, const char *aid)
{
    if (!fxb_app_id_valid(aid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, FXB_APP_ID_INVALID, "办件编号不正确",
                            "application_id must be %d characters of base64url", FXB_APP_ID_LEN);
    return FXB_OK;
}

static fxb_code case_id_check(fxb_ctx *ctx, const char *cid)
{
    if (!id_valid(cid, CASE_ID_LEN))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_CASE_ID_INVALID, "回访整改编号不正确",
                            "case_id must be %d characters of base64url", CASE_ID_LEN);
    return FXB_OK;
}

static fxb_code dept_check(fxb_ctx *ctx, const char *dept)
{
    if (!dept_valid(dept))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_DEPT_INVALID, "部门代码不正确",
                            "department must be 1..%d of [a-z0-9-]", DEPT_MAX);
    return FXB_OK;
}

/* --- reading a rating ----------------------------------------------------- */

/* The Rating of aid when subject rated it (with its case at now): NOT_FOUND
 * RATING_NOT_FOUND otherwise. */
static fxb_code rating_read(fxb_ctx *ctx, const char *aid, const char *subject, int64_t now,
                            Fxb__V1__Rating *out)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_err err;
    const char *rkey = rating_key(a, aid);
    if (rkey == NULL)
        return key_failed(ctx);
    redisReply *r = fxb_store_command(st, &err, "HGETALL %s", rkey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    const char *who = r->type == REDIS_REPLY_ARRAY ? fxb_store_hash_get(r, "subject") : NULL;
    if (who == NULL || strcmp(who, subject) != 0) {
        freeReplyObject(r);
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, R_RATING_NOT_FOUND, ZH_RATING_NOT_FOUND,
                            "no rating of this application by the caller");
    }
    Fxb__V1__RatingDimensions *dims = fxb_arena_alloc(a, sizeof *dims);
    if (dims == NULL) {
        freeReplyObject(r);
        return out_of_memory(ctx);
    }
    fxb__v1__rating_dimensions__init(dims);
    dims->attitude = (uint32_t)fxb_store_hash_int(r, "attitude");
    dims->efficiency = (uint32_t)fxb_store_hash_int(r, "efficiency");
    dims->convenience = (uint32_t)fxb_store_hash_int(r, "convenience");
    dims->transparency = (uint32_t)fxb_store_hash_int(r, "transparency");
    out->application_id = fxb_arena_strdup(a, aid);
    out->level = (Fxb__V1__RatingLevel)fxb_store_hash_int(r, "level");
    out->dimensions = dims;
    out->comment = (char *)dup_or_empty(a, fxb_store_hash_get(r, "comment"));
    out->rated_at_ms = fxb_store_hash_int(r, "rated_at_ms");
    const char *rn = fxb_store_hash_get(r, "real_name");
    out->real_name = rn != NULL && strcmp(rn, "1") == 0;
    const char *cid = dup_or_empty(a, fxb_store_hash_get(r, "case_id"));
    freeReplyObject(r);
    if (out->application_id == NULL || out->comment == NULL || cid == NULL)
        return out_of_memory(ctx);
    if (cid[0] == '\0')
        return FXB_OK;
    case_rec c;
    bool found = false;
    char *cids[] = {(char *)cid};
    if (cases_read(st, a, cids, 1, &c, &found, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (found && !follow_up_new(a, &c, now, &out->follow_up))
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- RateApplication ------------------------------------------------------ */

/* The case a bad real-name rating opens, with its due dates. */
typedef struct new_case {
    char id[FXB_TOKEN_ID_MAX + 1];
    int64_t call_back_due, rectify_due;
} new_case;

static fxb_code due_dates(fxb_ctx *ctx, int64_t now, new_case *nc)
{
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_err err;
    uint32_t today = fxb_calendar_date_of(now), call_back, rectify;
    if (fxb_calendar_add_working_days(st, today, FOLLOW_UP_CALLBACK_DAYS, &call_back, &err) !=
            FXB_OK ||
        fxb_calendar_add_working_days(st, today, FOLLOW_UP_RECTIFY_DAYS, &rectify, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    nc->call_back_due = fxb_calendar_end_of_day_ms(call_back);
    nc->rectify_due = fxb_calendar_end_of_day_ms(rectify);
    if (nc->call_back_due < 0 || nc->rectify_due < 0)
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "CALENDAR_ERROR", ZH_BUSY,
                            "a due date fell outside the calendar");
    return FXB_OK;
}

static void delete_key(fxb_store *st, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(st, &err, "DEL %s", key);
    if (r != NULL)
        freeReplyObject(r);
}

/* Lists a new case for its department and item. Logged on failure: the
 * rating that names it is written already. */
static void case_index(fxb_ctx *ctx, const char *dept, const char *item, const new_case *nc)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    char due[24];
    text_of(due, sizeof due, nc->call_back_due);
    const char *keys[2] = {dept_key(a, dept, "followups"), item_open_key(a, item)};
    for (int i = 0; i < 2; i++) {
        if (keys[i] == NULL)
            continue;
        fxb_err err;
        const char *argv[] = {"ZADD", keys[i], due, nc->id};
        redisReply *r = fxb_store_commandv(fxb_ctx_store(ctx), &err, 4, argv, NULL);
        if (r == NULL)
            fxb_log(FXB_LOG_WARN, "rating: case %s not indexed: %s", nc->id, err.reason);
        else
            freeReplyObject(r);
    }
}

static fxb_code rate_application(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RateApplicationRequest *req = (const Fxb__V1__RateApplicationRequest *)req_msg;
    Fxb__V1__Rating *resp = (Fxb__V1__Rating *)resp_msg;
    const fxb_caller *who = fxb_ctx_caller(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;

    fxb_code rc = level_check(ctx, req->level);
    const Fxb__V1__RatingDimensions *d = req->dimensions;
    uint32_t dims[4] = {0, 0, 0, 0};
    if (d != NULL) {
        dims[0] = d->attitude;
        dims[1] = d->efficiency;
        dims[2] = d->convenience;
        dims[3] = d->transparency;
    }
    static const char *const dim_names[4] = {"attitude", "efficiency", "convenience",
                                             "transparency"};
    for (int i = 0; rc == FXB_OK && i < 4; i++)
        if (dims[i] > DIMENSION_MAX)
            rc = fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_DIMENSION, "各项评分须为1至5分",
                              "dimensions.%s must be 1..%d (0 = not given)", dim_names[i],
                              DIMENSION_MAX);
    if (rc == FXB_OK)
        rc = comment_check(ctx, req->comment);
    if (rc == FXB_OK)
        rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;

    /* the application: the subject's own, in the grant's items, ended */
    Fxb__V1__Application *app = NULL;
    if (fxb_app_read(st, a, req->application_id, false, now, &app, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (app->subject_id == NULL || strcmp(app->subject_id, who->account_id) != 0)
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, FXB_APP_NOT_FOUND, ZH_APP_NOT_FOUND,
                            "no such application of the caller");
    const char *dept = app->department ? app->department : "";
    const char *item = app->item_code ? app->item_code : "";
    rc = fxb_ctx_require_item(ctx, item);
    if (rc != FXB_OK)
        return rc;
    if (!fxb_app_status_ended(app->status))
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_NOT_ENDED, "办件办结后才能评价",
                            "the application has not ended yet");

    /* a real-name bad rating opens a case; its due dates first, so that a
     * calendar without data fails the call before anything is written */
    bool real_name = who->level >= FXB_LEVEL_REAL_NAME;
    bool bad = req->level >= FXB__V1__RATING_LEVEL__RATING_LEVEL_DISSATISFIED;
    bool open_case = real_name && bad;
    if (open_case && !dept_valid(dept)) {
        fxb_log(FXB_LOG_WARN, "rating: application %s has no department: no case opened",
                req->application_id);
        open_case = false;
    }
    new_case nc;
    memset(&nc, 0, sizeof nc);
    char now_text[24], level[12], dim_text[4][12], cb_due[24], rf_due[24];
    text_of(now_text, sizeof now_text, now);
    snprintf(level, sizeof level, "%d", (int)req->level);
    for (int i = 0; i < 4; i++)
        snprintf(dim_text[i], sizeof dim_text[i], "%u", dims[i]);
    const char *ckey = NULL;
    if (open_case) {
        rc = due_dates(ctx, now, &nc);
        if (rc != FXB_OK)
            return rc;
        if (fxb_token_new_id(nc.id, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        ckey = case_key(a, nc.id);
        if (ckey == NULL)
            return key_failed(ctx);
        text_of(cb_due, sizeof cb_due, nc.call_back_due);
        text_of(rf_due, sizeof rf_due, nc.rectify_due);
        const char *case_fields[][2] = {
            {"application_id", req->application_id},
            {"subject", who->account_id},
            {"department", dept},
            {"item_code", item},
            {"state", "open"},
            {"opened_at_ms", now_text},
            {"call_back_due_ms", cb_due},
            {"rectify_due_ms", rf_due},
        };
        const char *ckeys[] = {ckey};
        redisReply *cr = fxb_store_eval(st, &err, &case_create_script, 1, ckeys,
                                        (int)(2 * (sizeof case_fields / sizeof case_fields[0])),
                                        &case_fields[0][0], NULL);
        if (cr == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        freeReplyObject(cr);
    }

    /* the rating: once */
    const char *rkey = rating_key(a, req->application_id);
    const char *akey = fxb_app_key(a, req->application_id, "app");
    if (rkey == NULL || akey == NULL) {
        if (ckey != NULL)
            delete_key(st, ckey);
        return key_failed(ctx);
    }
    const char *comment = req->comment ? req->comment : "";
    const char *fields[][2] = {
        {"subject", who->account_id},
        {"rated_by", who->delegated ? who->agent_id : who->account_id},
        {"level", level},
        {"attitude", dim_text[0]},
        {"efficiency", dim_text[1]},
        {"convenience", dim_text[2]},
        {"transparency", dim_text[3]},
        {"comment", comment},
        {"rated_at_ms", now_text},
        {"real_name", real_name ? "1" : "0"},
        {"department", dept},
        {"item_code", item},
        {"case_id", open_case ? nc.id : ""},
    };
    const char *rkeys[] = {rkey, akey};
    redisReply *r =
        fxb_store_eval(st, &err, &rate_script, 2, rkeys,
                       (int)(2 * (sizeof fields / sizeof fields[0])), &fields[0][0], NULL);
    if (r == NULL) {
        if (ckey != NULL)
            delete_key(st, ckey);
        if (strcmp(err.reason, R_ALREADY_RATED) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", "该办件已评价，每件只能评价一次");
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);

    /* from here on the rating stands: what follows is logged on failure */
    if (open_case)
        case_index(ctx, dept, item, &nc);
    const char *pairs[2 * 12];
    size_t n = 0;
    char level_field[16];
    snprintf(level_field, sizeof level_field, "level_%d", (int)req->level);
    pairs[n++] = "total";
    pairs[n++] = "1";
    pairs[n++] = level_field;
    pairs[n++] = "1";
    static const char *const sum_fields[4] = {"attitude_sum", "efficiency_sum", "convenience_sum",
                                              "transparency_sum"};
    static const char *const n_fields[4] = {"attitude_n", "efficiency_n", "convenience_n",
                                            "transparency_n"};
    for (int i = 0; i < 4; i++) {
        if (dims[i] == 0)
            continue;
        pairs[n++] = sum_fields[i];
        pairs[n++] = dim_text[i];
        pairs[n++] = n_fields[i];
        pairs[n++] = "1";
    }
    if (open_case) {
        pairs[n++] = "follow_ups_opened";
        pairs[n++] = "1";
    }
    count(st, a, dept, item, pairs, n / 2);
    if (open_case)
        notify(st, who->account_id, KIND_CASE, "您的差评已转交办理部门",
               "感谢您的评价。办理部门将在一个工作日内回访核实，并将整改情况反馈给您。",
               req->application_id, now);

    /* the answer, as stored */
    Fxb__V1__RatingDimensions *out_dims = fxb_arena_alloc(a, sizeof *out_dims);
    if (out_dims == NULL)
        return out_of_memory(ctx);
    fxb__v1__rating_dimensions__init(out_dims);
    out_dims->attitude = dims[0];
    out_dims->efficiency = dims[1];
    out_dims->convenience = dims[2];
    out_dims->transparency = dims[3];
    resp->application_id = req->application_id;
    resp->level = req->level;
    resp->dimensions = out_dims;
    resp->comment = (char *)comment;
    resp->rated_at_ms = now;
    resp->real_name = real_name;
    if (open_case) {
        case_rec c = {.case_id = nc.id,
                      .aid = req->application_id,
                      .subject = who->account_id,
                      .dept = dept,
                      .item = item,
                      .state = &states[0],
                      .opened_at = now,
                      .call_back_due = nc.call_back_due,
                      .rectify_due = nc.rectify_due,
                      .call_back_note = "",
                      .rectification_note = ""};
        c.case_id = fxb_arena_strdup(a, nc.id);
        if (c.case_id == NULL || !follow_up_new(a, &c, now, &resp->follow_up))
            return out_of_memory(ctx);
    }
    return FXB_OK;
}

/* --- GetRating / RateFollowUp --------------------------------------------- */

static fxb_code get_rating(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetRatingRequest *req = (const Fxb__V1__GetRatingRequest *)req_msg;
    fxb_code rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;
    return rating_read(ctx, req->application_id, fxb_ctx_caller(ctx)->account_id, fxb_wall_ms(),
                       (Fxb__V1__Rating *)resp_msg);
}

static fxb_code rate_follow_up(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RateFollowUpRequest *req = (const Fxb__V1__RateFollowUpRequest *)req_msg;
    const char *me = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;
    fxb_code rc = level_check(ctx, req->level);
    if (rc == FXB_OK)
        rc = comment_check(ctx, req->comment);
    if (rc == FXB_OK)
        rc = aid_check(ctx, req->application_id);
    if (rc != FXB_OK)
        return rc;

    const char *rkey = rating_key(a, req->application_id);
    if (rkey == NULL)
        return key_failed(ctx);
    redisReply *r = fxb_store_command(st, &err, "HMGET %s subject case_id", rkey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool mine = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, me) == 0;
    const char *cid = mine && r->element[1]->type == REDIS_REPLY_STRING
                          ? fxb_arena_strdup(a, r->element[1]->str)
                          : "";
    freeReplyObject(r);
    if (!mine)
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, R_RATING_NOT_FOUND, ZH_RATING_NOT_FOUND,
                            "no rating of this application by the caller");
    if (cid == NULL)
        return out_of_memory(ctx);
    if (cid[0] == '\0')
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, R_CASE_NOT_FOUND, "该评价没有回访整改记录",
                            "the rating opened no follow-up case");
    const char *ckey = case_key(a, cid);
    if (ckey == NULL)
        return key_failed(ctx);
    char level[12], now_text[24];
    snprintf(level, sizeof level, "%d", (int)req->level);
    text_of(now_text, sizeof now_text, now);
    const char *keys[] = {ckey};
    const char *args[] = {me, level, req->comment ? req->comment : "", now_text};
    r = fxb_store_eval(st, &err, &rate_follow_up_script, 1, keys, 4, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, R_NOT_CLOSED) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s",
                     "整改完成并反馈后才能评价整改结果");
        else if (strcmp(err.reason, R_ALREADY_RATED) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", "整改结果已评价，只能评价一次");
        else if (strcmp(err.reason, R_CASE_NOT_FOUND) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", ZH_CASE_NOT_FOUND);
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);
    return rating_read(ctx, req->application_id, me, now, (Fxb__V1__Rating *)resp_msg);
}

/* --- officers: ListFollowUps ---------------------------------------------- */

/* Listing order: overdue first, then the earliest call-back due, then id. */
typedef struct listed {
    const case_rec *c;
    bool late;
} listed;

static int listed_cmp(const listed *x, const listed *y)
{
    if (x->late != y->late)
        return x->late ? -1 : 1;
    if (x->c->call_back_due != y->c->call_back_due)
        return x->c->call_back_due < y->c->call_back_due ? -1 : 1;
    return strcmp(x->c->case_id, y->c->case_id);
}

static int by_listing_order(const void *p, const void *q)
{
    return listed_cmp(p, q);
}

/* A page token: "<late 0|1>.<call_back_due_ms>.<case id>", the last case
 * of the page before. */
static bool page_token_parse(const char *tok, bool *late, int64_t *due, const char **cid)
{
    size_t len = strnlen(tok, PAGE_TOKEN_MAX + 1);
    if (len > PAGE_TOKEN_MAX || len < 4 || (tok[0] != '0' && tok[0] != '1') || tok[1] != '.')
        return false;
    const char *p = tok + 2;
    const char *dot = strchr(p, '.');
    if (dot == NULL || dot == p || dot - p > 18)
        return false;
    for (const char *q = p; q < dot; q++)
        if (*q < '0' || *q > '9')
            return false;
    if (!id_valid(dot + 1, CASE_ID_LEN))
        return false;
    *late = tok[0] == '1';
    *due = strtoll(p, NULL, 10);
    *cid = dot + 1;
    return true;
}

static bool state_wanted(Fxb__V1__FollowUpState want, const case_rec *c)
{
    if (want == FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_UNSPECIFIED)
        return c->state->state != FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED;
    return c->state->state == want;
}

/* The ids of a zset (arena strings): ascending by score, or the newest
 * first when newest. */
static fxb_code zset_ids(fxb_store *st, fxb_arena *a, const char *key, bool newest, size_t max,
                         char ***ids, size_t *n, fxb_err *err)
{
    *n = 0;
    char stop[24];
    snprintf(stop, sizeof stop, "%zu", max - 1);
    const char *argv[] = {newest ? "ZREVRANGE" : "ZRANGE", key, "0", stop};
    redisReply *r = fxb_store_commandv(st, err, 4, argv, NULL);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                           "ZRANGE of a case index answered in an unexpected shape");
    }
    *ids = fxb_arena_calloc(a, r->elements ? r->elements : 1, sizeof **ids);
    if (*ids == NULL) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || !id_valid(e->str, CASE_ID_LEN))
            continue;
        (*ids)[*n] = fxb_arena_strdup(a, e->str);
        if ((*ids)[*n] == NULL) {
            freeReplyObject(r);
            return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                               "out of memory");
        }
        (*n)++;
    }
    freeReplyObject(r);
    return FXB_OK;
}

static fxb_code list_follow_ups(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListFollowUpsRequest *req = (const Fxb__V1__ListFollowUpsRequest *)req_msg;
    Fxb__V1__ListFollowUpsResponse *resp = (Fxb__V1__ListFollowUpsResponse *)resp_msg;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;
    fxb_code rc = dept_check(ctx, req->department);
    if (rc != FXB_OK)
        return rc;
    if (req->state < FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_UNSPECIFIED ||
        req->state > FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_STATE_INVALID, "状态不正确",
                            "state must be 0..3");
    if (req->page_size > PAGE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_PAGE_SIZE, "每页条数最多100",
                            "page_size must be 1..%d (0 = %d)", PAGE_MAX, PAGE_DEFAULT);
    size_t page = req->page_size == 0 ? PAGE_DEFAULT : req->page_size;
    const char *tok = req->page_token ? req->page_token : "";
    listed cursor = {0};
    case_rec cursor_case;
    memset(&cursor_case, 0, sizeof cursor_case);
    bool have_cursor = tok[0] != '\0';
    if (have_cursor) {
        if (!page_token_parse(tok, &cursor.late, &cursor_case.call_back_due, &cursor_case.case_id))
            return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_PAGE_TOKEN,
                                "分页标记无效，请从第一页重新查询",
                                "page_token is not one this method returned");
        cursor.c = &cursor_case;
    }

    bool closed = req->state == FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED;
    const char *key = dept_key(a, req->department, closed ? "followups:closed" : "followups");
    if (key == NULL)
        return key_failed(ctx);
    char **ids = NULL;
    size_t n = 0;
    if (zset_ids(st, a, key, closed, LIST_READ_MAX, &ids, &n, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    case_rec *recs = fxb_arena_calloc(a, n ? n : 1, sizeof *recs);
    bool *found = fxb_arena_calloc(a, n ? n : 1, sizeof *found);
    listed *list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    if (recs == NULL || found == NULL || list == NULL)
        return out_of_memory(ctx);
    if (cases_read(st, a, ids, n, recs, found, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        const case_rec *c = &recs[i];
        if (!found[i] || strcmp(c->dept, req->department) != 0 || !state_wanted(req->state, c))
            continue;
        bool late = case_late(c, now);
        if (req->overdue_only && !late)
            continue;
        list[got].c = c;
        list[got].late = late;
        got++;
    }
    qsort(list, got, sizeof *list, by_listing_order);

    Fxb__V1__FollowUp **out = fxb_arena_calloc(a, page, sizeof *out);
    if (out == NULL)
        return out_of_memory(ctx);
    size_t m = 0;
    bool more = false;
    for (size_t i = 0; i < got; i++) {
        if (have_cursor && listed_cmp(&list[i], &cursor) <= 0)
            continue;
        if (m == page) {
            more = true;
            break;
        }
        if (!follow_up_new(a, list[i].c, now, &out[m]))
            return out_of_memory(ctx);
        m++;
    }
    resp->follow_ups = out;
    resp->n_follow_ups = m;
    resp->next_page_token = "";
    if (more) {
        const Fxb__V1__FollowUp *last = out[m - 1];
        resp->next_page_token = fxb_arena_printf(
            a, "%c.%" PRId64 ".%s", last->call_back_overdue || last->rectify_overdue ? '1' : '0',
            last->call_back_due_ms, last->case_id);
        if (resp->next_page_token == NULL)
            return out_of_memory(ctx);
    }
    return FXB_OK;
}

/* --- officers: RecordCallBack / RecordRectification ----------------------- */

/* Runs a case transition script for the officer; *c is the case after it. */
static fxb_code case_transition(fxb_ctx *ctx, fxb_script *script, const char *dept, const char *cid,
                                const char *note, int64_t now, case_rec *c)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_err err;
    fxb_code rc = dept_check(ctx, dept);
    if (rc == FXB_OK)
        rc = case_id_check(ctx, cid);
    if (rc == FXB_OK)
        rc = note_check(ctx, note);
    if (rc != FXB_OK)
        return rc;
    const char *ckey = case_key(a, cid);
    if (ckey == NULL)
        return key_failed(ctx);
    char now_text[24];
    text_of(now_text, sizeof now_text, now);
    const char *keys[] = {ckey};
    const char *args[] = {dept, now_text, note, fxb_ctx_caller(ctx)->account_id};
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, script, 1, keys, 4, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, R_CASE_NOT_FOUND) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", ZH_CASE_NOT_FOUND);
        else if (strcmp(err.reason, R_DEPT_MISMATCH) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", "无权办理其他部门的事项");
        else if (strcmp(err.reason, R_CALL_BACK_FIRST) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s",
                     "请先完成回访核实，再登记整改情况");
        else if (strcmp(err.reason, R_CASE_STATE) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", "该记录当前状态不能进行此操作");
        return fxb_ctx_fail_err(ctx, &err);
    }
    bool ok = case_parse(a, cid, r, c);
    freeReplyObject(r);
    if (!ok)
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                            "the case answered in an unexpected shape");
    return FXB_OK;
}

/* The audit record of an officer's act on a case. */
static fxb_code audit_act(fxb_ctx *ctx, const case_rec *c, const char *action, int64_t now)
{
    fxb_err err;
    const char *why =
        fxb_arena_printf(fxb_ctx_arena(ctx), "case %s application %s", c->case_id, c->aid);
    if (why == NULL)
        return out_of_memory(ctx);
    if (fxb_audit_append(fxb_ctx_store(ctx), fxb_ctx_caller(ctx)->account_id, c->subject, action,
                         why, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static fxb_code record_call_back(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RecordCallBackRequest *req = (const Fxb__V1__RecordCallBackRequest *)req_msg;
    int64_t now = fxb_wall_ms();
    case_rec c;
    fxb_code rc =
        case_transition(ctx, &call_back_script, req->department, req->case_id, req->note, now, &c);
    if (rc == FXB_OK)
        rc = audit_act(ctx, &c, "rating.call_back", now);
    if (rc != FXB_OK)
        return rc;
    follow_up_of(&c, now, (Fxb__V1__FollowUp *)resp_msg);
    return FXB_OK;
}

/* The feedback notice: the note and the invitation to rate the follow-up,
 * the note cut (at a character) where the inbox's bound requires; GetRating
 * shows it whole. */
static void send_feedback(fxb_ctx *ctx, const case_rec *c, int64_t now)
{
    static const char prefix[] = "整改情况：";
    static const char more[] = "……（详见评价详情）";
    char note[FXB_INBOX_BODY_MAX + 1 - (sizeof prefix - 1) - (sizeof more - 1)];
    char body[FXB_INBOX_BODY_MAX + 1];
    bool whole = utf8_prefix(note, sizeof note, c->rectification_note);
    snprintf(body, sizeof body, "%s%s%s", prefix, note, whole ? "" : more);
    notify(fxb_ctx_store(ctx), c->subject, KIND_FOLLOWUP, "您的差评已整改，请对整改结果评价", body,
           c->aid, now);
}

static fxb_code record_rectification(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                     ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RecordRectificationRequest *req =
        (const Fxb__V1__RecordRectificationRequest *)req_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;
    case_rec c;
    fxb_code rc =
        case_transition(ctx, &rectify_script, req->department, req->case_id, req->note, now, &c);
    if (rc != FXB_OK)
        return rc;

    /* the indexes and the counters follow (only this call closed it) */
    const char *keys[] = {dept_key(a, c.dept, "followups"),
                          dept_key(a, c.dept, "followups:closed")};
    char now_text[24], keep[16];
    text_of(now_text, sizeof now_text, now);
    snprintf(keep, sizeof keep, "%d", CLOSED_KEEP);
    const char *args[] = {c.case_id, now_text, keep};
    if (keys[0] != NULL && keys[1] != NULL) {
        redisReply *r = fxb_store_eval(st, &err, &close_index_script, 2, keys, 3, args, NULL);
        if (r == NULL)
            fxb_log(FXB_LOG_WARN, "rating: case %s not moved to the closed index: %s", c.case_id,
                    err.reason);
        else
            freeReplyObject(r);
    }
    const char *ikey = item_open_key(a, c.item);
    if (ikey != NULL) {
        const char *argv[] = {"ZREM", ikey, c.case_id};
        redisReply *r = fxb_store_commandv(st, &err, 3, argv, NULL);
        if (r == NULL)
            fxb_log(FXB_LOG_WARN, "rating: case %s not removed from the item index: %s", c.case_id,
                    err.reason);
        else
            freeReplyObject(r);
    }
    const char *pairs[] = {"follow_ups_closed", "1", "follow_ups_closed_late", "1"};
    count(st, a, c.dept, c.item, pairs, case_late(&c, now) ? 2 : 1);
    send_feedback(ctx, &c, now);

    rc = audit_act(ctx, &c, "rating.rectify", now);
    if (rc != FXB_OK)
        return rc;
    follow_up_of(&c, now, (Fxb__V1__FollowUp *)resp_msg);
    return FXB_OK;
}

/* --- GetPublicResults ----------------------------------------------------- */

/* Open cases of an index whose call-back or rectification is late at now
 * (the first OPEN_SCAN_MAX by call-back due, the oldest). */
static fxb_code open_late(fxb_store *st, fxb_arena *a, const char *key, int64_t now, uint64_t *late,
                          fxb_err *err)
{
    *late = 0;
    char **ids = NULL;
    size_t n = 0;
    if (zset_ids(st, a, key, false, OPEN_SCAN_MAX, &ids, &n, err) != FXB_OK)
        return err->code;
    case_rec *recs = fxb_arena_calloc(a, n ? n : 1, sizeof *recs);
    bool *found = fxb_arena_calloc(a, n ? n : 1, sizeof *found);
    if (recs == NULL || found == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    if (cases_read(st, a, ids, n, recs, found, err) != FXB_OK)
        return err->code;
    for (size_t i = 0; i < n; i++)
        if (found[i] && recs[i].state->state != FXB__V1__FOLLOW_UP_STATE__FOLLOW_UP_STATE_CLOSED &&
            case_late(&recs[i], now))
            (*late)++;
    return FXB_OK;
}

static uint64_t count_of(const redisReply *kv, const char *name)
{
    int64_t v = fxb_store_hash_int(kv, name);
    return v > 0 ? (uint64_t)v : 0;
}

static double mean_of(const redisReply *kv, const char *dim)
{
    char sum[32], n[32];
    snprintf(sum, sizeof sum, "%s_sum", dim);
    snprintf(n, sizeof n, "%s_n", dim);
    uint64_t s = count_of(kv, sum), k = count_of(kv, n);
    return k > 0 ? (double)s / (double)k : 0.0;
}

static fxb_code get_public_results(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetPublicResultsRequest *req = (const Fxb__V1__GetPublicResultsRequest *)req_msg;
    Fxb__V1__PublicResults *resp = (Fxb__V1__PublicResults *)resp_msg;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    int64_t now = fxb_wall_ms();
    fxb_err err;
    const char *dept = req->department ? req->department : "";
    const char *item = req->item_code ? req->item_code : "";
    if ((dept[0] == '\0') == (item[0] == '\0'))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_SCOPE_REQUIRED,
                            "请指定部门或事项（二选一）",
                            "exactly one of department and item_code is required");
    bool by_dept = dept[0] != '\0';
    if (by_dept && !dept_valid(dept))
        return dept_check(ctx, dept);
    if (!by_dept && !item_valid(item))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_ITEM_INVALID, "事项编码不正确",
                            "item_code must be 1..%d of [A-Za-z0-9._-]", ITEM_CODE_MAX);

    const char *akey = agg_key(a, by_dept, by_dept ? dept : item);
    const char *okey = by_dept ? dept_key(a, dept, "followups") : item_open_key(a, item);
    uint64_t *by_level = fxb_arena_calloc(a, 5, sizeof *by_level);
    if (by_level == NULL)
        return out_of_memory(ctx);
    if (akey == NULL || okey == NULL)
        return key_failed(ctx);
    redisReply *r = fxb_store_command(st, &err, "HGETALL %s", akey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                            "HGETALL of the aggregates answered in an unexpected shape");
    }
    resp->department = (char *)dept;
    resp->item_code = (char *)item;
    resp->total = count_of(r, "total");
    uint64_t satisfied = 0;
    for (int i = 0; i < 5; i++) {
        char f[16];
        snprintf(f, sizeof f, "level_%d", i + 1);
        by_level[i] = count_of(r, f);
        if (i < 3)
            satisfied += by_level[i];
    }
    resp->by_level = by_level;
    resp->n_by_level = 5;
    resp->satisfaction_percent =
        resp->total > 0 ? 100.0 * (double)satisfied / (double)resp->total : 0.0;
    resp->mean_attitude = mean_of(r, "attitude");
    resp->mean_efficiency = mean_of(r, "efficiency");
    resp->mean_convenience = mean_of(r, "convenience");
    resp->mean_transparency = mean_of(r, "transparency");
    resp->follow_ups_opened = count_of(r, "follow_ups_opened");
    resp->follow_ups_closed = count_of(r, "follow_ups_closed");
    uint64_t closed_late = count_of(r, "follow_ups_closed_late");
    freeReplyObject(r);
    uint64_t open_now = 0;
    if (open_late(st, a, okey, now, &open_now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    resp->follow_ups_overdue = closed_late + open_now;
    return FXB_OK;
}

/* --- method table --------------------------------------------------------- */

#define APPLICANT                                                                                  \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN                                                               \
    }
#define APPLICANT_DELEGABLE                                                                        \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .delegable = true, .scope = FXB_CAP_FILING_SUBMIT            \
    }
#define OFFICER                                                                                    \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .roles = FXB_ROLE_OFFICER | FXB_ROLE_ADMIN,                  \
        .dept_field = "department"                                                                 \
    }
#define PUBLIC                                                                                     \
    {                                                                                              \
        .kind = FXB_ACCESS_PUBLIC                                                                  \
    }

#define UNARY(name, fn, req, resp, access_rule, max)                                               \
    {                                                                                              \
        .path = SVC name, .request = &req##__descriptor, .response = &resp##__descriptor,          \
        .unary = fn, .access = access_rule, .limits = {                                            \
            .max_request_bytes = (max)                                                             \
        }                                                                                          \
    }

static const fxb_method methods[] = {
    UNARY("RateApplication", rate_application, fxb__v1__rate_application_request, fxb__v1__rating,
          APPLICANT_DELEGABLE, TEXT_REQUEST),
    UNARY("GetRating", get_rating, fxb__v1__get_rating_request, fxb__v1__rating, APPLICANT,
          SMALL_REQUEST),
    UNARY("RateFollowUp", rate_follow_up, fxb__v1__rate_follow_up_request, fxb__v1__rating,
          APPLICANT, TEXT_REQUEST),
    UNARY("ListFollowUps", list_follow_ups, fxb__v1__list_follow_ups_request,
          fxb__v1__list_follow_ups_response, OFFICER, SMALL_REQUEST),
    UNARY("RecordCallBack", record_call_back, fxb__v1__record_call_back_request, fxb__v1__follow_up,
          OFFICER, TEXT_REQUEST),
    UNARY("RecordRectification", record_rectification, fxb__v1__record_rectification_request,
          fxb__v1__follow_up, OFFICER, TEXT_REQUEST),
    UNARY("GetPublicResults", get_public_results, fxb__v1__get_public_results_request,
          fxb__v1__public_results, PUBLIC, SMALL_REQUEST),
};

const fxb_service fxb_rating_service = {
    .name = "fxb.v1.RatingService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
