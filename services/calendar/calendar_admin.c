/* fxb-admin calendar: import a calendar document (default: the embedded seed
 * data/calendar/cn.json), show a year, change one day. The checks and the
 * writes are those of services/calendar/calendar.h, so the tests exercise
 * exactly what the operator runs. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/admin_cmds.h"
#include "server/handler.h"
#include "services/calendar/calendar.h"
#include "store/datafile.h"

#define SEED "calendar/cn.json"

static const char *const weekday_names[8] = {"?", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

static int usage_error(void)
{
    fprintf(stderr, "fxb-admin: calendar import [FILE] | calendar show YEAR |\n"
                    "           calendar set YYYYMMDD holiday|workday|normal [NAME]\n");
    return 2;
}

/* A decimal of at most 8 digits, nothing else. */
static bool parse_u32(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 8)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* The whole of path ("-" = stdin) in a malloc'd buffer, at most
 * FXB_CALENDAR_FILE_MAX bytes; NULL with a message printed. */
static char *read_file(const char *path, size_t *len)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (in == NULL) {
        fprintf(stderr, "fxb-admin: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(FXB_CALENDAR_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FXB_CALENDAR_FILE_MAX + 1, in) : 0;
    bool failed = buf == NULL || ferror(in);
    if (in != stdin)
        fclose(in);
    if (failed || n > FXB_CALENDAR_FILE_MAX) {
        fprintf(stderr, "fxb-admin: %s: %s\n", path,
                failed ? "cannot read it" : "larger than 1 MiB: not a calendar");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static fxb_store *open_store(const fxb_store_options *so)
{
    fxb_err err;
    fxb_store *st = fxb_store_new(so, &err);
    if (st == NULL)
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
    return st;
}

static int cmd_import(const fxb_store_options *so, const char *path)
{
    const char *json;
    size_t len = 0;
    char *owned = NULL;
    const char *what = path;
    if (path == NULL) {
        const fxb_datafile *f = fxb_datafile_find(SEED);
        if (f == NULL) {
            fprintf(stderr, "fxb-admin: the seed data/" SEED " is not built in\n");
            return 1;
        }
        json = f->bytes;
        len = f->len;
        what = "data/" SEED " (embedded)";
    } else {
        owned = read_file(path, &len);
        if (owned == NULL)
            return 1;
        json = owned;
    }
    fxb_store *st = open_store(so);
    if (st == NULL) {
        free(owned);
        return 2;
    }
    fxb_calendar_import_result *res = malloc(sizeof *res);
    fxb_err err;
    int rc = 1;
    if (res == NULL) {
        fprintf(stderr, "fxb-admin: out of memory\n");
    } else if (fxb_calendar_import(st, json, len, fxb_wall_ms(), stderr, res, &err) == FXB_OK) {
        printf("calendar: %zu year%s (", res->n_years, res->n_years == 1 ? "" : "s");
        for (size_t i = 0; i < res->n_years; i++)
            printf("%s%" PRIu32, i ? ", " : "", res->years[i]);
        printf("), %zu holidays, %zu make-up working days\n", res->holidays, res->workdays);
        rc = 0;
    } else if (res->errors > 0) {
        fprintf(stderr, "fxb-admin: calendar import: %s: %zu error%s, nothing imported\n", what,
                res->errors, res->errors == 1 ? "" : "s");
    } else {
        fprintf(stderr, "fxb-admin: calendar import stopped after %zu year%s: %s\n", res->n_years,
                res->n_years == 1 ? "" : "s", err.message);
    }
    free(res);
    fxb_store_free(st);
    free(owned);
    return rc;
}

static int cmd_show(const fxb_store_options *so, const char *arg)
{
    uint32_t year;
    if (!parse_u32(arg, &year) || year < FXB_CALENDAR_YEAR_MIN || year > FXB_CALENDAR_YEAR_MAX) {
        fprintf(stderr, "fxb-admin: calendar show: YEAR must be %d..%d\n", FXB_CALENDAR_YEAR_MIN,
                FXB_CALENDAR_YEAR_MAX);
        return 2;
    }
    fxb_store *st = open_store(so);
    if (st == NULL)
        return 2;
    fxb_calendar_year *y = malloc(sizeof *y);
    fxb_err err;
    int rc = 1;
    if (y == NULL) {
        fprintf(stderr, "fxb-admin: out of memory\n");
    } else if (fxb_calendar_read_year(st, year, y, &err) == FXB_OK) {
        size_t holidays = 0;
        for (size_t i = 0; i < y->n_days; i++)
            holidays += y->days[i].kind == FXB_CALENDAR_HOLIDAY;
        printf("calendar %" PRIu32 ": %zu holidays, %zu make-up working days (updated %" PRIu32
               ", updated_at_ms %" PRId64 ")\n",
               year, holidays, y->n_days - holidays, fxb_calendar_date_of(y->updated_at_ms),
               y->updated_at_ms);
        for (size_t i = 0; i < y->n_days; i++) {
            const fxb_calendar_day *d = &y->days[i];
            printf("%" PRIu32 " %s %-7s %s\n", d->date,
                   weekday_names[fxb_calendar_weekday(d->date)],
                   d->kind == FXB_CALENDAR_HOLIDAY ? "holiday" : "workday", d->name);
        }
        rc = 0;
    } else {
        fprintf(stderr, "fxb-admin: calendar show: %s\n", err.message);
    }
    free(y);
    fxb_store_free(st);
    return rc;
}

static int cmd_set(const fxb_store_options *so, const char *date_arg, const char *kind_arg,
                   const char *name)
{
    uint32_t date;
    if (!parse_u32(date_arg, &date) || !fxb_calendar_date_valid(date)) {
        fprintf(stderr, "fxb-admin: calendar set: %s is not a real date YYYYMMDD in %d..%d\n",
                date_arg, FXB_CALENDAR_YEAR_MIN, FXB_CALENDAR_YEAR_MAX);
        return 2;
    }
    fxb_calendar_kind kind;
    if (strcmp(kind_arg, "holiday") == 0)
        kind = FXB_CALENDAR_HOLIDAY;
    else if (strcmp(kind_arg, "workday") == 0)
        kind = FXB_CALENDAR_WORKDAY;
    else if (strcmp(kind_arg, "normal") == 0)
        kind = FXB_CALENDAR_NORMAL;
    else
        return usage_error();
    fxb_store *st = open_store(so);
    if (st == NULL)
        return 2;
    fxb_err err;
    int rc = 1;
    if (fxb_calendar_set_day(st, date, kind, name, fxb_wall_ms(), &err) == FXB_OK) {
        int wd = fxb_calendar_weekday(date);
        const char *now = kind == FXB_CALENDAR_HOLIDAY   ? "a holiday"
                          : kind == FXB_CALENDAR_WORKDAY ? "a make-up working day"
                          : wd >= 6                      ? "an ordinary weekend rest day"
                                                         : "an ordinary working day";
        printf("calendar: %" PRIu32 " (%s) is now %s%s%s%s\n", date, weekday_names[wd], now,
               name ? " (" : "", name ? name : "", name ? ")" : "");
        rc = 0;
    } else {
        fprintf(stderr, "fxb-admin: calendar set: %s\n", err.message);
        rc = err.code == FXB_INVALID_ARGUMENT ? 2 : 1;
    }
    fxb_store_free(st);
    return rc;
}

int fxb_admin_calendar(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                       int i)
{
    (void)cfg;
    if (i >= argc)
        return usage_error();
    const char *action = argv[i];
    int nargs = argc - i - 1;
    if (strcmp(action, "import") == 0 && nargs <= 1)
        return cmd_import(so, nargs == 1 ? argv[i + 1] : NULL);
    if (strcmp(action, "show") == 0 && nargs == 1)
        return cmd_show(so, argv[i + 1]);
    if (strcmp(action, "set") == 0 && (nargs == 2 || nargs == 3))
        return cmd_set(so, argv[i + 1], argv[i + 2], nargs == 3 ? argv[i + 3] : NULL);
    return usage_error();
}
