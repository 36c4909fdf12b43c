/* The working-day calendar against a real Redis (db 3, flushed before each
 * test), loaded with the embedded seed data/calendar/cn.json through
 * fxb_calendar_import, the function `fxb-admin calendar import` runs.
 *
 * The seed, from the State Council General Office notices (weekdays checked
 * with Python's datetime):
 *   2024 春节 2/10 (Sat) .. 2/17 (Sat) rest; 2/4 (Sun) and 2/18 (Sun) work;
 *        2/9 (Fri, 除夕) is an ordinary working day.
 *   2025 春节 1/28 (Tue) .. 2/4 (Tue) rest; 1/26 (Sun) and 2/8 (Sat) work.
 *   2026 元旦 1/1 (Thu) .. 1/3 (Sat) rest; 1/4 (Sun) works.
 *        春节 2/15 (Sun) .. 2/23 (Mon) rest; 2/14 (Sat) and 2/28 (Sat) work.
 * Working days per year (366 or 365 days - 104 weekend days - the public
 * holidays proper, 11 in 2024 and 13 from 2025): 251, 248, 248. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "services/calendar/calendar.h"
#include "store/datafile.h"

#define TEST_DB 3
#define NOW_MS  1700000000000LL

static char test_url[FXB_STORE_URL_MAX + 64];

static int group_setup(void **state)
{
    (void)state;
    return fxb_test_redis_url(TEST_DB, test_url, sizeof test_url);
}

static int each_setup(void **state)
{
    *state = fxb_test_store_open(test_url);
    return *state != NULL ? 0 : -1;
}

static int each_teardown(void **state)
{
    fxb_store_free(*state);
    return 0;
}

/* --- helpers ---------------------------------------------------------------- */

static void load_seed(fxb_store *s)
{
    const fxb_datafile *f = fxb_datafile_find("calendar/cn.json");
    assert_non_null(f);
    fxb_calendar_import_result res;
    fxb_err err;
    if (fxb_calendar_import(s, f->bytes, f->len, NOW_MS, stderr, &res, &err) != FXB_OK)
        fail_msg("seed import: %s", err.message);
}

static uint32_t add(fxb_store *s, uint32_t from, uint32_t n)
{
    uint32_t out = 0;
    fxb_err err;
    if (fxb_calendar_add_working_days(s, from, n, &out, &err) != FXB_OK)
        fail_msg("%u + %u working days: %s %s", from, n, err.reason, err.message);
    return out;
}

static uint32_t between(fxb_store *s, uint32_t from, uint32_t to)
{
    uint32_t out = 0;
    fxb_err err;
    if (fxb_calendar_working_days_between(s, from, to, &out, &err) != FXB_OK)
        fail_msg("%u..%u: %s %s", from, to, err.reason, err.message);
    return out;
}

static bool is_working(fxb_store *s, uint32_t date)
{
    bool w = false;
    fxb_err err;
    if (fxb_calendar_is_working_day(s, date, &w, &err) != FXB_OK)
        fail_msg("%u: %s %s", date, err.reason, err.message);
    return w;
}

static void assert_err(fxb_code rc, const fxb_err *err, fxb_code code, const char *reason)
{
    if (rc != code || strcmp(err->reason, reason) != 0)
        fail_msg("expected %s %s, got %s %s (%s)", fxb_code_name(code), reason, fxb_code_name(rc),
                 rc == FXB_OK ? "" : err->reason, rc == FXB_OK ? "" : err->message);
    assert_true(err->message_zh[0] != '\0');
}

