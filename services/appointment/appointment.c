/* AppointmentService handlers (regulation art. 26, 27): hall visits booked
 * in half-hour slots of a department's hall on working days, with part of
 * each slot kept for the green channel (绿色通道).
 *
 * Keys (store/keys.h conventions; <t>:<subject> is u:<account id>, or
 * e:<eid> for an enterprise; the subject is the caller, or the principal of
 * a delegated caller):
 *   {hall:<dept>}:slots:<yyyymmdd>   hash, the department's bookings that
 *                                    day: field "HHMM" (slot start, China
 *                                    time) = general places taken,
 *                                    "HHMM:green" = green-channel places
 *                                    taken; expires a day after that day
 *   {<t>:<subject>}:appts            sorted set: every appointment id of the
 *                                    subject, score slot_start_ms (the
 *                                    KEEP_MAX latest, KEEP_MS after the slot)
 *   {<t>:<subject>}:appts:booked     sorted set: booked, not cancelled,
 *                                    upcoming ids, score slot_start_ms (the
 *                                    limit of UPCOMING_MAX counts these)
 *   {<t>:<subject>}:appts:days       hash "<yyyymmdd>:<item code>" = id of
 *                                    the booked appointment for that item
 *                                    that day (one per item per day); fields
 *                                    of past days are dropped
 *   {<t>:<subject>}:appt:<id>        hash, one per appointment: item_code,
 *                                    item_name, category, department,
 *                                    department_name, date, slot_start_ms,
 *                                    slot_end_ms, green "1"/"0",
 *                                    green_reason, pool "general"|"green"
 *                                    (the capacity it holds), state
 *                                    booked|cancelled, booked_at_ms,
 *                                    cancelled_at_ms, application_id, agent
 *                                    (the agent's account id when booked by
 *                                    one, else ""); expires KEEP_MS after
 *                                    the slot
 *   fxb:green:<account id>           hash soldier "1" / disabled "1": the
 *                                    green-channel status departments report
 *                                    (written by `fxb-admin green set`,
 *                                    services/appointment/green_admin.c)
 *   {u:<id>}:identity                field birth_date (read: 65 or older by
 *                                    China date is elderly)
 * A department's counters and a subject's keys live in different slots, so
 * a booking is two single-slot scripts: the place in the slot first (its
 * capacity is the bound), then the subject's indexes (limits, duplicate)
 * and record; the place is given back when the second step fails. A
 * cancellation marks the record first, then gives the place back. Every
 * time comes from fxb_wall_ms (the development clock applies), never Redis
 * TIME; expiries are relative (PEXPIRE) for the same reason. */
#include "services/appointment/appointment.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/idnumber.h"
#include "auth/scope.h"
#include "auth/token.h"
#include "fxb/v1/appointment.pb-c.h"
#include "fxb/v1/catalog.pb-c.h"
#include "server/log.h"
#include "services/calendar/calendar.h"
#include "services/catalog/catalog.h"
#include "services/identity/identity.h"
#include "store/inbox.h"
#include "store/keys.h"
#include "store/store.h"

#define SVC "/fxb.v1.AppointmentService/"

/* Capacity of one slot of one department's hall: GENERAL_CAPACITY places
 * anyone may book, GREEN_CAPACITY more kept for the green channel. An
 * eligible applicant who asks for the green channel takes a green place,
 * or a general one when the green places are gone. */
#define GENERAL_CAPACITY 6
#define GREEN_CAPACITY   2
#define SLOT_MINUTES     30
#define BOOK_AHEAD_DAYS  10 /* working days after today a slot may lie */
#define DAYS_DEFAULT     5  /* ListSlots working days */
#define DAYS_MAX         10
#define UPCOMING_MAX     3 /* booked upcoming appointments per subject */
#define ELDERLY_AGE      65
#define KEEP_MAX         100                       /* appointments a subject's list keeps */
#define KEEP_MS          (90LL * 24 * 3600 * 1000) /* after the slot ends */
#define HALL_KEEP_MS     (24LL * 3600 * 1000)      /* a day's counters after the day */
#define APP_ID_MAX       64
#define WALK_MAX         400 /* calendar days a walk over the calendar may take */
#define DAY_MS           (24LL * 3600 * 1000)
#define MINUTE_MS        (60LL * 1000)
#define SMALL_REQUEST    256

#define POOL_GENERAL "general"
#define POOL_GREEN   "green"
#define STATE_BOOKED "booked"
#define STATE_CANCEL "cancelled"
#define GREEN_PREFIX "fxb:green:"

#define REASON_ELDERLY  "elderly"
#define REASON_DISABLED "disabled"
#define REASON_SOLDIER  "soldier"

/* reasons */
#define R_ITEM_CODE      "ITEM_CODE_INVALID"
#define R_NOT_AVAILABLE  "APPOINTMENT_NOT_AVAILABLE"
#define R_DAYS           "DAYS_INVALID"
#define R_FROM_DATE      "FROM_DATE_INVALID"
#define R_SLOT           "SLOT_INVALID"
#define R_SLOT_TOO_FAR   "SLOT_TOO_FAR"
#define R_SLOT_FULL      "SLOT_FULL"
#define R_NOT_ELIGIBLE   "GREEN_CHANNEL_NOT_ELIGIBLE"
#define R_TOO_MANY       "APPOINTMENTS_TOO_MANY"
#define R_DUPLICATE      "APPOINTMENT_DUPLICATE"
#define R_NOT_FOUND      "APPOINTMENT_NOT_FOUND"
#define R_NOT_UPCOMING   "APPOINTMENT_NOT_UPCOMING"
#define R_ID_INVALID     "APPOINTMENT_ID_INVALID"
#define R_APPLICATION_ID "APPLICATION_ID_INVALID"

#define ZH_BUSY "系统繁忙，请稍后重试"

