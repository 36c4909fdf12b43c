/* The working-day calendar (proto/fxb/v1/calendar.proto): the rule (Monday
 * to Friday work, weekends rest) and each year's exceptions as data, the
 * working-day arithmetic every time limit uses, and fxb.v1.CalendarService.
 * Dates are yyyymmdd integers in China time (UTC+8). The key schema is
 * documented in calendar.c. */
#ifndef FXB_CALENDAR_H
#define FXB_CALENDAR_H

#include <stdbool.h>
#include <stdint.h>

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
fxb_code fxb_calendar_working_days_between(fxb_store *s, uint32_t from, uint32_t to,
                                           uint32_t *out, fxb_err *err);

extern const fxb_service fxb_calendar_service;

#endif