/* The integer reply of a command given as its words, NULL-terminated. */
static long long integer_reply(fxb_store *s, const char *first, ...) __attribute__((sentinel));
static long long integer_reply(fxb_store *s, const char *first, ...)
{
    const char *argv[8];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && argc < 8; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    fxb_err err;
    redisReply *r = fxb_store_commandv(s, &err, argc, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static char *string_reply(fxb_store *s, const char *fmt, const char *a)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, fmt, a);
    assert_non_null(r);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

/* HGETALL calls the server has answered so far (INFO commandstats). */
static long long hgetall_calls(fxb_store *s)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "INFO commandstats");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    const char *p = strstr(r->str, "cmdstat_hgetall:calls=");
    long long n = p ? strtoll(p + strlen("cmdstat_hgetall:calls="), NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

/* Imports doc; returns the code, the error count and what was printed. */
static fxb_code import_text(fxb_store *s, const char *doc, fxb_calendar_import_result *res,
                            char **printed, fxb_err *err)
{
    size_t size = 0;
    FILE *out = open_memstream(printed, &size);
    assert_non_null(out);
    fxb_code rc = fxb_calendar_import(s, doc, strlen(doc), NOW_MS, out, res, err);
    fclose(out);
    return rc;
}

/* --- the seed --------------------------------------------------------------- */

static void test_the_seed_imports_three_years_with_every_rest_day(void **state)
{
    fxb_store *s = *state;
    const fxb_datafile *f = fxb_datafile_find("calendar/cn.json");
    assert_non_null(f);
    fxb_calendar_import_result res;
    fxb_err err;
    assert_int_equal(fxb_calendar_import(s, f->bytes, f->len, NOW_MS, stderr, &res, &err), FXB_OK);
    assert_int_equal(res.errors, 0);
    assert_int_equal(res.n_years, 3);
    assert_int_equal(res.years[0], 2024);
    assert_int_equal(res.years[1], 2025);
    assert_int_equal(res.years[2], 2026);
    /* 2024: 1 + 8 + 3 + 5 + 3 + 3 + 7; 2025: 1 + 8 + 3 + 5 + 3 + 8;
     * 2026: 3 + 9 + 3 + 5 + 3 + 3 + 7 */
    assert_int_equal(res.holidays, 30 + 28 + 33);
    assert_int_equal(res.workdays, 8 + 5 + 6);
    assert_int_equal(integer_reply(s, "SCARD", "fxb:calendar:years", NULL), 3);
    assert_int_equal(integer_reply(s, "SISMEMBER", "fxb:calendar:years", "2025", NULL), 1);
    char *v = string_reply(s, "HGET fxb:calendar:2024 %s", "20240218");
    assert_string_equal(v, "w|春节调休上班");
    free(v);
    v = string_reply(s, "HGET fxb:calendar:2024 %s", "20240210");
    assert_string_equal(v, "h|春节");
    free(v);
    v = string_reply(s, "HGET fxb:calendar:2024 %s", "updated_at_ms");
    assert_string_equal(v, "1700000000000");
    free(v);
}

static void test_a_year_reads_back_in_date_order(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    fxb_calendar_year *y = malloc(sizeof *y);
    assert_non_null(y);
    fxb_err err;
    assert_int_equal(fxb_calendar_read_year(s, 2024, y, &err), FXB_OK);
    assert_int_equal(y->year, 2024);
    assert_int_equal(y->updated_at_ms, NOW_MS);
    assert_int_equal(y->n_days, 38);
    assert_int_equal(y->days[0].date, 20240101);
    assert_int_equal(y->days[0].kind, FXB_CALENDAR_HOLIDAY);
    assert_string_equal(y->days[0].name, "元旦");
    assert_int_equal(y->days[1].date, 20240204);
    assert_int_equal(y->days[1].kind, FXB_CALENDAR_WORKDAY);
    assert_string_equal(y->days[1].name, "春节调休上班");
    for (size_t i = 1; i < y->n_days; i++)
        assert_true(y->days[i - 1].date < y->days[i].date);
    assert_int_equal(y->days[y->n_days - 1].date, 20241012);
    assert_err(fxb_calendar_read_year(s, 2027, y, &err), &err, FXB_FAILED_PRECONDITION,
               "CALENDAR_YEAR_MISSING");
    assert_err(fxb_calendar_read_year(s, 1999, y, &err), &err, FXB_INVALID_ARGUMENT,
               "YEAR_INVALID");
    free(y);
}

/* --- which days work ---------------------------------------------------------- */

static void test_make_up_days_work_and_holidays_rest(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_true(is_working(s, 20240209));  /* Fri, 除夕 2024: officially a working day */
    assert_false(is_working(s, 20240210)); /* Sat, 春节 */
    assert_false(is_working(s, 20240212)); /* Mon, 春节 */
    assert_true(is_working(s, 20240218));  /* Sun, make-up */
    assert_true(is_working(s, 20240204));  /* Sun, make-up */
    assert_false(is_working(s, 20240610)); /* Mon, 端午 */
    assert_false(is_working(s, 20240608)); /* Sat, an ordinary weekend in the period */
    assert_false(is_working(s, 20240302)); /* Sat, no exception */
    assert_true(is_working(s, 20240301));  /* Fri, no exception */
    assert_true(is_working(s, 20260104));  /* Sun, make-up for 元旦 2026 */
    bool w;
    fxb_err err;
    assert_err(fxb_calendar_is_working_day(s, 20230104, &w, &err), &err, FXB_FAILED_PRECONDITION,
               "CALENDAR_YEAR_MISSING");
    assert_err(fxb_calendar_is_working_day(s, 20240230, &w, &err), &err, FXB_INVALID_ARGUMENT,
               "DATE_INVALID");
}

static void test_a_year_without_data_is_never_guessed(void **state)
{
    fxb_store *s = *state;
    /* nothing loaded: even a plain Wednesday is not counted */
    uint32_t out;
    fxb_err err;
    assert_err(fxb_calendar_add_working_days(s, 20240306, 1, &out, &err), &err,
               FXB_FAILED_PRECONDITION, "CALENDAR_YEAR_MISSING");
    assert_err(fxb_calendar_working_days_between(s, 20240306, 20240308, &out, &err), &err,
               FXB_FAILED_PRECONDITION, "CALENDAR_YEAR_MISSING");
}

/* --- adding working days ------------------------------------------------------ */

/* From Wed 2024-02-07: Thu 8 (1), Fri 9 (2: 除夕 was a working day in
 * 2024), Feb 10..17 rest, Sun 18 (3, make-up), Mon 19 (4), Tue 20 (5). */
static void test_five_working_days_cross_the_2024_spring_festival(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_int_equal(add(s, 20240207, 1), 20240208);
    assert_int_equal(add(s, 20240207, 2), 20240209);
    assert_int_equal(add(s, 20240207, 3), 20240218);
    assert_int_equal(add(s, 20240207, 4), 20240219);
    assert_int_equal(add(s, 20240207, 5), 20240220);
}

/* From Fri 2025-01-24: Sat 25 rests, Sun 26 (1, make-up), Mon 27 (2), Jan
 * 28 .. Feb 4 rest, Wed Feb 5 (3). */
static void test_three_working_days_cross_the_2025_spring_festival(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_int_equal(add(s, 20250124, 1), 20250126);
    assert_int_equal(add(s, 20250124, 2), 20250127);
    assert_int_equal(add(s, 20250124, 3), 20250205);
}

/* From Thu 2026-02-12: Fri 13 (1), Sat 14 (2, make-up before 春节). */
static void test_a_saturday_make_up_day_counts_in_2026(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_int_equal(add(s, 20260212, 1), 20260213);
    assert_int_equal(add(s, 20260212, 2), 20260214);
    /* then Feb 15 .. 23 rest: the third is Tue Feb 24 */
    assert_int_equal(add(s, 20260212, 3), 20260224);
}

/* From Wed 2025-12-31, one working day: Jan 1 (Thu) .. Jan 3 (Sat) are 元旦
 * 2026 rest days, and Sun Jan 4 is the make-up working day, so the answer
 * is 2026-01-04, not Mon Jan 5. */
static void test_the_count_crosses_the_year_into_a_sunday_make_up_day(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_int_equal(add(s, 20251231, 1), 20260104);
    assert_int_equal(add(s, 20251231, 2), 20260105);
}

static void test_zero_working_days_is_the_start_date(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_int_equal(add(s, 20240210, 0), 20240210); /* even a holiday */
    assert_int_equal(add(s, 20270105, 0), 20270105); /* nothing to read */
}

/* From Fri 2026-12-25: Mon 28 .. Thu 31 are four working days; a fifth
 * needs 2027, which has no data. */
static void test_a_count_running_into_a_year_without_data_fails(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_int_equal(add(s, 20261225, 4), 20261231);
    uint32_t out = 0;
    fxb_err err;
    assert_err(fxb_calendar_add_working_days(s, 20261225, 5, &out, &err), &err,
               FXB_FAILED_PRECONDITION, "CALENDAR_YEAR_MISSING");
    assert_non_null(strstr(err.message, "2027"));
    assert_err(fxb_calendar_add_working_days(s, 20231229, 1, &out, &err), &err,
               FXB_FAILED_PRECONDITION, "CALENDAR_YEAR_MISSING");
}

static void test_bad_dates_and_counts_are_refused(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    uint32_t out = 0;
    fxb_err err;
    assert_err(fxb_calendar_add_working_days(s, 20240230, 1, &out, &err), &err,
               FXB_INVALID_ARGUMENT, "DATE_INVALID");
    assert_err(fxb_calendar_add_working_days(s, 0, 1, &out, &err), &err, FXB_INVALID_ARGUMENT,
               "DATE_INVALID");
    assert_err(fxb_calendar_add_working_days(s, 20240101, FXB_CALENDAR_MAX_DAYS + 1, &out, &err),
               &err, FXB_INVALID_ARGUMENT, "WORKING_DAYS_INVALID");
    assert_err(fxb_calendar_working_days_between(s, 20240101, 20241301, &out, &err), &err,
               FXB_INVALID_ARGUMENT, "DATE_INVALID");
    assert_err(fxb_calendar_working_days_between(s, 20240101, 20400101, &out, &err), &err,
               FXB_INVALID_ARGUMENT, "RANGE_TOO_LONG");
}

/* 600 working days from 2024-01-01 run through 2024 (251), 2025 (248) and
 * into 2026: three HGETALLs, not one read per day. */
static void test_a_count_reads_each_year_once(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    long long before = hgetall_calls(s);
    uint32_t end = add(s, 20240101, 600);
    long long after = hgetall_calls(s);
    assert_int_equal(after - before, 3);
    /* 251 + 248 = 499 by the end of 2025; the 101st working day of 2026 */
    assert_int_equal(between(s, 20251231, end), 101);
    assert_int_equal(between(s, 20231231, end), 600); /* 2023 itself is not read */
}

/* --- counting working days between two dates --------------------------------- */

static void test_working_days_between_count_after_from_up_to_to(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    assert_int_equal(between(s, 20240207, 20240220), 5);
    assert_int_equal(between(s, 20240209, 20240218), 1); /* only the make-up Sunday */
    assert_int_equal(between(s, 20240210, 20240217), 0); /* all rest */
    assert_int_equal(between(s, 20240220, 20240220), 0);
    assert_int_equal(between(s, 20240220, 20240207), 0); /* to before from */
    assert_int_equal(between(s, 20231231, 20241231), 251);
    assert_int_equal(between(s, 20241231, 20251231), 248);
    assert_int_equal(between(s, 20251231, 20261231), 248);
    assert_int_equal(between(s, 20251231, 20260104), 1);
    uint32_t out;
    fxb_err err;
    assert_err(fxb_calendar_working_days_between(s, 20261230, 20270104, &out, &err), &err,
               FXB_FAILED_PRECONDITION, "CALENDAR_YEAR_MISSING");
}

/* --- import ----------------------------------------------------------------- */

static void test_import_reports_every_error_and_writes_nothing(void **state)
{
    fxb_store *s = *state;
    const char *doc =
        "{\"source\": \"test\", \"extra\": 1, \"years\": ["
        "{\"year\": 2030, \"holidays\": ["
        "  {\"date\": 20300230, \"name\": \"元旦\"}," /* not a real date */
        "  {\"date\": 20310101, \"name\": \"元旦\"}," /* another year */
        "  {\"date\": 20300101, \"name\": \"\"},"     /* empty name */
        "  {\"date\": 20300102, \"name\": \"元旦\"},"
        "  {\"date\": 20300102, \"name\": \"元旦\"}]," /* listed twice */
        " \"makeup_workdays\": ["
        "  {\"date\": 20300103, \"name\": \"调休\"}," /* a Thursday */
        "  {\"date\": 20300105, \"name\": \"调休\"}," /* Sat: fine */
        "  {\"date\": 20300102, \"name\": \"调休\"}," /* both kinds (and a Wed) */
        "  {\"date\": 20300106, \"name\": \"一二三四五六七八九十一二三四五六七八九十一\"}]},"
        "{\"year\": 2030, \"holidays\": [], \"makeup_workdays\": []}," /* twice; empty */
        "{\"year\": 1999, \"holidays\": [{\"date\": 19990101, \"name\": \"元旦\"}],"
        " \"makeup_workdays\": []}"
        "]}";
    fxb_calendar_import_result res;
    fxb_err err;
    char *printed = NULL;
    fxb_code rc = import_text(s, doc, &res, &printed, &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "CALENDAR_DATA_INVALID");
    static const char *const expected[] = {
        "unknown field \"extra\"",
        "years[0].holidays[0]: 20300230 is not a real date",
        "years[0].holidays[1]: 20310101 is not in 2030",
        "years[0].holidays[2]: name \"\"",
        "years[0].holidays[4]: 20300102 is listed twice",
        "years[0].makeup_workdays[0]: 20300103 is a weekday",
        "years[0].makeup_workdays[2]: 20300102 is a weekday",
        "years[0].makeup_workdays[2]: 20300102 is both a holiday and a make-up working day",
        "years[0].makeup_workdays[3]: name",
        "years[1]: year 2030 appears twice",
        "years[1].holidays: empty",
        "years[2]: year missing or not an integer in 2000..2100",
        "years[2].holidays[0]: 19990101 is not a real date",
    };
    size_t n = sizeof expected / sizeof expected[0];
    for (size_t i = 0; i < n; i++)
        if (strstr(printed, expected[i]) == NULL)
            fail_msg("missing \"%s\" in:\n%s", expected[i], printed);
    assert_int_equal(res.errors, n);
    size_t lines = 0;
    for (const char *p = printed; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, n); /* one line per error */
    assert_int_equal(res.n_years, 0);
    assert_int_equal(integer_reply(s, "DBSIZE", NULL), 0);
    free(printed);
}

static void test_a_bad_document_leaves_the_stored_years_untouched(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    /* 2024 is valid here, 2025 is not: neither is written */
    const char *doc = "{\"years\": ["
                      "{\"year\": 2024, \"holidays\": [{\"date\": 20240101, \"name\": \"元旦\"}],"
                      " \"makeup_workdays\": []},"
                      "{\"year\": 2025, \"holidays\": [{\"date\": 20250101, \"name\": \"元旦\"}],"
                      " \"makeup_workdays\": [{\"date\": 20250101, \"name\": \"调休\"}]}]}";
    fxb_calendar_import_result res;
    fxb_err err;
    char *printed = NULL;
    assert_err(import_text(s, doc, &res, &printed, &err), &err, FXB_INVALID_ARGUMENT,
               "CALENDAR_DATA_INVALID");
    free(printed);
    assert_int_equal(integer_reply(s, "HLEN", "fxb:calendar:2024", NULL), 38 + 1);
    assert_int_equal(integer_reply(s, "HLEN", "fxb:calendar:2025", NULL), 33 + 1);
    /* not JSON at all */
    assert_err(import_text(s, "{\"years\": [", &res, &printed, &err), &err, FXB_INVALID_ARGUMENT,
               "CALENDAR_DATA_INVALID");
    assert_non_null(strstr(printed, "not JSON"));
    free(printed);
    assert_int_equal(integer_reply(s, "HLEN", "fxb:calendar:2024", NULL), 38 + 1);
}

static void test_import_replaces_each_year_it_names_whole(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    fxb_err err;
    assert_int_equal(fxb_calendar_set_day(s, 20250307, FXB_CALENDAR_HOLIDAY, "测试", NOW_MS, &err),
                     FXB_OK);
    const char *doc = "{\"years\": [{\"year\": 2025, \"holidays\": ["
                      "{\"date\": 20250101, \"name\": \"元旦\"}], \"makeup_workdays\": []}]}";
    fxb_calendar_import_result res;
    char *printed = NULL;
    assert_int_equal(import_text(s, doc, &res, &printed, &err), FXB_OK);
    assert_string_equal(printed, "");
    free(printed);
    assert_int_equal(res.n_years, 1);
    assert_int_equal(res.holidays, 1);
    assert_int_equal(res.workdays, 0);
    /* 2025 is exactly the document: the set day and the seed's days are gone */
    assert_int_equal(integer_reply(s, "HLEN", "fxb:calendar:2025", NULL), 1 + 1);
    assert_true(is_working(s, 20250307));
    assert_true(is_working(s, 20250128));
    /* 2024 and 2026 are untouched */
    assert_int_equal(integer_reply(s, "HLEN", "fxb:calendar:2024", NULL), 38 + 1);
    assert_int_equal(integer_reply(s, "SCARD", "fxb:calendar:years", NULL), 3);
}

/* --- changing one day ----------------------------------------------------------- */

static void test_set_and_normal_change_one_day(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    fxb_err err;
    /* 除夕 2024 as a holiday: the Spring Festival count moves a day */
    assert_int_equal(
        fxb_calendar_set_day(s, 20240209, FXB_CALENDAR_HOLIDAY, "除夕", NOW_MS + 5, &err), FXB_OK);
    assert_false(is_working(s, 20240209));
    assert_int_equal(add(s, 20240207, 5), 20240221);
    char *v = string_reply(s, "HGET fxb:calendar:2024 %s", "20240209");
    assert_string_equal(v, "h|除夕");
    free(v);
    v = string_reply(s, "HGET fxb:calendar:2024 %s", "updated_at_ms");
    assert_string_equal(v, "1700000000005");
    free(v);
    /* back to normal: the exception is removed */
    assert_int_equal(fxb_calendar_set_day(s, 20240209, FXB_CALENDAR_NORMAL, NULL, NOW_MS, &err),
                     FXB_OK);
    assert_int_equal(integer_reply(s, "HEXISTS", "fxb:calendar:2024", "20240209", NULL), 0);
    assert_int_equal(add(s, 20240207, 5), 20240220);
    /* a make-up Saturday, then removed again */
    assert_false(is_working(s, 20240302));
    assert_int_equal(fxb_calendar_set_day(s, 20240302, FXB_CALENDAR_WORKDAY, NULL, NOW_MS, &err),
                     FXB_OK);
    assert_true(is_working(s, 20240302));
    v = string_reply(s, "HGET fxb:calendar:2024 %s", "20240302");
    assert_string_equal(v, "w|调休上班");
    free(v);
    assert_int_equal(fxb_calendar_set_day(s, 20240302, FXB_CALENDAR_NORMAL, NULL, NOW_MS, &err),
                     FXB_OK);
    assert_false(is_working(s, 20240302));
    /* a seed make-up Sunday made normal rests again */
    assert_int_equal(fxb_calendar_set_day(s, 20240218, FXB_CALENDAR_NORMAL, NULL, NOW_MS, &err),
                     FXB_OK);
    assert_false(is_working(s, 20240218));
    assert_int_equal(add(s, 20240207, 5), 20240221);
    /* a weekday holiday without a name takes the default one */
    assert_int_equal(fxb_calendar_set_day(s, 20240306, FXB_CALENDAR_HOLIDAY, NULL, NOW_MS, &err),
                     FXB_OK);
    v = string_reply(s, "HGET fxb:calendar:2024 %s", "20240306");
    assert_string_equal(v, "h|节假日");
    free(v);
}

static void test_set_refuses_what_the_rules_forbid(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    fxb_err err;
    /* a make-up working day on a weekday (Wed) */
    assert_err(fxb_calendar_set_day(s, 20240306, FXB_CALENDAR_WORKDAY, NULL, NOW_MS, &err), &err,
               FXB_INVALID_ARGUMENT, "DAY_KIND_INVALID");
    /* a nameless holiday on a weekend (Sat); with a name it is fine */
    assert_err(fxb_calendar_set_day(s, 20240302, FXB_CALENDAR_HOLIDAY, NULL, NOW_MS, &err), &err,
               FXB_INVALID_ARGUMENT, "DAY_KIND_INVALID");
    assert_int_equal(fxb_calendar_set_day(s, 20240302, FXB_CALENDAR_HOLIDAY, "测试", NOW_MS, &err),
                     FXB_OK);
    /* names */
    assert_err(fxb_calendar_set_day(s, 20240306, FXB_CALENDAR_HOLIDAY, "", NOW_MS, &err), &err,
               FXB_INVALID_ARGUMENT, "NAME_INVALID");
    assert_err(fxb_calendar_set_day(s, 20240306, FXB_CALENDAR_HOLIDAY, "\xe5\x85", NOW_MS, &err),
               &err, FXB_INVALID_ARGUMENT, "NAME_INVALID");
    assert_err(fxb_calendar_set_day(s, 20240306, FXB_CALENDAR_NORMAL, "元旦", NOW_MS, &err), &err,
               FXB_INVALID_ARGUMENT, "NAME_INVALID");
    /* dates */
    assert_err(fxb_calendar_set_day(s, 20240230, FXB_CALENDAR_HOLIDAY, "x", NOW_MS, &err), &err,
               FXB_INVALID_ARGUMENT, "DATE_INVALID");
    /* a year without data is not created by one day */
    assert_err(fxb_calendar_set_day(s, 20270101, FXB_CALENDAR_HOLIDAY, "元旦", NOW_MS, &err), &err,
               FXB_FAILED_PRECONDITION, "CALENDAR_YEAR_MISSING");
    assert_int_equal(integer_reply(s, "EXISTS", "fxb:calendar:2027", NULL), 0);
    assert_int_equal(integer_reply(s, "HLEN", "fxb:calendar:2024", NULL), 38 + 1 + 1);
}

static void test_a_malformed_stored_day_is_data_loss(void **state)
{
    fxb_store *s = *state;
    load_seed(s);
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "HSET fxb:calendar:2024 20240305 x|oops");
    assert_non_null(r);
    freeReplyObject(r);
    uint32_t out;
    assert_err(fxb_calendar_add_working_days(s, 20240301, 1, &out, &err), &err, FXB_DATA_LOSS,
               "CALENDAR_CORRUPT");
    bool w;
    assert_err(fxb_calendar_is_working_day(s, 20240305, &w, &err), &err, FXB_DATA_LOSS,
               "CALENDAR_CORRUPT");
    r = fxb_store_command(s, &err, "HSET fxb:calendar:2025 20240305 h|elsewhere");
    assert_non_null(r);
    freeReplyObject(r);
    assert_err(fxb_calendar_add_working_days(s, 20250301, 1, &out, &err), &err, FXB_DATA_LOSS,
               "CALENDAR_CORRUPT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, each_setup, each_teardown)
        T(test_the_seed_imports_three_years_with_every_rest_day),
        T(test_a_year_reads_back_in_date_order),
        T(test_make_up_days_work_and_holidays_rest),
        T(test_a_year_without_data_is_never_guessed),
        T(test_five_working_days_cross_the_2024_spring_festival),
        T(test_three_working_days_cross_the_2025_spring_festival),
        T(test_a_saturday_make_up_day_counts_in_2026),
        T(test_the_count_crosses_the_year_into_a_sunday_make_up_day),
        T(test_zero_working_days_is_the_start_date),
        T(test_a_count_running_into_a_year_without_data_fails),
        T(test_bad_dates_and_counts_are_refused),
        T(test_a_count_reads_each_year_once),
        T(test_working_days_between_count_after_from_up_to_to),
        T(test_import_reports_every_error_and_writes_nothing),
        T(test_a_bad_document_leaves_the_stored_years_untouched),
        T(test_import_replaces_each_year_it_names_whole),
        T(test_set_and_normal_change_one_day),
        T(test_set_refuses_what_the_rules_forbid),
        T(test_a_malformed_stored_day_is_data_loss),
#undef T
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