/* Slot starts, minutes after midnight China time: 09:00..11:30 and
 * 13:30..16:30, each SLOT_MINUTES long. */
static const int slot_starts[] = {540, 570, 600, 630, 660, 690, 810, 840, 870, 900, 930, 960, 990};
#define N_SLOTS (sizeof slot_starts / sizeof slot_starts[0])

/* --- scripts ---------------------------------------------------------------- */

/* KEYS[1] {hall:<dept>}:slots:<date>; ARGV: field (HHMM), general
 * capacity, green capacity, "1" to take a green place when one is left,
 * expiry (ms from now). Returns the pool the place came from. */
static fxb_script take_script = FXB_SCRIPT(
    "appt_take", "local pool = nil\n"
                 "if ARGV[4] == '1' then\n"
                 "  local g = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':green') or '0')\n"
                 "  if g < tonumber(ARGV[3]) then pool = '" POOL_GREEN "' end\n"
                 "end\n"
                 "if not pool then\n"
                 "  local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')\n"
                 "  if n < tonumber(ARGV[2]) then pool = '" POOL_GENERAL "' end\n"
                 "end\n"
                 "if not pool then\n"
                 "  return redis.error_reply('FXB 9 " R_SLOT_FULL " the slot is fully booked')\n"
                 "end\n"
                 "if pool == '" POOL_GREEN "' then\n"
                 "  redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':green', 1)\n"
                 "else\n"
                 "  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)\n"
                 "end\n"
                 "if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then\n"
                 "  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
                 "end\n"
                 "return pool\n");

/* KEYS[1] {hall:<dept>}:slots:<date>; ARGV[1] the counter's field. Gives a
 * place back (never below 0). */
static fxb_script give_script =
    FXB_SCRIPT("appt_give", "if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then\n"
                            "  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)\n"
                            "end\n"
                            "return 1\n");

/* KEYS: appts, appts:booked, appts:days, the new record. ARGV: id,
 * slot_start_ms, now_ms, today (yyyymmdd), days field, UPCOMING_MAX,
 * KEEP_MAX, cutoff (index entries whose slot began before it go), expiry
 * (ms from now), then the record's field/value pairs. Returns the ids
 * dropped from the index (their records are the caller's to delete). */
static fxb_script book_script = FXB_SCRIPT(
    "appt_book", "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])\n"
                 "local days = redis.call('HKEYS', KEYS[3])\n"
                 "for _, f in ipairs(days) do\n"
                 "  if string.sub(f, 1, 8) < ARGV[4] then redis.call('HDEL', KEYS[3], f) end\n"
                 "end\n"
                 "if redis.call('HEXISTS', KEYS[3], ARGV[5]) == 1 then\n"
                 "  return redis.error_reply('FXB 6 " R_DUPLICATE
                 " the subject already has an appointment for this item that day')\n"
                 "end\n"
                 "if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then\n"
                 "  return redis.error_reply('FXB 8 " R_TOO_MANY
                 " the subject has the most upcoming appointments allowed')\n"
                 "end\n"
                 "if redis.call('EXISTS', KEYS[4]) == 1 then\n"
                 "  return redis.error_reply('FXB 10 APPOINTMENT_ID_CLASH an id was drawn twice')\n"
                 "end\n"
                 "redis.call('HSET', KEYS[4], unpack(ARGV, 10))\n"
                 "redis.call('PEXPIRE', KEYS[4], ARGV[9])\n"
                 "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
                 "redis.call('HSET', KEYS[3], ARGV[5], ARGV[1])\n"
                 "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
                 "for k = 1, 3 do\n"
                 "  if redis.call('PTTL', KEYS[k]) < tonumber(ARGV[9]) then\n"
                 "    redis.call('PEXPIRE', KEYS[k], ARGV[9])\n"
                 "  end\n"
                 "end\n"
                 "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[8])\n"
                 "local dropped = {}\n"
                 "local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[7])\n"
                 "if over > 0 then\n"
                 "  local old = redis.call('ZRANGE', KEYS[1], 0, over + tonumber(ARGV[6]) - 1)\n"
                 "  for _, id in ipairs(old) do\n"
                 "    if over > 0 and not redis.call('ZSCORE', KEYS[2], id) then\n"
                 "      redis.call('ZREM', KEYS[1], id)\n"
                 "      dropped[#dropped + 1] = id\n"
                 "      over = over - 1\n"
                 "    end\n"
                 "  end\n"
                 "end\n"
                 "return dropped\n");

/* KEYS: the record, appts:booked, appts:days. ARGV: id, now_ms. Marks an
 * upcoming booked appointment cancelled; returns {department, date,
 * slot_start_ms, pool} for giving the place back. */
static fxb_script cancel_script = FXB_SCRIPT(
    "appt_cancel",
    "local r = redis.call('HMGET', KEYS[1], 'state', 'slot_start_ms', 'date', 'item_code',\n"
    "  'department', 'pool')\n"
    "if not r[1] then\n"
    "  return redis.error_reply('FXB 5 " R_NOT_FOUND " no such appointment')\n"
    "end\n"
    "if r[1] ~= '" STATE_BOOKED "' then\n"
    "  return redis.error_reply('FXB 9 " R_NOT_UPCOMING " the appointment is cancelled')\n"
    "end\n"
    "if tonumber(r[2]) <= tonumber(ARGV[2]) then\n"
    "  return redis.error_reply('FXB 9 " R_NOT_UPCOMING " the slot has begun')\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'state', '" STATE_CANCEL "', 'cancelled_at_ms', ARGV[2])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "local f = r[3] .. ':' .. r[4]\n"
    "if redis.call('HGET', KEYS[3], f) == ARGV[1] then redis.call('HDEL', KEYS[3], f) end\n"
    "return {r[5], r[3], r[2], r[6]}\n");

