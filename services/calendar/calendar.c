/* The working-day calendar: date arithmetic on yyyymmdd integers (pure
 * integer days-from-civil, never the C library's time zones: China has one
 * offset, UTC+8, and no DST), each year's exceptions in Redis, the
 * working-day counts every time limit uses, and CalendarService.
 *
 * Keys:
 *   fxb:calendar:<year>   hash: field yyyymmdd -> "h|<name>" (a rest day of a
 *                         public holiday period, weekend days in it included)
 *                         or "w|<name>" (a make-up working day, always a
 *                         weekend day); field "updated_at_ms". A year with
 *                         data always has updated_at_ms, so an empty hash
 *                         means "no data": never guessed from the weekly rule.
 *   fxb:calendar:years    set of the years with data (decimal).
 * Written only by fxb-admin calendar (import replaces a year atomically: DEL
 * + HSET in one script; set changes one field). A count reads each year it
 * needs once (HGETALL), so a count is consistent per year. */
#include "services/calendar/calendar.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fxb/v1/calendar.pb-c.h"
#include "store/store.h"

#define KEY_PREFIX    "fxb:calendar:"
#define KEY_YEARS     "fxb:calendar:years"
#define FIELD_UPDATED "updated_at_ms"
#define SMALL_REQUEST 64

#define MS_DAY    86400000LL
#define MS_CHINA  (8LL * 3600 * 1000)                       /* UTC+8 */
#define SPAN_YEAR ((FXB_CALENDAR_SPAN_MAX + 365) / 365 + 1) /* years one count may touch */

#define DEFAULT_HOLIDAY "节假日"
#define DEFAULT_WORKDAY "调休上班"

#define ZH_BUSY         "系统繁忙，请稍后重试"
#define ZH_YEAR_MISSING "该年度的工作日历尚未发布，暂时无法按工作日计算"
#define ZH_DATE_INVALID "日期无效"

/* --- dates ------------------------------------------------------------------ */

/* Howard Hinnant's days_from_civil / civil_from_days: exact for the
 * proleptic Gregorian calendar, day 0 = 1970-01-01. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static bool leap(uint32_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static uint32_t month_days(uint32_t y, uint32_t m)
{
    static const uint8_t days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}

bool fxb_calendar_date_valid(uint32_t date)
{
    uint32_t y = date / 10000, m = date / 100 % 100, d = date % 100;
    return y >= FXB_CALENDAR_YEAR_MIN && y <= FXB_CALENDAR_YEAR_MAX && m >= 1 && m <= 12 &&
           d >= 1 && d <= month_days(y, m);
}

int64_t fxb_calendar_day_number(uint32_t date)
{
    if (!fxb_calendar_date_valid(date))
        return 0;
    return days_from_civil(date / 10000, date / 100 % 100, date % 100);
}

/* The yyyymmdd of day number z; 0 outside years 1..9999. */
static uint32_t date_of_day(int64_t z)
{
    int64_t y, m, d;
    civil_from_days(z, &y, &m, &d);
    if (y < 1 || y > 9999)
        return 0;
    return (uint32_t)(y * 10000 + m * 100 + d);
}

uint32_t fxb_calendar_date_of(int64_t utc_ms)
{
    /* floor division, then the offset on the remainder: no overflow at the
     * ends of int64 */
    int64_t day = utc_ms / MS_DAY, rem = utc_ms % MS_DAY;
    if (rem < 0) {
        rem += MS_DAY;
        day--;
    }
    if (rem >= MS_DAY - MS_CHINA)
        day++;
    return date_of_day(day);
}

int64_t fxb_calendar_end_of_day_ms(uint32_t date)
{
    if (!fxb_calendar_date_valid(date))
        return -1;
    return (fxb_calendar_day_number(date) + 1) * MS_DAY - MS_CHINA - 1;
}

int fxb_calendar_weekday(uint32_t date)
{
    if (!fxb_calendar_date_valid(date))
        return 0;
    int64_t z = fxb_calendar_day_number(date);
    int64_t w = (z + 3) % 7; /* 1970-01-01 was a Thursday */
    if (w < 0)
        w += 7;
    return (int)w + 1;
}

