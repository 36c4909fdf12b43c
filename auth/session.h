/* Sessions, one per device, and their refresh tokens. A refresh token is
 * "<account>.<session>.<43 base64url chars of 256 random bits>"; only its
 * SHA-256 is stored. It rotates on every use; presenting a rotated token
 * again means it was copied, so the whole session (the token family) is
 * ended. Idle expiry 30 days (times the accessibility timeout multiplier,
 * within the absolute limit), absolute 90 days. All changes are Lua. */
#ifndef FXB_SESSION_H
#define FXB_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "server/handler.h"
#include "store/store.h"

#define FXB_REFRESH_IDLE_MS       (30LL * 24 * 3600 * 1000)
#define FXB_REFRESH_ABSOLUTE_MS   (90LL * 24 * 3600 * 1000)
#define FXB_REFRESH_SECRET_CHARS  43
#define FXB_REFRESH_MAX           (2 * FXB_ID_MAX + FXB_REFRESH_SECRET_CHARS + 2)
#define FXB_SESSIONS_PER_ACCOUNT  20
#define FXB_DEVICE_ID_MIN         8
#define FXB_DEVICE_ID_MAX         64
#define FXB_DEVICE_NAME_MAX_CHARS 64

typedef struct fxb_session_tokens {
    char session_id[FXB_ID_MAX + 1];
    char refresh_token[FXB_REFRESH_MAX + 1];
    int64_t refresh_idle_exp_ms;
    int64_t refresh_abs_exp_ms;
    int64_t auth_time_ms; /* last proof of presence in this session */
} fxb_session_tokens;

typedef struct fxb_session_info {
    char session_id[FXB_ID_MAX + 1];
    char device_id[FXB_DEVICE_ID_MAX + 1];
    char device_name[4 * FXB_DEVICE_NAME_MAX_CHARS + 1];
    int64_t created_ms;
    int64_t last_used_ms;
    int64_t auth_time_ms;
    bool active;
} fxb_session_info;

/* Validates the device the app names: id 8..64 of [A-Za-z0-9_-], name valid
 * UTF-8 of 1..64 characters without control characters. INVALID_ARGUMENT
 * reasons DEVICE_ID_INVALID / DEVICE_NAME_INVALID. */
fxb_code fxb_session_device_valid(const char *device_id, const char *device_name, fxb_err *err);

/* Opens a session for a device after a successful sign-in. A session the
 * same device had is ended: its id is written to replaced_sid ("" if none)
 * and the caller must publish its revocation, as for ended_oldest (the
 * account's oldest session when it had FXB_SESSIONS_PER_ACCOUNT already). */
fxb_code fxb_session_open(fxb_store *s, const char *account_id, const char *device_id,
                          const char *device_name, int64_t now_ms, int idle_pct,
                          fxb_session_tokens *out, char replaced_sid[FXB_ID_MAX + 1],
                          char ended_oldest[FXB_ID_MAX + 1], fxb_err *err);

/* Rotates a refresh token. On success *out holds the new token and
 * account_id the account. Failures are UNAUTHENTICATED with reasons
 * REFRESH_INVALID (unknown or malformed), REFRESH_EXPIRED, SESSION_REVOKED,
 * or REFRESH_REUSED — then the session was just ended and its id is in
 * reused_sid for the caller to publish. */
fxb_code fxb_session_refresh(fxb_store *s, const char *refresh_token, int64_t now_ms, int idle_pct,
                             fxb_session_tokens *out, char account_id[FXB_ID_MAX + 1],
                             char reused_sid[FXB_ID_MAX + 1], fxb_err *err);

/* Ends a session of the account. *was_active false when it was already
 * ended or never existed (not an error: sign-out is idempotent). */
fxb_code fxb_session_end(fxb_store *s, const char *account_id, const char *sid, int64_t now_ms,
                         bool *was_active, fxb_err *err);

/* Reads one session; FXB_NOT_FOUND reason SESSION_NOT_FOUND if unknown. */
fxb_code fxb_session_get(fxb_store *s, const char *account_id, const char *sid,
                         fxb_session_info *out, fxb_err *err);

/* The account's active sessions, newest first, at most cap. */
fxb_code fxb_session_list(fxb_store *s, const char *account_id, fxb_session_info *out, size_t cap,
                          size_t *n, fxb_err *err);

/* Step-up: records a fresh proof of presence for the session. */
fxb_code fxb_session_mark_auth(fxb_store *s, const char *account_id, const char *sid,
                               int64_t now_ms, fxb_err *err);

#endif
