/* GB 32100-2015 unified social credit codes, with the GB 11714
 * organisation code embedded at positions 9-17. Pure functions.
 *
 * GB 32100: character values are their index in the alphabet; weights are
 * 3^(i-1) mod 31 for positions i = 1..17; check = 31 - (sum mod 31), with
 * 31 written as 0.
 * GB 11714: digits are 0-9, letters A-Z are 10-35; weights 3 7 9 10 5 8 4
 * 2; check = 11 - (sum mod 11), with 10 written X and 11 written 0. */
#include "auth/uscc.h"

#include <stdbool.h>
#include <string.h>

static const char ALPHABET[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
#define ALPHABET_LEN 31
static const int USCC_WEIGHTS[17] = {1,  3,  9,  27, 19, 26, 16, 17, 20,
                                     29, 25, 13, 8,  24, 10, 30, 28};
static const int ORG_WEIGHTS[8] = {3, 7, 9, 10, 5, 8, 4, 2};

#define ZH_FORMAT "统一社会信用代码格式不正确"
#define ZH_CHECK  "统一社会信用代码校验码错误，请核对"

/* Index in ALPHABET, -1 when outside (including lower case and NUL). */
static int uscc_value(char c)
{
    if (c == '\0')
        return -1;
    const char *p = strchr(ALPHABET, c);
    return p == NULL ? -1 : (int)(p - ALPHABET);
}

char fxb_uscc_check_char(const char *code17)
{
    if (code17 == NULL)
        return '\0';
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        int v = uscc_value(code17[i]);
        if (v < 0)
            return '\0';
        sum += v * USCC_WEIGHTS[i];
    }
    return ALPHABET[(ALPHABET_LEN - sum % ALPHABET_LEN) % ALPHABET_LEN];
}

char fxb_orgcode_check_char(const char *body8)
{
    if (body8 == NULL)
        return '\0';
    int sum = 0;
    for (int i = 0; i < 8; i++) {
        char c = body8[i];
        int v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'A' && c <= 'Z')
            v = c - 'A' + 10;
        else
            return '\0';
        sum += v * ORG_WEIGHTS[i];
    }
    int check = 11 - sum % 11;
    if (check == 10)
        return 'X';
    if (check == 11)
        return '0';
    return (char)('0' + check);
}

static fxb_code format_error(fxb_err *err, const char *msg)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "USCC_FORMAT", ZH_FORMAT, "%s", msg);
}

fxb_code fxb_uscc_check(const char *code, fxb_err *err)
{
    if (code == NULL || strnlen(code, FXB_USCC_LEN + 1) != FXB_USCC_LEN)
        return format_error(err, "credit code must be 18 characters");
    for (int i = 0; i < FXB_USCC_LEN; i++) {
        if (uscc_value(code[i]) < 0)
            return format_error(err, "credit code has a character outside the GB 32100 alphabet");
    }
    if (code[0] == '0')
        return format_error(err, "credit code registration authority is 0");
    for (int i = 2; i < 8; i++) {
        if (code[i] < '0' || code[i] > '9')
            return format_error(err, "credit code region (positions 3-8) must be digits");
    }
    if (fxb_uscc_check_char(code) != code[17])
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "USCC_CHECK", ZH_CHECK,
                           "credit code check character mismatch");
    if (fxb_orgcode_check_char(code + 8) != code[16])
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "USCC_ORG_CHECK", ZH_CHECK,
                           "credit code organisation code check character mismatch");
    return FXB_OK;
}