static bool weekend(uint32_t date)
{
    return fxb_calendar_weekday(date) >= 6;
}

/* 0-based day of the year of a valid date. */
static size_t day_of_year(uint32_t date)
{
    return (size_t)(fxb_calendar_day_number(date) - days_from_civil(date / 10000, 1, 1));
}

/* --- names ------------------------------------------------------------------ */

/* Decodes one UTF-8 sequence at s (n bytes left): its length, 0 when
 * invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2, c = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, c = s[0] & 0x0f, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, c = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

bool fxb_calendar_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strnlen(name, FXB_CALENDAR_NAME_BYTES_MAX + 1);
    if (n == 0 || n > FXB_CALENDAR_NAME_BYTES_MAX || name[0] == ' ' || name[n - 1] == ' ')
        return false;
    const unsigned char *s = (const unsigned char *)name;
    size_t chars = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return false;
        i += len;
        if (++chars > FXB_CALENDAR_NAME_CHARS_MAX)
            return false;
    }
    return true;
}

/* --- reading ---------------------------------------------------------------- */

static fxb_code year_missing(fxb_err *err, uint32_t year)
{
    return fxb_err_set(err, FXB_FAILED_PRECONDITION, "CALENDAR_YEAR_MISSING", ZH_YEAR_MISSING,
                       "the working-day calendar of %" PRIu32 " has not been loaded", year);
}

static fxb_code corrupt(fxb_err *err, uint32_t year, const char *what)
{
    return fxb_err_set(err, FXB_DATA_LOSS, "CALENDAR_CORRUPT", ZH_BUSY,
                       "the stored calendar of %" PRIu32 " is malformed: %s", year, what);
}

static fxb_code bad_date(fxb_err *err, const char *field)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DATE_INVALID", ZH_DATE_INVALID,
                       "%s must be a real date yyyymmdd in %d..%d", field, FXB_CALENDAR_YEAR_MIN,
                       FXB_CALENDAR_YEAR_MAX);
}

/* Exactly 8 digits forming a real date of year. */
static bool parse_field_date(const char *s, size_t len, uint32_t year, uint32_t *out)
{
    if (len != 8)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (!fxb_calendar_date_valid(v) || v / 10000 != year)
        return false;
    *out = v;
    return true;
}

/* "h|<name>" or "w|<name>": the kind, and the name (not NUL-terminated). */
static bool parse_value(const char *s, size_t len, fxb_calendar_kind *kind, const char **name,
                        size_t *name_len)
{
    if (len < 3 || s[1] != '|' || len - 2 > FXB_CALENDAR_NAME_BYTES_MAX)
        return false;
    if (s[0] == 'h')
        *kind = FXB_CALENDAR_HOLIDAY;
    else if (s[0] == 'w')
        *kind = FXB_CALENDAR_WORKDAY;
    else
        return false;
    *name = s + 2;
    *name_len = len - 2;
    return true;
}

/* The exceptions of one year as a kind per day of the year. */
typedef struct year_kinds {
    uint32_t year;
    uint8_t kind[FXB_CALENDAR_YEAR_DAYS];
} year_kinds;

/* HGETALL of year, checked field by field. Fills kinds (when not NULL) and
 * full (when not NULL, days in date order). */
