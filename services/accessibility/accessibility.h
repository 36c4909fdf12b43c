/* fxb.v1.AccessibilityService (regulation art. 9: smart voice, large-font
 * version; MIIT 2021 elderly-friendly app spec; WCAG 2.2.1 timing
 * adjustable): per-account settings synced across devices and versioned,
 * and the opt-in trusted relative who receives the account's sign-in codes.
 *
 * Storage: the hash {u:<account_id>}:a11y. Fields read by other modules
 * keep their meaning: timeout_pct (100..300, read by the auth service for
 * OTP validity and session idle time), relative_enc (the relative's phone,
 * fxb_crypto_seal label "relative_phone", owner = account id) and
 * relative_masked. version counts writes (0 = never written). The pure
 * functions below are the rules, exposed for the unit tests. */
#ifndef FXB_ACCESSIBILITY_H
#define FXB_ACCESSIBILITY_H

#include <stdbool.h>
#include <stdint.h>

#include "server/handler.h"
#include "server/status.h"

/* Ranges (percent) and defaults. A value of 0 in an update means "the
 * default" (proto3 cannot tell an unset number from 0). */
#define FXB_A11Y_FONT_SCALE_MIN      100
#define FXB_A11Y_FONT_SCALE_MAX      200
#define FXB_A11Y_SPEECH_RATE_MIN     50
#define FXB_A11Y_SPEECH_RATE_MAX     200
#define FXB_A11Y_TIMEOUT_PCT_MIN     100 /* same as FXB_OTP_TIMEOUT_PCT_MIN */
#define FXB_A11Y_TIMEOUT_PCT_MAX     300 /* same as FXB_OTP_TIMEOUT_PCT_MAX */
#define FXB_A11Y_DEFAULT_PCT         100
#define FXB_A11Y_DEFAULT_LANGUAGE    "zh-CN"
#define FXB_A11Y_LANGUAGE_MAX        35 /* longest language tag looked at (BCP 47 practice) */
#define FXB_A11Y_ELDER_SUGGEST_AGE   60
#define FXB_A11Y_RELATIVE_STARTS_DAY 10 /* StartTrustedRelative per account per day */

/* Text sizes (dp). Normal: body = round(16 x scale / 100), largest =
 * round(24 x scale / 100). Elder mode (MIIT spec: body text at least 18 dp,
 * the largest text at least 30 dp): the same, but never below 18 / 30.
 * Turning elder mode on raises a smaller font scale to the preset, the
 * smallest scale at which the exact sizes, before rounding, meet both
 * minimums: 24 x s >= 30 gives s >= 125 % (body is then 20 dp >= 18). */
#define FXB_A11Y_BODY_DP_BASE    16
#define FXB_A11Y_LARGEST_DP_BASE 24
#define FXB_A11Y_ELDER_BODY_DP   18
#define FXB_A11Y_ELDER_LARGEST   30
#define FXB_A11Y_ELDER_PRESET    125

/* fxb_err reasons of this service. */
#define FXB_A11Y_SETTINGS_REQUIRED    "SETTINGS_REQUIRED"               /* INVALID_ARGUMENT */
#define FXB_A11Y_FONT_SCALE_RANGE     "FONT_SCALE_OUT_OF_RANGE"         /* INVALID_ARGUMENT */
#define FXB_A11Y_SPEECH_RATE_RANGE    "SPEECH_RATE_OUT_OF_RANGE"        /* INVALID_ARGUMENT */
#define FXB_A11Y_TIMEOUT_RANGE        "TIMEOUT_MULTIPLIER_OUT_OF_RANGE" /* INVALID_ARGUMENT */
#define FXB_A11Y_LANGUAGE_UNSUPPORTED "LANGUAGE_UNSUPPORTED"            /* INVALID_ARGUMENT */
#define FXB_A11Y_VERSION_CONFLICT     "VERSION_CONFLICT"                /* ABORTED */
#define FXB_A11Y_RELATIVE_IS_SELF     "RELATIVE_IS_SELF"                /* INVALID_ARGUMENT */
#define FXB_A11Y_NO_PENDING_RELATIVE  "NO_PENDING_RELATIVE"             /* FAILED_PRECONDITION */
#define FXB_A11Y_RELATIVE_DAILY_LIMIT "RELATIVE_DAILY_LIMIT"            /* RESOURCE_EXHAUSTED */

/* The settings a user chooses (derived and read-only fields are not here). */
typedef struct fxb_a11y_settings {
    bool elder_mode;
    uint32_t font_scale_pct;
    bool high_contrast;
    bool reduced_motion;
    bool screen_reader_hints;
    bool voice_broadcast;
    uint32_t speech_rate_pct;
    uint32_t timeout_pct;
    /* Input: any string or NULL. After fxb_a11y_validate / defaults: a
     * pointer to static storage holding the canonical tag ("zh-CN"). */
    const char *language;
} fxb_a11y_settings;

/* The settings of an account that never wrote any. */
void fxb_a11y_defaults(fxb_a11y_settings *s);

/* The canonical form of a supported language tag (compared without regard
 * to case, at most FXB_A11Y_LANGUAGE_MAX + 1 bytes read), as a static
 * string; "" and NULL give the default; anything else gives NULL. */
const char *fxb_a11y_language(const char *tag);

/* Checks in and writes its normalised form to out (which may be in): 0
 * numbers become their default, the language its canonical tag, and elder
 * mode raises the font scale to FXB_A11Y_ELDER_PRESET. Returns FXB_OK, or
 * FXB_INVALID_ARGUMENT with the reason of the first bad field in proto order
 * and a message naming it (settings.<field>); out is then unchanged. */
fxb_code fxb_a11y_validate(const fxb_a11y_settings *in, fxb_a11y_settings *out, fxb_err *err);

/* Text sizes for a font scale (clamped to the range first) and mode, by
 * the formula above. */
void fxb_a11y_derive_dp(uint32_t font_scale_pct, bool elder_mode, uint32_t *body_dp,
                        uint32_t *largest_dp);

/* Age in whole years on the Asia/Shanghai (UTC+8) date of now_ms, of a
 * person born on birth ("YYYYMMDD", a real calendar date from 1900 on). A
 * 29 February birthday is reached on 1 March in common years. False (and
 * *age -1) for NULL, malformed or impossible dates, a birth after today, or
 * an age over 150. */
bool fxb_a11y_age_on(const char *birth, int64_t now_ms, int *age);

/* Whether to suggest elder mode: a known age of FXB_A11Y_ELDER_SUGGEST_AGE
 * or more and elder mode not on. An unknown or invalid birth date gives
 * false. */
bool fxb_a11y_elder_suggested(const char *birth, bool elder_mode, int64_t now_ms);

/* The service; register it with the server before it starts. Its trusted
 * relative methods need fxb_auth_service_init() to have run (crypto, SMS,
 * OTP parameters); without it they answer UNAVAILABLE. */
extern const fxb_service fxb_accessibility_service;

#endif