/* --- small helpers ---------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code key_failed(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
}

static fxb_code shape_failed(fxb_ctx *ctx, const char *what)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                        "%s answered in an unexpected shape", what);
}

/* The subject: the caller's account, or a delegated caller's principal. */
static const char *subject_of(fxb_ctx *ctx)
{
    return fxb_ctx_caller(ctx)->account_id;
}

/* "{<t>:<subject>}:<suffix>" in the call arena, or NULL. */
static const char *subject_key(fxb_ctx *ctx, const char *suffix)
{
    const char *subject = subject_of(ctx);
    const char *tag = fxb_inbox_tag(subject);
    return tag ? fxb_key_owned(fxb_ctx_arena(ctx), tag, subject, suffix) : NULL;
}

static const char *record_key(fxb_ctx *ctx, const char *aid)
{
    if (!fxb_key_id_valid(aid))
        return NULL;
    char suffix[8 + FXB_KEY_ID_MAX + 1];
    snprintf(suffix, sizeof suffix, "appt:%s", aid);
    return subject_key(ctx, suffix);
}

static const char *hall_key(fxb_ctx *ctx, const char *dept, uint32_t date)
{
    char suffix[32];
    snprintf(suffix, sizeof suffix, "slots:%08" PRIu32, date);
    return fxb_key_owned(fxb_ctx_arena(ctx), "hall", dept, suffix);
}

static void text_of(char *buf, size_t cap, int64_t v)
{
    snprintf(buf, cap, "%" PRId64, v);
}

/* 00:00 China time of a valid date, as UTC epoch ms. */
static int64_t day_start_ms(uint32_t date)
{
    return fxb_calendar_end_of_day_ms(date) + 1 - DAY_MS;
}

static uint32_t next_date(uint32_t date)
{
    return fxb_calendar_date_of(fxb_calendar_end_of_day_ms(date) + 1);
}

/* The counter field of a slot start ("HHMM"); buf holds 16 bytes. */
static void slot_field(char *buf, size_t cap, int minute, bool green)
{
    snprintf(buf, cap, "%02d%02d%s", minute / 60 % 100, minute % 60, green ? ":green" : "");
}

/* The index in slot_starts of a slot starting at start_ms on date, or -1. */
static int slot_index(uint32_t date, int64_t start_ms)
{
    int64_t off = start_ms - day_start_ms(date);
    for (size_t i = 0; i < N_SLOTS; i++)
        if (off == slot_starts[i] * MINUTE_MS)
            return (int)i;
    return -1;
}

static bool item_code_given(const char *code)
{
    return code != NULL && code[0] != '\0';
}

static fxb_code item_code_missing(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_ITEM_CODE, "请选择要预约的办事事项",
                        "item_code is required");
}

/* The catalogue item of code, which must allow appointments. */
static fxb_code bookable_item(fxb_ctx *ctx, const char *code, Fxb__V1__ServiceItem **out)
{
    fxb_err err;
    if (fxb_catalog_get(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), code, 0, out, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if ((*out)->guide == NULL || !(*out)->guide->appointment_available)
        return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_NOT_AVAILABLE,
                            "该事项暂不支持预约到厅办理",
                            "the guide of %s does not allow hall appointments", code);
    return FXB_OK;
}

/* --- the calendar ----------------------------------------------------------- */

/* One year of the stored calendar at a time: a walk over a few weeks reads
 * each year once. */
typedef struct calendar_walk {
    fxb_store *store;
    fxb_calendar_year *year; /* arena */
    bool loaded;
} calendar_walk;

static fxb_code walk_init(fxb_ctx *ctx, calendar_walk *w)
{
    w->store = fxb_ctx_store(ctx);
    w->loaded = false;
    w->year = fxb_arena_alloc(fxb_ctx_arena(ctx), sizeof *w->year);
    return w->year ? FXB_OK : out_of_memory(ctx);
}

/* Whether date is a working day; FAILED_PRECONDITION CALENDAR_YEAR_MISSING
 * (and the other errors of fxb_calendar_read_year) in *err. */
static fxb_code walk_working(calendar_walk *w, uint32_t date, bool *working, fxb_err *err)
{
    uint32_t year = date / 10000;
    if (!w->loaded || w->year->year != year) {
        w->loaded = false;
        if (fxb_calendar_read_year(w->store, year, w->year, err) != FXB_OK)
            return err->code;
        w->loaded = true;
    }
    fxb_calendar_kind kind = FXB_CALENDAR_NORMAL;
    for (size_t i = 0; i < w->year->n_days; i++)
        if (w->year->days[i].date == date)
            kind = w->year->days[i].kind;
    int wd = fxb_calendar_weekday(date);
    *working = kind == FXB_CALENDAR_WORKDAY || (kind == FXB_CALENDAR_NORMAL && wd >= 1 && wd <= 5);
    return FXB_OK;
}

/* The last date a slot may lie on: BOOK_AHEAD_DAYS working days after
 * today. */
static fxb_code last_bookable(calendar_walk *w, uint32_t today, uint32_t *out, fxb_err *err)
{
    uint32_t d = today;
    int n = 0;
    for (int steps = 0; n < BOOK_AHEAD_DAYS; steps++) {
        if (steps >= WALK_MAX)
            return fxb_err_set(err, FXB_FAILED_PRECONDITION, "CALENDAR_SPAN_EXCEEDED", ZH_BUSY,
                               "the calendar has too few working days ahead");
        d = next_date(d);
        bool working = false;
        if (walk_working(w, d, &working, err) != FXB_OK)
            return err->code;
        n += working;
    }
    *out = d;
    return FXB_OK;
}

/* --- eligibility ------------------------------------------------------------ */

/* Why subject may use the green channel at now (REASON_*), or NULL: 65 or
 * older by the verified birth date, or a status a department reported.
 * Enterprises never are. */
