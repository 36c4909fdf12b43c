/* Resident ID numbers (公民身份号码) per GB 11643-1999: 17 digits (6 of
 * region code, 8 of birth date yyyymmdd, 3 of sequence, the last odd for
 * men) and an ISO 7064 MOD 11-2 check character (0-9 or X). Also the Hong
 * Kong / Macau / Taiwan residence permits (港澳台居民居住证), which use the
 * same layout with region prefixes 81 / 82 / 83.
 *
 * The region check is at province level only (first two digits, GB/T
 * 2260): validating the full six-digit county code needs the GB/T 2260
 * table (with its retired codes, since a number keeps the region of its
 * issue), which is data to import later. Masking for display is
 * fxb_mask_id_number in store/crypto.h. */
#ifndef FXB_AUTH_IDNUMBER_H
#define FXB_AUTH_IDNUMBER_H

#include <stdbool.h>
#include <stdint.h>

#include "server/status.h"

/* An ID number is exactly this many characters. */
#define FXB_IDNUMBER_LEN 18
/* Earliest birth date accepted. */
#define FXB_IDNUMBER_BIRTH_MIN 19000101

typedef enum fxb_sex {
    FXB_SEX_FEMALE = 0, /* even 17th digit */
    FXB_SEX_MALE = 1,   /* odd 17th digit */
} fxb_sex;

/* What a valid number says. */
typedef struct fxb_idnumber {
    char id[FXB_IDNUMBER_LEN + 1]; /* normalised: a lower-case x made X */
    char region[7];                /* first six digits */
    int64_t birth;                 /* yyyymmdd */
    fxb_sex sex;
} fxb_idnumber;

/* Checks id on the date today_yyyymmdd (the caller's local date, China
 * Standard Time), in this order, each failure FXB_INVALID_ARGUMENT with
 * reason:
 *   ID_NUMBER_FORMAT      not 17 digits followed by a digit, X or x
 *   ID_NUMBER_REGION      first two digits not a province-level code:
 *                         11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71,
 *                         81, 82, 83
 *   ID_NUMBER_BIRTH_DATE  digits 7-14 not a calendar date (leap years
 *                         per the Gregorian rule), before 1900-01-01, or
 *                         after today
 *   ID_NUMBER_CHECK       the 18th character is not the MOD 11-2 check
 * The message never contains the number. On success fills *out (may be
 * NULL) and returns FXB_OK; on failure *out (if given) is zeroed. An id of
 * NULL is ID_NUMBER_FORMAT; a today that is not a valid date is
 * FXB_INTERNAL (CLOCK_INVALID). */
fxb_code fxb_idnumber_check(const char *id, int64_t today_yyyymmdd, fxb_idnumber *out,
                            fxb_err *err);

/* The ISO 7064 MOD 11-2 check character ('0'-'9' or 'X') of 17 digits, or
 * '\0' when d17 does not start with 17 digits. */
char fxb_idnumber_check_char(const char *d17);

/* Age in whole years on today of someone born on birth (both yyyymmdd):
 * one less while this year's birthday has not been reached. Someone born
 * on 29 February has the birthday on 1 March in common years (the day
 * after 28 February, as Chinese practice counts full years). Returns -1
 * when either date is invalid or today is before birth. */
int fxb_age_on(int64_t birth_yyyymmdd, int64_t today_yyyymmdd);

/* True when yyyymmdd is a valid Gregorian date in years 1..9999. */
bool fxb_idnumber_date_valid(int64_t yyyymmdd);

#endif
