/* Accounts: one per person, found by phone number. The number is stored
 * sealed (AES-256-GCM, store/crypto) and looked up by its blind index; only
 * its masked form is kept in clear for display. Citizens' accounts are
 * created on their first verified sign-in; officer, admin and data-feed
 * accounts only by fxb-admin. */
#ifndef FXB_ACCOUNT_H
#define FXB_ACCOUNT_H

#include <stdbool.h>
#include <stdint.h>

#include "server/handler.h"
#include "store/crypto.h"
#include "store/store.h"

#define FXB_PHONE_MASKED_MAX  16
#define FXB_PASSWORD_HASH_MAX 256

typedef struct fxb_account {
    char id[FXB_ID_MAX + 1];
    int level;      /* FXB_LEVEL_* */
    uint32_t roles; /* FXB_ROLE_* */
    char dept[FXB_DEPT_MAX + 1];
    char masked_phone[FXB_PHONE_MASKED_MAX];
    bool has_password;
    int64_t created_ms;
} fxb_account;

/* The account of a normalised phone number: FXB_OK, or FXB_NOT_FOUND reason
 * ACCOUNT_NOT_FOUND, or a store error. */
fxb_code fxb_account_by_phone(fxb_store *s, const fxb_crypto *c, const char *phone,
                              fxb_account *out, fxb_err *err);

/* Finds the account of phone or creates a citizen account (L1) for it;
 * *created tells which. Safe under concurrent first sign-ins of the same
 * number: exactly one account results. */
fxb_code fxb_account_sign_in(fxb_store *s, const fxb_crypto *c, const char *phone, int64_t now_ms,
                             fxb_account *out, bool *created, fxb_err *err);

/* fxb-admin: gives the account of phone (created if needed) the role(s)
 * and department. An officer must have a department; roles are added to
 * what the account holds, and the department replaced. */
fxb_code fxb_account_grant_role(fxb_store *s, const fxb_crypto *c, const char *phone,
                                uint32_t roles, const char *dept, int64_t now_ms, fxb_account *out,
                                fxb_err *err);

/* The account's phone number, decrypted into phone (12 bytes with the NUL);
 * the plaintext copy in the arena is wiped. FXB_NOT_FOUND reason
 * ACCOUNT_NOT_FOUND, FXB_DATA_LOSS (the sealed value does not open or is not a
 * phone number), or a store error. */
fxb_code fxb_account_phone(fxb_store *s, const fxb_crypto *c, const char *id, fxb_arena *a,
                           char phone[12], fxb_err *err);

/* Reads an account by id: FXB_NOT_FOUND reason ACCOUNT_NOT_FOUND if absent. */
fxb_code fxb_account_get(fxb_store *s, const char *id, fxb_account *out, fxb_err *err);

/* The argon2id encoded password of an account into out: FXB_OK, or
 * FXB_NOT_FOUND reason PASSWORD_NOT_SET. */
fxb_code fxb_account_password(fxb_store *s, const char *id, char *out, size_t cap, fxb_err *err);

/* Stores an encoded password hash (from fxb_password_hash). */
fxb_code fxb_account_set_password(fxb_store *s, const char *id, const char *encoded, fxb_err *err);

/* Raises (never lowers) the assurance level; the identity issue calls it. */
fxb_code fxb_account_raise_level(fxb_store *s, const char *id, int level, fxb_err *err);

/* Sets the assurance level, up or down (identity unbinding lowers it to
 * FXB_LEVEL_PHONE). FXB_NOT_FOUND reason ACCOUNT_NOT_FOUND for an unknown
 * account or a level outside FXB_LEVEL_*, or a store error. */
fxb_code fxb_account_set_level(fxb_store *s, const char *id, int level, fxb_err *err);

#endif