static fxb_code green_reason(fxb_ctx *ctx, int64_t now, const char **reason, fxb_err *err)
{
    *reason = NULL;
    const char *subject = subject_of(ctx);
    const char *tag = fxb_inbox_tag(subject);
    if (tag == NULL || strcmp(tag, "u") != 0)
        return FXB_OK;
    const char *ikey = fxb_key_owned(fxb_ctx_arena(ctx), "u", subject, "identity");
    char gkey[sizeof GREEN_PREFIX + FXB_KEY_ID_MAX];
    snprintf(gkey, sizeof gkey, GREEN_PREFIX "%s", subject);
    if (ikey == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    const char *hget[] = {"HGET", ikey, "birth_date"};
    const char *hmget[] = {"HMGET", gkey, REASON_DISABLED, REASON_SOLDIER};
    fxb_store_cmd cmds[2] = {{.argc = 3, .argv = hget}, {.argc = 4, .argv = hmget}};
    redisReply *r[2] = {NULL, NULL};
    if (fxb_store_pipeline(fxb_ctx_store(ctx), err, 2, cmds, r) != FXB_OK)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r[0]->type == REDIS_REPLY_ERROR || r[1]->type != REDIS_REPLY_ARRAY || r[1]->elements != 2) {
        rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                         "reading the green-channel status failed");
    } else {
        int64_t birth = r[0]->type == REDIS_REPLY_STRING ? strtoll(r[0]->str, NULL, 10) : 0;
        int age = fxb_idnumber_date_valid(birth) ? fxb_age_on(birth, fxb_idv_today(now)) : -1;
        const redisReply *dis = r[1]->element[0], *sol = r[1]->element[1];
        if (age >= ELDERLY_AGE)
            *reason = REASON_ELDERLY;
        else if (dis->type == REDIS_REPLY_STRING && strcmp(dis->str, "1") == 0)
            *reason = REASON_DISABLED;
        else if (sol->type == REDIS_REPLY_STRING && strcmp(sol->str, "1") == 0)
            *reason = REASON_SOLDIER;
    }
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return rc;
}

/* --- records ---------------------------------------------------------------- */

/* An HGETALL reply into *out (strings in the arena). false when the hash
 * holds no appointment (expired or never there); *oom on allocation
 * failure. category_out, when not NULL, gets the item's category. */
static bool appointment_from(fxb_arena *a, const char *aid, const redisReply *kv,
                             Fxb__V1__Appointment *out, const char **category_out, bool *oom)
{
    *oom = false;
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY)
        return false;
    const char *state = fxb_store_hash_get(kv, "state");
    if (state == NULL)
        return false;
    fxb__v1__appointment__init(out);
    struct {
        const char *name;
        char **dst;
    } strs[] = {
        {"item_code", &out->item_code},
        {"department", &out->department},
        {"green_reason", &out->green_reason},
        {"application_id", &out->application_id},
    };
    out->appointment_id = fxb_arena_strdup(a, aid);
    *oom = out->appointment_id == NULL;
    for (size_t i = 0; !*oom && i < sizeof strs / sizeof strs[0]; i++) {
        const char *v = fxb_store_hash_get(kv, strs[i].name);
        if (v == NULL)
            continue;
        *strs[i].dst = fxb_arena_strdup(a, v);
        *oom = *strs[i].dst == NULL;
    }
    if (*oom)
        return false;
    const char *v;
    if ((v = fxb_store_hash_get(kv, "slot_start_ms")) != NULL)
        out->slot_start_ms = strtoll(v, NULL, 10);
    if ((v = fxb_store_hash_get(kv, "slot_end_ms")) != NULL)
        out->slot_end_ms = strtoll(v, NULL, 10);
    if ((v = fxb_store_hash_get(kv, "booked_at_ms")) != NULL)
        out->booked_at_ms = strtoll(v, NULL, 10);
    v = fxb_store_hash_get(kv, "green");
    out->green_channel = v != NULL && strcmp(v, "1") == 0;
    out->state = strcmp(state, STATE_BOOKED) == 0
                     ? FXB__V1__APPOINTMENT_STATE__APPOINTMENT_STATE_BOOKED
                     : FXB__V1__APPOINTMENT_STATE__APPOINTMENT_STATE_CANCELLED;
    if (category_out != NULL)
        *category_out = fxb_store_hash_get(kv, "category");
    return true;
}

/* A notice to the subject's inbox. Best effort: the appointment stands
 * either way, and ListAppointments shows it. */
static void notify(fxb_ctx *ctx, const char *kind, const char *title, const char *body,
                   const char *aid, int64_t now)
{
    fxb_err err;
    if (fxb_inbox_append(fxb_ctx_store(ctx), subject_of(ctx), kind, title, body, aid, now, NULL,
                         &err) != FXB_OK)
        fxb_log(FXB_LOG_WARN, "appointment: inbox notice %s failed: %s", kind, err.reason);
}

/* "2026年2月14日 09:00–09:30" of a slot (arena), or NULL. */
static char *slot_text(fxb_arena *a, uint32_t date, int64_t start_ms)
{
    int start = (int)((start_ms - day_start_ms(date)) / MINUTE_MS);
    int end = start + SLOT_MINUTES;
    return fxb_arena_printf(a, "%" PRIu32 "年%" PRIu32 "月%" PRIu32 "日 %02d:%02d–%02d:%02d",
                            date / 10000, date / 100 % 100, date % 100, start / 60, start % 60,
                            end / 60, end % 60);
}

/* Gives a place back to a department's slot. Best effort: logged when it
 * fails (the place then stays taken until the day's counters expire). */
