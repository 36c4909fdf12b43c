/* One-time codes sent by SMS: issue and verify, with the rules of the
 * AuthService contract (6 digits, 5 min validity, 5 tries, 60 s between
 * sends, daily caps per number and per client address). State lives in
 * Redis and changes only inside Lua scripts; no key or value holds the
 * number or the code in clear (keys carry the phone tag, codes are stored
 * as HMAC-SHA256 under the server secret).
 *
 * Error vocabulary (fxb_err code / reason):
 *   INVALID_ARGUMENT   PHONE_INVALID, CODE_MALFORMED (not 6 ASCII digits:
 *                      refused before any comparison, so it costs no try),
 *                      CODE_PURPOSE_INVALID, CLIENT_ADDRESS_INVALID
 *   RESOURCE_EXHAUSTED CODE_RESEND_TOO_SOON, CODE_DAILY_LIMIT_PHONE,
 *                      CODE_DAILY_LIMIT_IP, each with retry_after_ms
 *   UNAUTHENTICATED    CODE_INVALID (wrong code; tries left in the message),
 *                      CODE_EXPIRED (past its validity, already used, never
 *                      issued, or issued for another purpose: in every case
 *                      "ask for a new code"), CODE_EXHAUSTED (the try limit
 *                      was reached: the code is burnt, even the right one
 *                      fails until a new one is issued)
 *   UNAVAILABLE / INTERNAL from the store.
 * A wrong code is UNAUTHENTICATED, not INVALID_ARGUMENT: the request is well
 * formed, the caller simply failed to prove possession of the phone. */
#ifndef FXB_OTP_H
#define FXB_OTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/secret.h"
#include "server/status.h"
#include "store/store.h"

#define FXB_OTP_DIGITS 6
/* Validity is FXB_OTP_VALIDITY_MS x timeout multiplier, at most
 * FXB_OTP_VALIDITY_MAX_MS. The multiplier (accessibility: more time for
 * users who need it) is a percentage; values under 100 count as 100. */
#define FXB_OTP_VALIDITY_MS     (5LL * 60 * 1000)
#define FXB_OTP_VALIDITY_MAX_MS (15LL * 60 * 1000)
#define FXB_OTP_TIMEOUT_PCT_MIN 100
#define FXB_OTP_TIMEOUT_PCT_MAX 300
#define FXB_OTP_MAX_TRIES       5
#define FXB_OTP_RESEND_MS       (60LL * 1000)
#define FXB_OTP_DAILY_PHONE     10
#define FXB_OTP_DAILY_IP        50
#define FXB_OTP_DAILY_LIMIT_MAX 100000
/* Days run in Asia/Shanghai time: UTC+8, no daylight saving since 1991, so
 * a day starts at 16:00 UTC. */
#define FXB_OTP_DAY_OFFSET_MS (8LL * 3600 * 1000)
#define FXB_OTP_DAY_MS        (24LL * 3600 * 1000)
/* Longest client address accepted (fxb_peer_ip output fits). */
#define FXB_OTP_CLIENT_IP_MAX 63

/* fxb_err reasons. */
#define FXB_OTP_CODE_MALFORMED         "CODE_MALFORMED"
#define FXB_OTP_CODE_PURPOSE_INVALID   "CODE_PURPOSE_INVALID"
#define FXB_OTP_CLIENT_ADDRESS_INVALID "CLIENT_ADDRESS_INVALID"
#define FXB_OTP_CODE_RESEND_TOO_SOON   "CODE_RESEND_TOO_SOON"
#define FXB_OTP_CODE_DAILY_LIMIT_PHONE "CODE_DAILY_LIMIT_PHONE"
#define FXB_OTP_CODE_DAILY_LIMIT_IP    "CODE_DAILY_LIMIT_IP"
#define FXB_OTP_CODE_INVALID           "CODE_INVALID"
#define FXB_OTP_CODE_EXPIRED           "CODE_EXPIRED"
#define FXB_OTP_CODE_EXHAUSTED         "CODE_EXHAUSTED"

/* Same numbers as fxb.v1.CodePurpose. A code verifies only for the purpose
 * it was issued for; each purpose has its own slot, so asking for a step-up
 * code does not cancel a pending sign-in code. */
typedef enum fxb_otp_purpose {
    FXB_OTP_SIGN_IN = 1,
    FXB_OTP_STEP_UP = 2,
    FXB_OTP_VERIFY_RELATIVE = 3,
} fxb_otp_purpose;

typedef struct fxb_otp_params {
    uint8_t secret[FXB_SECRET_LEN]; /* fxb_secret_load_or_create */
    int daily_limit_phone;          /* codes per number per day; 0 = FXB_OTP_DAILY_PHONE */
    int daily_limit_ip;             /* codes per client address per day; 0 = FXB_OTP_DAILY_IP */
} fxb_otp_params;

/* Copies secret and sets the default limits. */
void fxb_otp_params_init(fxb_otp_params *p, const uint8_t secret[FXB_SECRET_LEN]);

/* Issues a code for phone (any form fxb_phone_normalize accepts) and
 * purpose, on behalf of client_ip (fxb_peer_ip output; IPv6 clients are
 * counted per /64, since one subscriber holds a whole /64). now_ms is UTC
 * epoch ms; timeout_multiplier_pct stretches the validity (see above).
 * Replaces any earlier code of the same phone and purpose. On FXB_OK:
 * code_out holds the 6 digits (the only plaintext copy: send it, then wipe
 * it), *expires_at_ms and *resend_after_ms are set. On error code_out is ""
 * and the counters are as before. Limits are checked in this order: client
 * address, 60 s resend interval, daily cap of the number. */
fxb_code fxb_otp_issue(fxb_store *s, const fxb_otp_params *p, const char *phone,
                       const char *client_ip, int purpose, int timeout_multiplier_pct,
                       int64_t now_ms, char code_out[FXB_OTP_DIGITS + 1], int64_t *expires_at_ms,
                       int64_t *resend_after_ms, fxb_err *err);

/* Checks code for phone and purpose at now_ms. FXB_OK consumes the code
 * (single use). Errors as listed at the top of this file. */
fxb_code fxb_otp_verify(fxb_store *s, const fxb_otp_params *p, const char *phone, int purpose,
                        const char *code, int64_t now_ms, fxb_err *err);

/* The SMS text for a code, e.g. "【放新办】验证码123456，用于登录，5分钟内有效。
 * 请勿告诉他人。" validity_ms is rounded up to whole minutes. Returns false
 * (out "") for a bad purpose or code, or when cap is too small (200 bytes
 * is enough). */
bool fxb_otp_sms_text(int purpose, const char *code, int64_t validity_ms, char *out, size_t cap);

#endif