static fxb_code load_year(fxb_store *s, uint32_t year, year_kinds *kinds, fxb_calendar_year *full,
                          fxb_err *err)
{
    redisReply *r = fxb_store_command(s, err, "HGETALL " KEY_PREFIX "%" PRIu32, year);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        freeReplyObject(r);
        return corrupt(err, year, "HGETALL answered in an unexpected shape");
    }
    if (r->elements == 0) {
        freeReplyObject(r);
        return year_missing(err, year);
    }
    /* names point into the reply until copied */
    uint8_t kind[FXB_CALENDAR_YEAR_DAYS] = {0};
    const char *names[FXB_CALENDAR_YEAR_DAYS];
    size_t name_lens[FXB_CALENDAR_YEAR_DAYS];
    bool have_updated = false;
    int64_t updated = 0;
    const char *problem = NULL;
    for (size_t i = 0; i + 1 < r->elements && problem == NULL; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            problem = "a field or value is not a string";
            break;
        }
        if (strcmp(f->str, FIELD_UPDATED) == 0) {
            char *end = NULL;
            long long ms = strtoll(v->str, &end, 10);
            if (end == v->str || *end != '\0' || ms < 0)
                problem = "updated_at_ms is not a time";
            have_updated = true;
            updated = ms;
            continue;
        }
        uint32_t date;
        fxb_calendar_kind k = FXB_CALENDAR_NORMAL;
        const char *name;
        size_t name_len;
        if (!parse_field_date(f->str, f->len, year, &date))
            problem = "a field is not a date of the year";
        else if (!parse_value(v->str, v->len, &k, &name, &name_len))
            problem = "a value is not \"h|<name>\" or \"w|<name>\"";
        else {
            size_t d = day_of_year(date);
            kind[d] = (uint8_t)k;
            names[d] = name;
            name_lens[d] = name_len;
        }
    }
    if (problem == NULL && !have_updated)
        problem = "updated_at_ms is missing";
    if (problem != NULL) {
        freeReplyObject(r);
        return corrupt(err, year, problem);
    }
    if (kinds != NULL) {
        kinds->year = year;
        memcpy(kinds->kind, kind, sizeof kind);
    }
    if (full != NULL) {
        full->year = year;
        full->updated_at_ms = updated;
        full->n_days = 0;
        int64_t first = days_from_civil(year, 1, 1);
        for (size_t d = 0; d < FXB_CALENDAR_YEAR_DAYS; d++) {
            if (kind[d] == FXB_CALENDAR_NORMAL)
                continue;
            fxb_calendar_day *day = &full->days[full->n_days++];
            day->date = date_of_day(first + (int64_t)d);
            day->kind = (fxb_calendar_kind)kind[d];
            memcpy(day->name, names[d], name_lens[d]);
            day->name[name_lens[d]] = '\0';
        }
    }
    freeReplyObject(r);
    return FXB_OK;
}

fxb_code fxb_calendar_read_year(fxb_store *s, uint32_t year, fxb_calendar_year *out, fxb_err *err)
{
    if (year < FXB_CALENDAR_YEAR_MIN || year > FXB_CALENDAR_YEAR_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "YEAR_INVALID", "年份应在2000年至2100年之间",
                           "year must be %d..%d", FXB_CALENDAR_YEAR_MIN, FXB_CALENDAR_YEAR_MAX);
    return load_year(s, year, NULL, out, err);
}

static bool working(fxb_calendar_kind k, uint32_t date)
{
    return k == FXB_CALENDAR_WORKDAY || (k == FXB_CALENDAR_NORMAL && !weekend(date));
}

fxb_code fxb_calendar_is_working_day(fxb_store *s, uint32_t date, bool *working_out, fxb_err *err)
{
    if (!fxb_calendar_date_valid(date))
        return bad_date(err, "date");
    char field[16];
    snprintf(field, sizeof field, "%08" PRIu32, date);
    uint32_t year = date / 10000;
    redisReply *r = fxb_store_command(
        s, err, "HMGET " KEY_PREFIX "%" PRIu32 " " FIELD_UPDATED " %s", year, field);
    if (r == NULL)
        return err->code;
    bool shape = r->type == REDIS_REPLY_ARRAY && r->elements == 2;
    bool missing = shape && r->element[0]->type != REDIS_REPLY_STRING;
    fxb_calendar_kind k = FXB_CALENDAR_NORMAL;
    bool ok = shape && !missing;
    if (ok && r->element[1]->type == REDIS_REPLY_STRING) {
        const char *name;
        size_t name_len;
        ok = parse_value(r->element[1]->str, r->element[1]->len, &k, &name, &name_len);
    }
    freeReplyObject(r);
    if (missing)
        return year_missing(err, year);
    if (!ok)
        return corrupt(err, year, "a day's value is not \"h|<name>\" or \"w|<name>\"");
    *working_out = working(k, date);
    return FXB_OK;
}