static void give_back(fxb_ctx *ctx, const char *dept, uint32_t date, int64_t start_ms,
                      const char *pool)
{
    const char *key = hall_key(ctx, dept, date);
    char field[16];
    slot_field(field, sizeof field, (int)((start_ms - day_start_ms(date)) / MINUTE_MS),
               strcmp(pool, POOL_GREEN) == 0);
    const char *args[] = {field};
    fxb_err err;
    redisReply *r = NULL;
    if (key == NULL)
        fxb_err_set(&err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    else
        r = fxb_store_eval(fxb_ctx_store(ctx), &err, &give_script, 1, &key, 1, args, NULL);
    if (r == NULL)
        fxb_log(FXB_LOG_WARN, "appointment: giving a place back failed: %s", err.reason);
    else
        freeReplyObject(r);
}

/* --- ListSlots ---------------------------------------------------------------- */

/* The department's counters of date into taken[] / green_taken[] (indexed
 * like slot_starts) from an HGETALL reply. */
static void counts_from(const redisReply *kv, int *taken, int *green_taken)
{
    for (size_t i = 0; i < N_SLOTS; i++) {
        char f[16];
        slot_field(f, sizeof f, slot_starts[i], false);
        const char *v = kv && kv->type == REDIS_REPLY_ARRAY ? fxb_store_hash_get(kv, f) : NULL;
        taken[i] = v ? atoi(v) : 0;
        slot_field(f, sizeof f, slot_starts[i], true);
        v = kv && kv->type == REDIS_REPLY_ARRAY ? fxb_store_hash_get(kv, f) : NULL;
        green_taken[i] = v ? atoi(v) : 0;
    }
}

static uint32_t left(int capacity, int taken)
{
    return taken >= capacity ? 0 : (uint32_t)(capacity - (taken < 0 ? 0 : taken));
}

static fxb_code list_slots(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListSlotsRequest *req = (const Fxb__V1__ListSlotsRequest *)req_msg;
    Fxb__V1__ListSlotsResponse *resp = (Fxb__V1__ListSlotsResponse *)resp_msg;
    if (!item_code_given(req->item_code))
        return item_code_missing(ctx);
    if (req->days > DAYS_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_DAYS, "查询天数应为1到10个工作日",
                            "days must be 1..%d working days (0 = %d)", DAYS_MAX, DAYS_DEFAULT);
    uint32_t days = req->days ? req->days : DAYS_DEFAULT;
    if (req->from_date != 0 && !fxb_calendar_date_valid(req->from_date))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_FROM_DATE, "起始日期无效",
                            "from_date must be a date yyyymmdd (%d..%d), or 0 for today",
                            FXB_CALENDAR_YEAR_MIN, FXB_CALENDAR_YEAR_MAX);
    Fxb__V1__ServiceItem *item;
    fxb_code rc = bookable_item(ctx, req->item_code, &item);
    if (rc != FXB_OK)
        return rc;

    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_err err;
    int64_t now = fxb_wall_ms();
    uint32_t today = fxb_calendar_date_of(now);
    calendar_walk w;
    uint32_t last = 0;
    rc = walk_init(ctx, &w);
    if (rc != FXB_OK)
        return rc;
    if (last_bookable(&w, today, &last, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);

    /* the working days shown: from the later of from_date and today, only
     * days with a slot still ahead, never past the booking horizon */
    uint32_t dates[DAYS_MAX];
    size_t n_dates = 0;
    uint32_t d = req->from_date > today ? req->from_date : today;
    for (int steps = 0; d <= last && n_dates < days && steps < WALK_MAX; steps++) {
        bool working = false;
        if (walk_working(&w, d, &working, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        if (working && day_start_ms(d) + slot_starts[N_SLOTS - 1] * MINUTE_MS > now)
            dates[n_dates++] = d;
        d = next_date(d);
    }

    resp->department = item->department;
    if (n_dates == 0)
        return FXB_OK;
    const char *argv[DAYS_MAX][2];
    fxb_store_cmd cmds[DAYS_MAX];
    redisReply *replies[DAYS_MAX];
    for (size_t i = 0; i < n_dates; i++) {
        argv[i][0] = "HGETALL";
        argv[i][1] = hall_key(ctx, item->department, dates[i]);
        if (argv[i][1] == NULL)
            return key_failed(ctx);
        cmds[i] = (fxb_store_cmd){.argc = 2, .argv = argv[i]};
    }
    if (fxb_store_pipeline(fxb_ctx_store(ctx), &err, n_dates, cmds, replies) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    Fxb__V1__Slot **slots = fxb_arena_calloc(a, n_dates * N_SLOTS, sizeof *slots);
    Fxb__V1__Slot *store = fxb_arena_calloc(a, n_dates * N_SLOTS, sizeof *store);
    bool bad = false;
    size_t n = 0;
    for (size_t i = 0; i < n_dates; i++) {
        bad |= replies[i]->type == REDIS_REPLY_ERROR;
        int taken[N_SLOTS], green_taken[N_SLOTS];
        counts_from(replies[i], taken, green_taken);
        freeReplyObject(replies[i]);
        for (size_t k = 0; slots != NULL && store != NULL && k < N_SLOTS; k++) {
            int64_t start = day_start_ms(dates[i]) + slot_starts[k] * MINUTE_MS;
            if (start <= now)
                continue;
            Fxb__V1__Slot *s = &store[n];
            fxb__v1__slot__init(s);
            s->start_ms = start;
            s->end_ms = start + SLOT_MINUTES * MINUTE_MS;
            s->free = left(GENERAL_CAPACITY, taken[k]);
            s->green_free = left(GREEN_CAPACITY, green_taken[k]);
            slots[n++] = s;
        }
    }
    if (bad)
        return shape_failed(ctx, "HGETALL of a hall's day");
    if (slots == NULL || store == NULL)
        return out_of_memory(ctx);
    resp->slots = slots;
    resp->n_slots = n;
    return FXB_OK;
}

/* --- BookAppointment ------------------------------------------------------------ */

/* Checks the slot: one the hall opens (SLOT_INVALID), ahead of now
 * (SLOT_INVALID), on a working day (SLOT_INVALID) within the horizon
 * (SLOT_TOO_FAR). The slot's date into *date. */
static fxb_code check_slot(fxb_ctx *ctx, int64_t start_ms, int64_t now, uint32_t *date)
{
    uint32_t d = fxb_calendar_date_of(start_ms);
    if (start_ms <= now || !fxb_calendar_date_valid(d) || slot_index(d, start_ms) < 0)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_SLOT, "预约时段无效，请重新选择",
                            "slot_start_ms must be the start of a future slot (ListSlots)");
    calendar_walk w;
    fxb_code rc = walk_init(ctx, &w);
    if (rc != FXB_OK)
        return rc;
    fxb_err err;
    bool working = false;
    if (walk_working(&w, d, &working, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (!working)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_SLOT, "该日期不是工作日，请重新选择",
                            "%08" PRIu32 " is not a working day", d);
    uint32_t last = 0;
    if (last_bookable(&w, fxb_calendar_date_of(now), &last, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    if (d > last)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_SLOT_TOO_FAR, "只能预约10个工作日内的时段",
                            "a slot may lie at most %d working days ahead", BOOK_AHEAD_DAYS);
    *date = d;
    return FXB_OK;
}

/* Takes a place in the department's slot: the pool it came from, or
 * FAILED_PRECONDITION SLOT_FULL. */
static fxb_code take_place(fxb_ctx *ctx, const char *dept, uint32_t date, int64_t start_ms,
                           bool green, int64_t now, const char **pool)
{
    const char *key = hall_key(ctx, dept, date);
    if (key == NULL)
        return key_failed(ctx);
    char field[16], gen[16], grn[16], ttl[24];
    slot_field(field, sizeof field, (int)((start_ms - day_start_ms(date)) / MINUTE_MS), false);
    snprintf(gen, sizeof gen, "%d", GENERAL_CAPACITY);
    snprintf(grn, sizeof grn, "%d", GREEN_CAPACITY);
    text_of(ttl, sizeof ttl, fxb_calendar_end_of_day_ms(date) + 1 + HALL_KEEP_MS - now);
    const char *args[] = {field, gen, grn, green ? "1" : "0", ttl};
    fxb_err err;
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, &take_script, 1, &key, 5, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, R_SLOT_FULL) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", "该时段已约满，请选择其他时段");
        return fxb_ctx_fail_err(ctx, &err);
    }
    bool ok = r->type == REDIS_REPLY_STRING;
    *pool = ok && strcmp(r->str, POOL_GREEN) == 0 ? POOL_GREEN : POOL_GENERAL;
    freeReplyObject(r);
    return ok ? FXB_OK : shape_failed(ctx, "taking a place");
}

static bool application_id_valid(const char *id)
{
    return id == NULL || id[0] == '\0' || fxb_key_id_valid(id);
}

static fxb_code book_appointment(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__BookAppointmentRequest *req = (const Fxb__V1__BookAppointmentRequest *)req_msg;
    Fxb__V1__Appointment *resp = (Fxb__V1__Appointment *)resp_msg;
    if (!item_code_given(req->item_code))
        return item_code_missing(ctx);
    if (!application_id_valid(req->application_id))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_APPLICATION_ID, "办件编号无效",
                            "application_id must be 1..%d of [A-Za-z0-9_-] or empty",
                            FXB_KEY_ID_MAX);
    const fxb_caller *caller = fxb_ctx_caller(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_err err;
    int64_t now = fxb_wall_ms();

    /* 1. the item, the slot, the green channel */
    Fxb__V1__ServiceItem *item;
    fxb_code rc = bookable_item(ctx, req->item_code, &item);
    if (rc != FXB_OK)
        return rc;
    uint32_t date = 0;
    rc = check_slot(ctx, req->slot_start_ms, now, &date);
    if (rc != FXB_OK)
        return rc;
    const char *reason = NULL;
    if (req->green_channel) {
        if (green_reason(ctx, now, &reason, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        if (reason == NULL)
            return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, R_NOT_ELIGIBLE,
                                "绿色通道仅面向65周岁以上老年人、军人和残疾人",
                                "the green channel is for the elderly (%d or older), soldiers and "
                                "the disabled",
                                ELDERLY_AGE);
    }

    /* 2. a place in the slot */
    const char *pool;
    rc = take_place(ctx, item->department, date, req->slot_start_ms, reason != NULL, now, &pool);
    if (rc != FXB_OK)
        return rc;

    /* 3. the subject's indexes and the record; the place goes back when
     * this fails */
    char aid[FXB_ID_MAX + 1];
    int64_t end = req->slot_start_ms + SLOT_MINUTES * MINUTE_MS;
    char days_field[16 + FXB_SCOPE_ITEM_MAX];
    snprintf(days_field, sizeof days_field, "%08" PRIu32 ":%s", date, item->code);
    const char *keys[4] = {subject_key(ctx, "appts"), subject_key(ctx, "appts:booked"),
                           subject_key(ctx, "appts:days"), NULL};
    rc = fxb_token_new_id(aid, &err);
    if (rc == FXB_OK) {
        keys[3] = record_key(ctx, aid);
        if (keys[0] == NULL || keys[1] == NULL || keys[2] == NULL || keys[3] == NULL)
            rc = fxb_err_set(&err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    }
    redisReply *r = NULL;
    if (rc == FXB_OK) {
        char start[24], end_text[24], now_text[24], today[16], upcoming[8], keep[8], cutoff[24],
            ttl[24], date_text[16];
        text_of(start, sizeof start, req->slot_start_ms);
        text_of(end_text, sizeof end_text, end);
        text_of(now_text, sizeof now_text, now);
        snprintf(today, sizeof today, "%08" PRIu32, fxb_calendar_date_of(now));
        snprintf(date_text, sizeof date_text, "%08" PRIu32, date);
        snprintf(upcoming, sizeof upcoming, "%d", UPCOMING_MAX);
        snprintf(keep, sizeof keep, "%d", KEEP_MAX);
        text_of(cutoff, sizeof cutoff, now - KEEP_MS);
        text_of(ttl, sizeof ttl, end + KEEP_MS - now);
        const char *args[] = {aid,
                              start,
                              now_text,
                              today,
                              days_field,
                              upcoming,
                              keep,
                              cutoff,
                              ttl,
                              "item_code",
                              item->code,
                              "item_name",
                              item->name,
                              "category",
                              item->category,
                              "department",
                              item->department,
                              "department_name",
                              item->department_name,
                              "date",
                              date_text,
                              "slot_start_ms",
                              start,
                              "slot_end_ms",
                              end_text,
                              "green",
                              reason ? "1" : "0",
                              "green_reason",
                              reason ? reason : "",
                              "pool",
                              pool,
                              "state",
                              STATE_BOOKED,
                              "booked_at_ms",
                              now_text,
                              "application_id",
                              req->application_id ? req->application_id : "",
                              "agent",
                              caller->delegated ? caller->agent_id : ""};
        r = fxb_store_eval(fxb_ctx_store(ctx), &err, &book_script, 4, keys,
                           (int)(sizeof args / sizeof args[0]), args, NULL);
        if (r == NULL)
            rc = err.code;
    }
    if (rc != FXB_OK) {
        give_back(ctx, item->department, date, req->slot_start_ms, pool);
        if (strcmp(err.reason, R_DUPLICATE) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s",
                     "同一事项每天只能预约一次，您当天已有该事项的预约");
        else if (strcmp(err.reason, R_TOO_MANY) == 0)
            snprintf(err.message_zh, sizeof err.message_zh,
                     "您已有%d个待办理的预约，请办理或取消后再预约", UPCOMING_MAX);
        return fxb_ctx_fail_err(ctx, &err);
    }
    /* records dropped from the full index: their hashes go too */
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const char *k =
            r->element[i]->type == REDIS_REPLY_STRING ? record_key(ctx, r->element[i]->str) : NULL;
        redisReply *del = k ? fxb_store_command(fxb_ctx_store(ctx), &err, "DEL %s", k) : NULL;
        if (del != NULL)
            freeReplyObject(del);
    }
    freeReplyObject(r);

    resp->appointment_id = fxb_arena_strdup(a, aid);
    resp->item_code = item->code;
    resp->department = item->department;
    resp->slot_start_ms = req->slot_start_ms;
    resp->slot_end_ms = end;
    resp->green_channel = reason != NULL;
    resp->green_reason = (char *)(reason ? reason : "");
    resp->state = FXB__V1__APPOINTMENT_STATE__APPOINTMENT_STATE_BOOKED;
    resp->booked_at_ms = now;
    resp->application_id = req->application_id;
    if (resp->appointment_id == NULL)
        return out_of_memory(ctx);

    const char *when = slot_text(a, date, req->slot_start_ms);
    const char *body =
        when ? fxb_arena_printf(
                   a, "%s“%s”的到厅办理：%s，%s办事窗口%s。请按时到场，如不能前往请提前取消。",
                   caller->delegated ? "代办人已为您预约" : "您已预约", item->name, when,
                   item->department_name, reason ? "（绿色通道）" : "")
             : NULL;
    if (body != NULL)
        notify(ctx, "appointment.booked", "预约成功", body, aid, now);
    return FXB_OK;
}

/* --- ListAppointments --------------------------------------------------------- */

static fxb_code list_appointments(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                  ProtobufCMessage *resp_msg)
{
    (void)req_msg;
    Fxb__V1__ListAppointmentsResponse *resp = (Fxb__V1__ListAppointmentsResponse *)resp_msg;
    const fxb_caller *caller = fxb_ctx_caller(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_err err;
    const char *index = subject_key(ctx, "appts");
    if (index == NULL)
        return key_failed(ctx);
    /* the latest slot first: upcoming appointments lead */
    redisReply *ids = fxb_store_command(st, &err, "ZREVRANGE %s 0 %d", index, KEEP_MAX - 1);
    if (ids == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (ids->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(ids);
        return shape_failed(ctx, "ZREVRANGE of the appointments");
    }
    size_t n = ids->elements;
    if (n == 0) {
        freeReplyObject(ids);
        return FXB_OK;
    }
    fxb_store_cmd *cmds = fxb_arena_calloc(a, n, sizeof *cmds);
    const char **argv = fxb_arena_calloc(a, 2 * n, sizeof *argv);
    char **aids = fxb_arena_calloc(a, n, sizeof *aids);
    redisReply **replies = fxb_arena_calloc(a, n, sizeof *replies);
    Fxb__V1__Appointment *store = fxb_arena_calloc(a, n, sizeof *store);
    Fxb__V1__Appointment **out = fxb_arena_calloc(a, n, sizeof *out);
    bool oom = cmds == NULL || argv == NULL || aids == NULL || replies == NULL || store == NULL ||
               out == NULL;
    size_t m = 0;
    for (size_t i = 0; !oom && i < n; i++) {
        const redisReply *e = ids->element[i];
        const char *k = e->type == REDIS_REPLY_STRING ? record_key(ctx, e->str) : NULL;
        if (k == NULL)
            continue; /* not one of ours: never shown */
        aids[m] = fxb_arena_strdup(a, e->str);
        oom = aids[m] == NULL;
        argv[2 * m] = "HGETALL";
        argv[2 * m + 1] = k;
        cmds[m] = (fxb_store_cmd){.argc = 2, .argv = &argv[2 * m]};
        m++;
    }
    freeReplyObject(ids);
    if (oom)
        return out_of_memory(ctx);
    if (m > 0 && fxb_store_pipeline(st, &err, m, cmds, replies) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    size_t k = 0;
    bool bad = false;
    for (size_t i = 0; i < m; i++) {
        const char *category = NULL;
        bad |= replies[i]->type == REDIS_REPLY_ERROR;
        if (!bad && !oom && appointment_from(a, aids[i], replies[i], &store[k], &category, &oom)) {
            /* a delegated reader sees the items its grant covers */
            if (!caller->delegated ||
                fxb_scope_allows_item(caller->scope, store[k].item_code, category)) {
                out[k] = &store[k];
                k++;
            }
        }
        freeReplyObject(replies[i]);
    }
    if (bad)
        return shape_failed(ctx, "HGETALL of an appointment");
    if (oom)
        return out_of_memory(ctx);
    resp->appointments = out;
    resp->n_appointments = k;
    return FXB_OK;
}

/* --- CancelAppointment -------------------------------------------------------- */

static fxb_code cancel_appointment(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                   ProtobufCMessage *resp_msg)
{
    const Fxb__V1__CancelAppointmentRequest *req =
        (const Fxb__V1__CancelAppointmentRequest *)req_msg;
    Fxb__V1__Appointment *resp = (Fxb__V1__Appointment *)resp_msg;
    if (!fxb_key_id_valid(req->appointment_id))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, R_ID_INVALID, "预约编号无效",
                            "appointment_id must be 1..%d of [A-Za-z0-9_-]", FXB_KEY_ID_MAX);
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_err err;
    const char *keys[3] = {record_key(ctx, req->appointment_id), subject_key(ctx, "appts:booked"),
                           subject_key(ctx, "appts:days")};
    if (keys[0] == NULL || keys[1] == NULL || keys[2] == NULL)
        return key_failed(ctx);

    /* the record first: a delegated caller's grant must cover its item */
    redisReply *r = fxb_store_command(st, &err, "HGETALL %s", keys[0]);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool oom;
    const char *category = NULL;
    bool found = appointment_from(a, req->appointment_id, r, resp, &category, &oom);
    const char *item_name = found ? fxb_store_hash_get(r, "item_name") : NULL;
    const char *dept_name = found ? fxb_store_hash_get(r, "department_name") : NULL;
    item_name = item_name ? fxb_arena_strdup(a, item_name) : "";
    dept_name = dept_name ? fxb_arena_strdup(a, dept_name) : "";
    freeReplyObject(r);
    if (oom || item_name == NULL || dept_name == NULL)
        return out_of_memory(ctx);
    if (!found)
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, R_NOT_FOUND, "未找到该预约",
                            "no such appointment for the caller");
    fxb_code rc = fxb_ctx_require_item(ctx, resp->item_code);
    if (rc != FXB_OK)
        return rc;

    int64_t now = fxb_wall_ms();
    char now_text[24];
    text_of(now_text, sizeof now_text, now);
    const char *args[] = {req->appointment_id, now_text};
    r = fxb_store_eval(st, &err, &cancel_script, 3, keys, 2, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, R_NOT_FOUND) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", "未找到该预约");
        else if (strcmp(err.reason, R_NOT_UPCOMING) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s",
                     "该预约已取消或已过预约时间，不能取消");
        return fxb_ctx_fail_err(ctx, &err);
    }
    bool shape = r->type == REDIS_REPLY_ARRAY && r->elements == 4;
    for (size_t i = 0; shape && i < 4; i++)
        shape = r->element[i]->type == REDIS_REPLY_STRING;
    if (!shape) {
        freeReplyObject(r);
        return shape_failed(ctx, "cancelling an appointment");
    }
    uint32_t date = (uint32_t)strtoul(r->element[1]->str, NULL, 10);
    int64_t start = strtoll(r->element[2]->str, NULL, 10);
    if (fxb_calendar_date_valid(date) && fxb_key_id_valid(r->element[0]->str))
        give_back(ctx, r->element[0]->str, date, start, r->element[3]->str);
    freeReplyObject(r);

    resp->state = FXB__V1__APPOINTMENT_STATE__APPOINTMENT_STATE_CANCELLED;
    const char *when = fxb_calendar_date_valid(date) ? slot_text(a, date, start) : NULL;
    const char *body =
        when ? fxb_arena_printf(a, "%s“%s”的到厅预约（%s，%s）已取消。",
                                fxb_ctx_caller(ctx)->delegated ? "代办人已将您" : "您", item_name,
                                when, dept_name)
             : NULL;
    if (body != NULL)
        notify(ctx, "appointment.cancelled", "预约已取消", body, req->appointment_id, now);
    return FXB_OK;
}

/* --- method table --------------------------------------------------------------- */

static const fxb_method methods[] = {
    {.path = SVC "ListSlots",
     .request = &fxb__v1__list_slots_request__descriptor,
     .response = &fxb__v1__list_slots_response__descriptor,
     .unary = list_slots,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = SVC "BookAppointment",
     .request = &fxb__v1__book_appointment_request__descriptor,
     .response = &fxb__v1__appointment__descriptor,
     .unary = book_appointment,
     .access = {.kind = FXB_ACCESS_SIGNED_IN,
                .min_level = FXB_LEVEL_REAL_NAME,
                .delegable = true,
                .scope = FXB_CAP_FILING_SUBMIT,
                .item_field = "item_code"},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = SVC "ListAppointments",
     .request = &fxb__v1__list_appointments_request__descriptor,
     .response = &fxb__v1__list_appointments_response__descriptor,
     .unary = list_appointments,
     .access = {.kind = FXB_ACCESS_SIGNED_IN, .delegable = true, .scope = FXB_CAP_FILING_READ},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = SVC "CancelAppointment",
     .request = &fxb__v1__cancel_appointment_request__descriptor,
     .response = &fxb__v1__appointment__descriptor,
     .unary = cancel_appointment,
     .access = {.kind = FXB_ACCESS_SIGNED_IN, .delegable = true, .scope = FXB_CAP_FILING_SUBMIT},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
};

const fxb_service fxb_appointment_service = {
    .name = "fxb.v1.AppointmentService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
