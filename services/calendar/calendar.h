/* The working-day calendar (proto/fxb/v1/calendar.proto): the rule (Monday
 * to Friday work, weekends rest) and each year's exceptions as data, the
 * working-day arithmetic every time limit uses, and fxb.v1.CalendarService.
 * Dates are yyyymmdd integers in China time (UTC+8). The key schema is
 * documented in calendar.c. */
#ifndef FXB_CALENDAR_H
#define FXB_CALENDAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "server/handler.h"
#include "store/store.h"

#define FXB_CALENDAR_YEAR_MIN 2000
#define FXB_CALENDAR_YEAR_MAX 2100
#define FXB_CALENDAR_MAX_DAYS 1000 /* working days one call may add */

/* The China-time date (yyyymmdd) of a UTC epoch millisecond time. */
uint32_t fxb_calendar_date_of(int64_t utc_ms);

/* 23:59:59.999 China time of date, as UTC epoch ms; -1 for an invalid date. */
int64_t fxb_calendar_end_of_day_ms(uint32_t date);

/* True for a real calendar date within the supported years. */
bool fxb_calendar_date_valid(uint32_t date);

/* Whether date is a working day by the stored calendar of its year:
 * FAILED_PRECONDITION CALENDAR_YEAR_MISSING when that year has no data. */
fxb_code fxb_calendar_is_working_day(fxb_store *s, uint32_t date, bool *working, fxb_err *err);

/* The date n working days after from (from itself does not count; n = 0
 * gives from). INVALID_ARGUMENT for a bad date or n > FXB_CALENDAR_MAX_DAYS,
 * FAILED_PRECONDITION CALENDAR_YEAR_MISSING when the count needs a year
 * without data, or a store error. */
fxb_code fxb_calendar_add_working_days(fxb_store *s, uint32_t from, uint32_t n, uint32_t *out,
                                       fxb_err *err);

/* Working days strictly after from up to and including to (0 when to <=
 * from); same errors. For "due soon" / "overdue" states. */
fxb_code fxb_calendar_working_days_between(fxb_store *s, uint32_t from, uint32_t to, uint32_t *out,
                                           fxb_err *err);

/* --- the data and its administration (fxb-admin calendar, tests) ----------- */

#define FXB_CALENDAR_YEARS          (FXB_CALENDAR_YEAR_MAX - FXB_CALENDAR_YEAR_MIN + 1)
#define FXB_CALENDAR_YEAR_DAYS      366 /* exceptions a year can hold */
#define FXB_CALENDAR_NAME_CHARS_MAX 20  /* characters of a day's name */
#define FXB_CALENDAR_NAME_BYTES_MAX (4 * FXB_CALENDAR_NAME_CHARS_MAX)
/* Calendar days one count may walk: working_days_between refuses a longer
 * range (INVALID_ARGUMENT RANGE_TOO_LONG); add_working_days fails with
 * FAILED_PRECONDITION CALENDAR_SPAN_EXCEEDED when a (nonsensical) calendar
 * leaves too few working days to finish within it. */
#define FXB_CALENDAR_SPAN_MAX 3000
#define FXB_CALENDAR_FILE_MAX (1024 * 1024) /* bytes of an import file */

typedef enum fxb_calendar_kind {
    FXB_CALENDAR_NORMAL = 0,  /* the weekly rule applies */
    FXB_CALENDAR_HOLIDAY = 1, /* a rest day of a public holiday period */
    FXB_CALENDAR_WORKDAY = 2, /* a make-up working day (a weekend day) */
} fxb_calendar_kind;

typedef struct fxb_calendar_day {
    uint32_t date; /* yyyymmdd */
    fxb_calendar_kind kind;
    char name[FXB_CALENDAR_NAME_BYTES_MAX + 1];
} fxb_calendar_day;

/* A year's exceptions in date order (about 34 KB: allocate it, don't put it
 * on a small stack). */
typedef struct fxb_calendar_year {
    uint32_t year;
    int64_t updated_at_ms;
    size_t n_days;
    fxb_calendar_day days[FXB_CALENDAR_YEAR_DAYS];
} fxb_calendar_year;

/* Day of the week of a valid date: 1 Monday .. 7 Sunday; 0 when invalid. */
int fxb_calendar_weekday(uint32_t date);

/* Days from 1970-01-01 to a valid date (negative before); 0 when invalid,
 * so check validity first. */
int64_t fxb_calendar_day_number(uint32_t date);

/* True for 1..FXB_CALENDAR_NAME_CHARS_MAX characters of valid UTF-8 with no
 * control characters and no space at either end. */
bool fxb_calendar_name_valid(const char *name);

/* Reads the stored calendar of year into *out (caller-owned). INVALID_ARGUMENT
 * YEAR_INVALID outside the supported years, FAILED_PRECONDITION
 * CALENDAR_YEAR_MISSING, DATA_LOSS CALENDAR_CORRUPT for a malformed record,
 * or a store error. */
fxb_code fxb_calendar_read_year(fxb_store *s, uint32_t year, fxb_calendar_year *out, fxb_err *err);

typedef struct fxb_calendar_import_result {
    size_t errors;  /* validation errors (each printed) */
    size_t n_years; /* years replaced, listed ascending in years[] */
    uint32_t years[FXB_CALENDAR_YEARS];
    size_t holidays; /* days written, over all years */
    size_t workdays;
} fxb_calendar_import_result;

/* Validates a whole calendar document (the format of data/calendar/cn.json)
 * and only when it has no error replaces each year it holds, one atomic
 * script per year (DEL + HSET, years set). Every validation error is printed
 * as one line to errs (may be NULL) and counted; then the result is
 * INVALID_ARGUMENT CALENDAR_DATA_INVALID and nothing is written. A store
 * error stops the import (years already replaced stay replaced). */
fxb_code fxb_calendar_import(fxb_store *s, const char *json, size_t len, int64_t now_ms, FILE *errs,
                             fxb_calendar_import_result *res, fxb_err *err);

/* Changes one day of a year that already has data: NORMAL removes the
 * exception (name must be NULL), WORKDAY only on a weekend, HOLIDAY on a
 * weekday, or on a weekend with a name. name NULL takes a default.
 * INVALID_ARGUMENT DATE_INVALID / DAY_KIND_INVALID / NAME_INVALID,
 * FAILED_PRECONDITION CALENDAR_YEAR_MISSING, or a store error. */
fxb_code fxb_calendar_set_day(fxb_store *s, uint32_t date, fxb_calendar_kind kind, const char *name,
                              int64_t now_ms, fxb_err *err);

extern const fxb_service fxb_calendar_service;

#endif
