/* Unified social credit codes (统一社会信用代码) per GB 32100-2015: 18
 * characters from the 31-character alphabet 0-9 A-H J-N P-R T U W-Y (no I,
 * O, S, V, Z):
 *   1      registration authority (登记管理部门代码): any alphabet character
 *          but 0 (1 机构编制, 5 民政, 9 工商, Y 其他 are in common use)
 *   2      organisation category (机构类别代码)
 *   3-8    administrative region code (GB/T 2260): six digits
 *   9-17   organisation code (主体标识码, GB 11714): 8 body characters and
 *          its own check character (0-9 or X)
 *   18     the GB 32100 check character. */
#ifndef FXB_AUTH_USCC_H
#define FXB_AUTH_USCC_H

#include "server/status.h"

#define FXB_USCC_LEN 18

/* Checks code, in this order, each failure FXB_INVALID_ARGUMENT with
 * reason:
 *   USCC_FORMAT     not 18 characters of the alphabet (lower case is
 *                   refused: the caller upper-cases what a user typed),
 *                   a first character 0, or positions 3-8 not digits
 *   USCC_CHECK      the 18th character is not the GB 32100 check
 *   USCC_ORG_CHECK  the 17th character is not the GB 11714 check of
 *                   positions 9-16
 * Returns FXB_OK for a valid code. NULL is USCC_FORMAT. */
fxb_code fxb_uscc_check(const char *code, fxb_err *err);

/* The GB 32100 check character of the first 17 characters of code, or
 * '\0' when one of them is outside the alphabet. */
char fxb_uscc_check_char(const char *code17);

/* The GB 11714 check character ('0'-'9' or 'X') of the 8 body characters
 * (0-9, A-Z), or '\0' when one is outside that set. */
char fxb_orgcode_check_char(const char *body8);

#endif