/* The years one count reads, each once. */
typedef struct year_cache {
    size_t n;
    year_kinds years[SPAN_YEAR];
} year_cache;

static fxb_code kind_of(fxb_store *s, year_cache *c, uint32_t date, fxb_calendar_kind *k,
                        fxb_err *err)
{
    uint32_t year = date / 10000;
    size_t i = 0;
    while (i < c->n && c->years[i].year != year)
        i++;
    if (i == c->n) {
        if (c->n == SPAN_YEAR) /* cannot happen within FXB_CALENDAR_SPAN_MAX days */
            return fxb_err_set(err, FXB_INTERNAL, "CALENDAR_SPAN", ZH_BUSY,
                               "a count touched too many years");
        fxb_code rc = load_year(s, year, &c->years[i], NULL, err);
        if (rc != FXB_OK)
            return rc;
        c->n++;
    }
    *k = (fxb_calendar_kind)c->years[i].kind[day_of_year(date)];
    return FXB_OK;
}

fxb_code fxb_calendar_add_working_days(fxb_store *s, uint32_t from, uint32_t n, uint32_t *out,
                                       fxb_err *err)
{
    if (!fxb_calendar_date_valid(from))
        return bad_date(err, "from_date");
    if (n > FXB_CALENDAR_MAX_DAYS)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "WORKING_DAYS_INVALID",
                           "工作日天数应在0到1000之间", "working_days must be 0..%d",
                           FXB_CALENDAR_MAX_DAYS);
    year_cache *c = malloc(sizeof *c);
    if (c == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    c->n = 0;
    int64_t day = fxb_calendar_day_number(from);
    uint32_t date = from, left = n;
    fxb_code rc = FXB_OK;
    for (int steps = 0; left > 0 && rc == FXB_OK; steps++) {
        if (steps == FXB_CALENDAR_SPAN_MAX) {
            rc = fxb_err_set(err, FXB_FAILED_PRECONDITION, "CALENDAR_SPAN_EXCEEDED", ZH_BUSY,
                             "%" PRIu32 " working days do not fit in %d calendar days", n,
                             FXB_CALENDAR_SPAN_MAX);
            break;
        }
        date = date_of_day(++day);
        if (!fxb_calendar_date_valid(date)) {
            rc = year_missing(err, date / 10000);
            break;
        }
        fxb_calendar_kind k = FXB_CALENDAR_NORMAL;
        rc = kind_of(s, c, date, &k, err);
        if (rc == FXB_OK && working(k, date))
            left--;
    }
    free(c);
    if (rc == FXB_OK)
        *out = date;
    return rc;
}

