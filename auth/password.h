/* Account passwords (optional; SMS codes are the primary sign-in): argon2id
 * hashing, the password policy, and the lockout after repeated failures.
 *
 * Cost: argon2id t=2, m=46 MiB (47104 KiB), p=1, 16-byte salt, 32-byte
 * tag. Measured ~68 ms per hash or verify on the 2-core development machine
 * (OWASP's floor is m=46 MiB t=1). p=1 because a server's worker threads
 * already use every core; each hash in flight needs 46 MiB, so N workers
 * hashing at once peak at N x 46 MiB. Parameters live in the encoded string,
 * so old hashes keep verifying after a change; fxb_password_needs_rehash
 * tells the caller to re-hash at the next successful sign-in.
 *
 * Lockout: FXB_PASSWORD_MAX_FAILURES consecutive failures lock the account
 * for FXB_PASSWORD_LOCK_MS; a success clears the count; a count with no new
 * failure for FXB_PASSWORD_FAIL_MEMORY_MS is forgotten. Counters are a Redis
 * hash {u:<account_id>}:pwlock changed only by Lua scripts. */
#ifndef FXB_PASSWORD_H
#define FXB_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/secret.h"
#include "server/status.h"
#include "store/store.h"

#define FXB_PASSWORD_MIN_BYTES   8
#define FXB_PASSWORD_MAX_BYTES   128
#define FXB_PASSWORD_T_COST      2
#define FXB_PASSWORD_M_COST_KIB  47104
#define FXB_PASSWORD_PARALLELISM 1
#define FXB_PASSWORD_SALT_LEN    16
#define FXB_PASSWORD_TAG_LEN     32
/* Room for an encoded hash ("$argon2id$v=19$m=...,t=...,p=...$salt$tag",
 * about 100 bytes) with margin; longer stored strings are refused. */
#define FXB_PASSWORD_ENCODED_MAX    160
#define FXB_PASSWORD_MAX_FAILURES   5
#define FXB_PASSWORD_LOCK_MS        (15LL * 60 * 1000)
#define FXB_PASSWORD_FAIL_MEMORY_MS (24LL * 3600 * 1000)

/* fxb_err reasons. */
#define FXB_PASSWORD_WEAK       "PASSWORD_WEAK"       /* INVALID_ARGUMENT */
#define FXB_PASSWORD_LOCKED     "PASSWORD_LOCKED"     /* RESOURCE_EXHAUSTED + retry */
#define FXB_CREDENTIALS_INVALID "CREDENTIALS_INVALID" /* UNAUTHENTICATED */
#define FXB_ACCOUNT_ID_INVALID  "ACCOUNT_ID_INVALID"  /* INVALID_ARGUMENT */

/* Checks the policy: valid UTF-8 of FXB_PASSWORD_MIN_BYTES..MAX_BYTES bytes
 * (bytes, not characters: a Chinese character counts 3), not made only of
 * digits (ASCII or full-width), and not the account's phone number in any
 * accepted form (phone may be NULL). Returns FXB_OK or INVALID_ARGUMENT
 * reason PASSWORD_WEAK with a message naming the rule broken. */
fxb_code fxb_password_policy(const char *pw, const char *phone, fxb_err *err);

/* Hashes pw (1..FXB_PASSWORD_MAX_BYTES bytes; the policy is NOT applied
 * here) with a fresh getrandom(2) salt into out as a NUL-terminated argon2id
 * encoded string. cap must be at least FXB_PASSWORD_ENCODED_MAX. Returns
 * FXB_OK, INVALID_ARGUMENT (bad length), or INTERNAL (argon2 failed, e.g.
 * out of memory) with out "". Takes ~68 ms: call it on a worker thread. */
fxb_code fxb_password_hash(const char *pw, char *out, size_t cap, fxb_err *err);

/* True when pw matches encoded (argon2id only, constant-time tag compare).
 * When encoded is NULL (no account, or no password) it still spends the time
 * of one hash with the current parameters and returns false, so that callers
 * cannot be timed into revealing which numbers have accounts. Also false for
 * NULL or over-long pw, and for an encoded string that is malformed, longer
 * than FXB_PASSWORD_ENCODED_MAX or asks for more than 256 MiB, 16 passes
 * or 8 lanes (a tampered record must not exhaust the server). */
bool fxb_password_verify(const char *encoded, const char *pw);

/* True when encoded was made with other parameters than the current ones
 * (or is not ours): re-hash the password after the next successful check. */
bool fxb_password_needs_rehash(const char *encoded);

/* Lockout of account_id (fxb_key_id_valid, else INVALID_ARGUMENT reason
 * ACCOUNT_ID_INVALID). check_lock: FXB_OK, or RESOURCE_EXHAUSTED reason
 * PASSWORD_LOCKED with retry_after_ms. record_failure counts one failure:
 * FXB_OK while under the limit, PASSWORD_LOCKED when this failure locked the
 * account or it was already locked (a failure during a lock is not counted
 * and does not extend it). record_success clears the count. Store errors
 * (UNAVAILABLE/INTERNAL) pass through. */
fxb_code fxb_password_check_lock(fxb_store *s, const char *account_id, int64_t now_ms,
                                 fxb_err *err);
fxb_code fxb_password_record_failure(fxb_store *s, const char *account_id, int64_t now_ms,
                                     fxb_err *err);
fxb_code fxb_password_record_success(fxb_store *s, const char *account_id, int64_t now_ms,
                                     fxb_err *err);

/* The whole password sign-in check, with the same answer whether or not the
 * number has an account or a password. account_id is NULL when no account
 * has this phone; encoded is NULL when the account has no password. Order:
 * lock check, argon2 verify (dummy when encoded is NULL), then the counter.
 * When account_id is NULL the lockout is counted under the phone's tag
 * ({p:<tag>}:pwlock) instead, so that "locked after 5 tries" cannot reveal
 * an account either. Returns FXB_OK only for an existing account whose
 * password matches; else INVALID_ARGUMENT PHONE_INVALID (malformed number),
 * UNAUTHENTICATED CREDENTIALS_INVALID (tries left before the lock in the
 * message), RESOURCE_EXHAUSTED PASSWORD_LOCKED (retry_after_ms), or a store
 * error. */
fxb_code fxb_password_authenticate(fxb_store *s, const uint8_t secret[FXB_SECRET_LEN],
                                   const char *phone, const char *account_id, const char *encoded,
                                   const char *pw, int64_t now_ms, fxb_err *err);

#endif
