/* GB 11643-1999 resident ID numbers: format, province-level region, birth
 * date, ISO 7064 MOD 11-2 check character; and age from a birth date.
 * Pure functions: no clock (the caller passes today), no allocation. */
#include "auth/idnumber.h"

#include <stdbool.h>
#include <string.h>

#define ZH_FORMAT "身份证号码格式不正确"
#define ZH_REGION "身份证号码的地区码无效"
#define ZH_BIRTH  "身份证号码中的出生日期无效"
#define ZH_CHECK  "身份证号码校验码错误，请核对"

/* ISO 7064 MOD 11-2: weight of position i (1-based from the left) is
 * 2^(18-i) mod 11; the check character makes the weighted sum including it
 * (X = 10, weight 1) congruent to 1 mod 11. */
static const int WEIGHTS[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
static const char CHECK_CHARS[11] = "10X98765432";

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

bool fxb_idnumber_date_valid(int64_t d)
{
    if (d < 10101 || d > 99991231)
        return false;
    int64_t y = d / 10000;
    int64_t m = d / 100 % 100;
    int64_t day = d % 100;
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || m < 1 || m > 12 || day < 1)
        return false;
    int64_t max = DAYS[m - 1] + (m == 2 && leap(y) ? 1 : 0);
    return day <= max;
}

char fxb_idnumber_check_char(const char *d17)
{
    if (d17 == NULL)
        return '\0';
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (!is_digit(d17[i]))
            return '\0';
        sum += (d17[i] - '0') * WEIGHTS[i];
    }
    return CHECK_CHARS[sum % 11];
}

static bool region_valid(int p)
{
    return (p >= 11 && p <= 15) || (p >= 21 && p <= 23) || (p >= 31 && p <= 37) ||
           (p >= 41 && p <= 46) || (p >= 50 && p <= 54) || (p >= 61 && p <= 65) || p == 71 ||
           p == 81 || p == 82 || p == 83;
}

static fxb_code fail(fxb_idnumber *out, fxb_err *err, const char *reason, const char *zh,
                     const char *msg)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, reason, zh, "%s", msg);
}

fxb_code fxb_idnumber_check(const char *id, int64_t today, fxb_idnumber *out, fxb_err *err)
{
    if (!fxb_idnumber_date_valid(today)) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return fxb_err_set(err, FXB_INTERNAL, "CLOCK_INVALID", "服务器内部错误",
                           "today is not a valid date");
    }
    if (id == NULL || strnlen(id, FXB_IDNUMBER_LEN + 1) != FXB_IDNUMBER_LEN)
        return fail(out, err, "ID_NUMBER_FORMAT", ZH_FORMAT, "ID number must be 18 characters");
    char n[FXB_IDNUMBER_LEN + 1];
    memcpy(n, id, sizeof(n));
    if (n[17] == 'x')
        n[17] = 'X';
    for (int i = 0; i < 17; i++) {
        if (!is_digit(n[i]))
            return fail(out, err, "ID_NUMBER_FORMAT", ZH_FORMAT,
                        "ID number must be 17 digits and a digit or X");
    }
    if (!is_digit(n[17]) && n[17] != 'X')
        return fail(out, err, "ID_NUMBER_FORMAT", ZH_FORMAT,
                    "ID number must be 17 digits and a digit or X");

    if (!region_valid((n[0] - '0') * 10 + (n[1] - '0')))
        return fail(out, err, "ID_NUMBER_REGION", ZH_REGION,
                    "ID number region is not a province-level code");

    int64_t birth = 0;
    for (int i = 6; i < 14; i++)
        birth = birth * 10 + (n[i] - '0');
    if (!fxb_idnumber_date_valid(birth))
        return fail(out, err, "ID_NUMBER_BIRTH_DATE", ZH_BIRTH,
                    "ID number birth date is not a calendar date");
    if (birth < FXB_IDNUMBER_BIRTH_MIN)
        return fail(out, err, "ID_NUMBER_BIRTH_DATE", ZH_BIRTH,
                    "ID number birth date is before 1900-01-01");
    if (birth > today)
        return fail(out, err, "ID_NUMBER_BIRTH_DATE", ZH_BIRTH,
                    "ID number birth date is in the future");

    if (fxb_idnumber_check_char(n) != n[17])
        return fail(out, err, "ID_NUMBER_CHECK", ZH_CHECK, "ID number check character mismatch");

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
        memcpy(out->id, n, sizeof(out->id));
        memcpy(out->region, n, 6);
        out->region[6] = '\0';
        out->birth = birth;
        out->sex = (n[16] - '0') % 2 == 1 ? FXB_SEX_MALE : FXB_SEX_FEMALE;
    }
    return FXB_OK;
}

int fxb_age_on(int64_t birth, int64_t today)
{
    if (!fxb_idnumber_date_valid(birth) || !fxb_idnumber_date_valid(today) || today < birth)
        return -1;
    int64_t age = today / 10000 - birth / 10000;
    /* Month-day as mmdd: comparing them is "has the birthday come". A 0229
     * birthday in a common year: 0228 < 0229 (not yet), 0301 > 0229 (yes),
     * so it falls on 1 March with no special case. */
    if (today % 10000 < birth % 10000)
        age--;
    return (int)age;
}