fxb_code fxb_calendar_working_days_between(fxb_store *s, uint32_t from, uint32_t to, uint32_t *out,
                                           fxb_err *err)
{
    if (!fxb_calendar_date_valid(from))
        return bad_date(err, "from");
    if (!fxb_calendar_date_valid(to))
        return bad_date(err, "to");
    int64_t a = fxb_calendar_day_number(from), b = fxb_calendar_day_number(to);
    if (b <= a) {
        *out = 0;
        return FXB_OK;
    }
    if (b - a > FXB_CALENDAR_SPAN_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "RANGE_TOO_LONG", "日期范围过长",
                           "from and to may be at most %d days apart", FXB_CALENDAR_SPAN_MAX);
    year_cache *c = malloc(sizeof *c);
    if (c == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    c->n = 0;
    uint32_t count = 0;
    fxb_code rc = FXB_OK;
    for (int64_t day = a + 1; day <= b && rc == FXB_OK; day++) {
        uint32_t date = date_of_day(day);
        fxb_calendar_kind k = FXB_CALENDAR_NORMAL;
        rc = kind_of(s, c, date, &k, err);
        if (rc == FXB_OK && working(k, date))
            count++;
    }
    free(c);
    if (rc == FXB_OK)
        *out = count;
    return rc;
}

/* --- writing ---------------------------------------------------------------- */

/* KEYS[1] the year's hash, KEYS[2] the years set; ARGV: year, now_ms, then
 * field, value pairs. Replaces the year whole. */
static fxb_script replace_script =
    FXB_SCRIPT("calendar_replace", "redis.call('DEL', KEYS[1])\n"
                                   "redis.call('HSET', KEYS[1], '" FIELD_UPDATED "', ARGV[2])\n"
                                   "for i = 3, #ARGV, 2 do\n"
                                   "  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
                                   "end\n"
                                   "redis.call('SADD', KEYS[2], ARGV[1])\n"
                                   "return (#ARGV - 2) / 2\n");

/* KEYS[1] the year's hash; ARGV: field, value ("" = remove), now_ms. */
static fxb_script set_script = FXB_SCRIPT(
    "calendar_set", "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
                    "  return redis.error_reply('FXB 9 CALENDAR_YEAR_MISSING the year has no "
                    "calendar data: import it first')\n"
                    "end\n"
                    "if ARGV[2] == '' then\n"
                    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
                    "else\n"
                    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                    "end\n"
                    "redis.call('HSET', KEYS[1], '" FIELD_UPDATED "', ARGV[3])\n"
                    "return 1\n");

fxb_code fxb_calendar_set_day(fxb_store *s, uint32_t date, fxb_calendar_kind kind, const char *name,
                              int64_t now_ms, fxb_err *err)
{
    if (!fxb_calendar_date_valid(date))
        return bad_date(err, "date");
    if (kind != FXB_CALENDAR_NORMAL && kind != FXB_CALENDAR_HOLIDAY && kind != FXB_CALENDAR_WORKDAY)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DAY_KIND_INVALID", "日期类型无效",
                           "unknown day kind");
    if (name != NULL && (kind == FXB_CALENDAR_NORMAL || !fxb_calendar_name_valid(name)))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "NAME_INVALID", "名称无效",
                           "a name is 1..%d characters of UTF-8 without control characters, and "
                           "only holidays and make-up working days have one",
                           FXB_CALENDAR_NAME_CHARS_MAX);
    if (kind == FXB_CALENDAR_WORKDAY && !weekend(date))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DAY_KIND_INVALID",
                           "调休上班日只能是周六或周日",
                           "a make-up working day must be a Saturday or Sunday");
    if (kind == FXB_CALENDAR_HOLIDAY && weekend(date) && name == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DAY_KIND_INVALID",
                           "周末作为节假日时须注明节日名称",
                           "a weekend day is a rest day already: as a holiday it needs the "
                           "holiday's name");
    char key[32], field[16], value[FXB_CALENDAR_NAME_BYTES_MAX + 3], now[24];
    snprintf(key, sizeof key, KEY_PREFIX "%" PRIu32, date / 10000);
    snprintf(field, sizeof field, "%08" PRIu32, date);
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    if (kind == FXB_CALENDAR_NORMAL)
        value[0] = '\0';
    else
        snprintf(value, sizeof value, "%c|%s", kind == FXB_CALENDAR_HOLIDAY ? 'h' : 'w',
                 name                           ? name
                 : kind == FXB_CALENDAR_HOLIDAY ? DEFAULT_HOLIDAY
                                                : DEFAULT_WORKDAY);
    const char *keys[] = {key};
    const char *args[] = {field, value, now};
    redisReply *r = fxb_store_eval(s, err, &set_script, 1, keys, 3, args, NULL);
    if (r == NULL) {
        if (strcmp(err->reason, "CALENDAR_YEAR_MISSING") == 0)
            return year_missing(err, date / 10000);
        return err->code;
    }
    freeReplyObject(r);
    return FXB_OK;
}

/* --- import ----------------------------------------------------------------- */

typedef struct import_state {
    FILE *errs;
    size_t errors;
} import_state;

static void problem(import_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(import_state *st, const char *fmt, ...)
{
    st->errors++;
    if (st->errs == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(st->errs, fmt, ap);
    va_end(ap);
    fputc('\n', st->errs);
}

/* Reports the keys of obj not in allowed (NULL-terminated). */
static void unknown_keys(import_state *st, json_t *obj, const char *where,
                         const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(k, allowed[i]) == 0;
        if (!known)
            problem(st, "%s: unknown field \"%s\"", where, k);
    }
}

/* Checks one list of days of a year (year 0 when the year itself is bad);
 * kinds (per day of the year) records what earlier lists said. */
static void check_days(import_state *st, json_t *list, size_t yi, uint32_t year,
                       fxb_calendar_kind kind, uint8_t kinds[FXB_CALENDAR_YEAR_DAYS])
{
    const char *lname = kind == FXB_CALENDAR_HOLIDAY ? "holidays" : "makeup_workdays";
    if (!json_is_array(list)) {
        problem(st, "years[%zu].%s: missing or not a list", yi, lname);
        return;
    }
    if (kind == FXB_CALENDAR_HOLIDAY && json_array_size(list) == 0)
        problem(st, "years[%zu].holidays: empty (every year has public holidays)", yi);
    static const char *const day_keys[] = {"date", "name", NULL};
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        char where[64];
        snprintf(where, sizeof where, "years[%zu].%s[%zu]", yi, lname, i);
        if (!json_is_object(e)) {
            problem(st, "%s: not an object {\"date\": yyyymmdd, \"name\": \"...\"}", where);
            continue;
        }
        unknown_keys(st, e, where, day_keys);
        json_t *jd = json_object_get(e, "date");
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name == NULL)
            problem(st, "%s: name missing or not a string", where);
        else if (!fxb_calendar_name_valid(name))
            problem(st,
                    "%s: name \"%.100s\" is not 1..%d characters without control "
                    "characters or spaces at the ends",
                    where, name, FXB_CALENDAR_NAME_CHARS_MAX);
        if (!json_is_integer(jd)) {
            problem(st, "%s: date missing or not an integer yyyymmdd", where);
            continue;
        }
        json_int_t v = json_integer_value(jd);
        if (v < 0 || v > 99991231 || !fxb_calendar_date_valid((uint32_t)v)) {
            problem(st, "%s: %" JSON_INTEGER_FORMAT " is not a real date yyyymmdd in %d..%d", where,
                    v, FXB_CALENDAR_YEAR_MIN, FXB_CALENDAR_YEAR_MAX);
            continue;
        }
        uint32_t date = (uint32_t)v;
        if (kind == FXB_CALENDAR_WORKDAY && !weekend(date))
            problem(st,
                    "%s: %" PRIu32 " is a weekday: a make-up working day is a Saturday or "
                    "Sunday",
                    where, date);
        if (year == 0)
            continue;
        if (date / 10000 != year) {
            problem(st, "%s: %" PRIu32 " is not in %" PRIu32, where, date, year);
            continue;
        }
        uint8_t *k = &kinds[day_of_year(date)];
        if (*k == (uint8_t)kind)
            problem(st, "%s: %" PRIu32 " is listed twice", where, date);
        else if (*k != FXB_CALENDAR_NORMAL)
            problem(st, "%s: %" PRIu32 " is both a holiday and a make-up working day", where, date);
        else
            *k = (uint8_t)kind;
    }
}

/* Validates the document; the number of errors (each printed). */
static size_t validate(import_state *st, json_t *root)
{
    static const char *const top_keys[] = {"source", "years", NULL};
    static const char *const year_keys[] = {"year", "holidays", "makeup_workdays", NULL};
    if (!json_is_object(root)) {
        problem(st, "the document is not an object {\"source\": ..., \"years\": [...]}");
        return st->errors;
    }
    unknown_keys(st, root, "the document", top_keys);
    json_t *src = json_object_get(root, "source");
    if (src != NULL && !json_is_string(src))
        problem(st, "source: not a string");
    json_t *years = json_object_get(root, "years");
    if (!json_is_array(years) || json_array_size(years) == 0) {
        problem(st, "years: missing, not a list, or empty");
        return st->errors;
    }
    bool seen[FXB_CALENDAR_YEARS] = {false};
    size_t yi;
    json_t *y;
    json_array_foreach(years, yi, y)
    {
        char where[32];
        snprintf(where, sizeof where, "years[%zu]", yi);
        if (!json_is_object(y)) {
            problem(st, "%s: not an object", where);
            continue;
        }
        unknown_keys(st, y, where, year_keys);
        json_t *jy = json_object_get(y, "year");
        json_int_t v = json_is_integer(jy) ? json_integer_value(jy) : 0;
        uint32_t year = 0;
        if (v < FXB_CALENDAR_YEAR_MIN || v > FXB_CALENDAR_YEAR_MAX)
            problem(st, "%s: year missing or not an integer in %d..%d", where,
                    FXB_CALENDAR_YEAR_MIN, FXB_CALENDAR_YEAR_MAX);
        else if (seen[v - FXB_CALENDAR_YEAR_MIN])
            problem(st, "%s: year %" JSON_INTEGER_FORMAT " appears twice", where, v);
        else {
            year = (uint32_t)v;
            seen[v - FXB_CALENDAR_YEAR_MIN] = true;
        }
        uint8_t kinds[FXB_CALENDAR_YEAR_DAYS] = {0};
        check_days(st, json_object_get(y, "holidays"), yi, year, FXB_CALENDAR_HOLIDAY, kinds);
        check_days(st, json_object_get(y, "makeup_workdays"), yi, year, FXB_CALENDAR_WORKDAY,
                   kinds);
    }
    return st->errors;
}

/* One field/value pair of the replace script. */
typedef struct import_arg {
    char field[9];
    char value[FXB_CALENDAR_NAME_BYTES_MAX + 3];
} import_arg;

static size_t add_args(json_t *list, char tag, import_arg *args, size_t n)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        snprintf(args[n].field, sizeof args[n].field, "%08" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(e, "date")));
        snprintf(args[n].value, sizeof args[n].value, "%c|%s", tag,
                 json_string_value(json_object_get(e, "name")));
        n++;
    }
    return n;
}

/* Replaces one validated year. */
static fxb_code write_year(fxb_store *s, json_t *y, const char *now, import_arg *args,
                           const char **argv, fxb_calendar_import_result *res, fxb_err *err)
{
    json_t *hol = json_object_get(y, "holidays"), *work = json_object_get(y, "makeup_workdays");
    size_t nh = add_args(hol, 'h', args, 0);
    size_t n = add_args(work, 'w', args, nh);
    char key[32], year[8];
    json_int_t v = json_integer_value(json_object_get(y, "year"));
    snprintf(key, sizeof key, KEY_PREFIX "%" JSON_INTEGER_FORMAT, v);
    snprintf(year, sizeof year, "%" JSON_INTEGER_FORMAT, v);
    argv[0] = year;
    argv[1] = now;
    for (size_t i = 0; i < n; i++) {
        argv[2 + 2 * i] = args[i].field;
        argv[3 + 2 * i] = args[i].value;
    }
    const char *keys[] = {key, KEY_YEARS};
    redisReply *r = fxb_store_eval(s, err, &replace_script, 2, keys, (int)(2 + 2 * n), argv, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    /* insertion keeps the list ascending */
    size_t at = res->n_years;
    while (at > 0 && res->years[at - 1] > (uint32_t)v) {
        res->years[at] = res->years[at - 1];
        at--;
    }
    res->years[at] = (uint32_t)v;
    res->n_years++;
    res->holidays += nh;
    res->workdays += n - nh;
    return FXB_OK;
}

fxb_code fxb_calendar_import(fxb_store *s, const char *json, size_t len, int64_t now_ms, FILE *errs,
                             fxb_calendar_import_result *res, fxb_err *err)
{
    memset(res, 0, sizeof *res);
    import_state st = {.errs = errs, .errors = 0};
    json_t *root = NULL;
    if (len > FXB_CALENDAR_FILE_MAX) {
        problem(&st, "the document is larger than %d bytes", FXB_CALENDAR_FILE_MAX);
    } else {
        json_error_t je;
        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
        if (root == NULL)
            problem(&st, "not JSON: line %d column %d: %s", je.line, je.column, je.text);
        else
            validate(&st, root);
    }
    res->errors = st.errors;
    if (st.errors > 0) {
        json_decref(root);
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "CALENDAR_DATA_INVALID", "工作日历数据有误",
                           "%zu error%s in the calendar data: nothing imported", st.errors,
                           st.errors == 1 ? "" : "s");
    }
    import_arg *args = malloc(FXB_CALENDAR_YEAR_DAYS * sizeof *args);
    const char **argv = malloc((2 + 2 * FXB_CALENDAR_YEAR_DAYS) * sizeof *argv);
    fxb_code rc = FXB_OK;
    if (args == NULL || argv == NULL)
        rc = fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    size_t yi;
    json_t *y;
    json_array_foreach(json_object_get(root, "years"), yi, y)
    {
        if (rc != FXB_OK)
            break;
        rc = write_year(s, y, now, args, argv, res, err);
    }
    free(args);
    free(argv);
    json_decref(root);
    return rc;
}

/* --- CalendarService -------------------------------------------------------- */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

/* The days of one kind as CalendarDay messages in the arena. */
static bool fill_days(fxb_arena *a, const fxb_calendar_year *y, fxb_calendar_kind kind,
                      Fxb__V1__CalendarDay ***out, size_t *n_out)
{
    size_t n = 0;
    for (size_t i = 0; i < y->n_days; i++)
        n += y->days[i].kind == kind;
    Fxb__V1__CalendarDay **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    Fxb__V1__CalendarDay *items = fxb_arena_calloc(a, n ? n : 1, sizeof *items);
    if (list == NULL || items == NULL)
        return false;
    size_t j = 0;
    for (size_t i = 0; i < y->n_days; i++) {
        if (y->days[i].kind != kind)
            continue;
        fxb__v1__calendar_day__init(&items[j]);
        items[j].date = y->days[i].date;
        items[j].name = fxb_arena_strdup(a, y->days[i].name);
        if (items[j].name == NULL)
            return false;
        list[j] = &items[j];
        j++;
    }
    *out = list;
    *n_out = n;
    return true;
}

static fxb_code get_calendar(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetCalendarRequest *req = (const Fxb__V1__GetCalendarRequest *)req_msg;
    Fxb__V1__Calendar *resp = (Fxb__V1__Calendar *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_calendar_year *y = fxb_arena_alloc(a, sizeof *y);
    if (y == NULL)
        return out_of_memory(ctx);
    fxb_err err;
    if (fxb_calendar_read_year(fxb_ctx_store(ctx), req->year, y, &err) != FXB_OK) {
        if (err.code == FXB_FAILED_PRECONDITION) /* a missing resource, for this method */
            err.code = FXB_NOT_FOUND;
        return fxb_ctx_fail_err(ctx, &err);
    }
    if (!fill_days(a, y, FXB_CALENDAR_HOLIDAY, &resp->holidays, &resp->n_holidays) ||
        !fill_days(a, y, FXB_CALENDAR_WORKDAY, &resp->makeup_workdays, &resp->n_makeup_workdays))
        return out_of_memory(ctx);
    resp->year = y->year;
    resp->updated_at_ms = y->updated_at_ms;
    return FXB_OK;
}

static fxb_code add_working_days(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__AddWorkingDaysRequest *req = (const Fxb__V1__AddWorkingDaysRequest *)req_msg;
    Fxb__V1__AddWorkingDaysResponse *resp = (Fxb__V1__AddWorkingDaysResponse *)resp_msg;
    fxb_err err;
    uint32_t date;
    if (fxb_calendar_add_working_days(fxb_ctx_store(ctx), req->from_date, req->working_days, &date,
                                      &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    resp->date = date;
    resp->deadline_ms = fxb_calendar_end_of_day_ms(date);
    resp->calendar_days =
        (uint32_t)(fxb_calendar_day_number(date) - fxb_calendar_day_number(req->from_date));
    return FXB_OK;
}

static const fxb_method methods[] = {
    {.path = "/fxb.v1.CalendarService/GetCalendar",
     .request = &fxb__v1__get_calendar_request__descriptor,
     .response = &fxb__v1__calendar__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = get_calendar,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.CalendarService/AddWorkingDays",
     .request = &fxb__v1__add_working_days_request__descriptor,
     .response = &fxb__v1__add_working_days_response__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = add_working_days,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = SMALL_REQUEST}},
};

const fxb_service fxb_calendar_service = {
    .name = "fxb.v1.CalendarService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
