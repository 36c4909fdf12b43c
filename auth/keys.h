/* The ES256 keyring that signs and verifies access tokens: one PEM file per
 * key in <data_dir>/keys/jwt/, named <kid>.pem, plus an optional file
 * `active` naming the key that signs. Keys are loaded once at start-up and
 * never change afterwards, so a keyring is read-only and safe to share
 * between threads. Key material never appears in an error message. */
#ifndef FXB_AUTH_KEYS_H
#define FXB_AUTH_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

#include "server/status.h"

/* The key directory below the data directory. */
#define FXB_KEYRING_SUBDIR "keys/jwt"
/* Longest key id; a kid is 1..FXB_KEY_KID_MAX characters of [A-Za-z0-9_-]. */
#define FXB_KEY_KID_MAX 32
/* Most keys one directory may hold (the active one plus retired ones that
 * still verify tokens issued before a rotation). */
#define FXB_KEYRING_MAX_KEYS 16
/* Largest key file accepted; a P-256 PEM is about 250 bytes. */
#define FXB_KEY_FILE_MAX 16384
/* Longest path handled for the directory and its files. */
#define FXB_KEYRING_PATH_MAX 1024

typedef struct fxb_keyring fxb_keyring;
typedef struct fxb_key fxb_key;

/* Writes "<data_dir>/keys/jwt" into out. Returns FXB_OK, or
 * FXB_INVALID_ARGUMENT when it does not fit in cap bytes. */
fxb_code fxb_keyring_path(const char *data_dir, char *out, size_t cap, fxb_err *err);

/* True when kid is 1..FXB_KEY_KID_MAX characters of [A-Za-z0-9_-]. */
bool fxb_key_kid_valid(const char *kid);

/* Loads every <kid>.pem in dir (EC P-256 private keys, PKCS#8 or SEC1,
 * unencrypted). Files whose name starts with '.' and files not ending in
 * ".pem" (other than `active`) are ignored. The active key is the kid named
 * in `active`, else the greatest kid in byte order. A missing directory or
 * one without key files is FXB_NOT_FOUND (reason KEYRING_EMPTY: the one case
 * where generating a key is the fix). An unreadable or invalid key file, a
 * bad kid, more than FXB_KEYRING_MAX_KEYS keys or an `active` naming no
 * loaded key is FXB_FAILED_PRECONDITION (reason KEYRING_INVALID), with a
 * message naming the file and never its content. Returns NULL on failure;
 * free the result with fxb_keyring_free. */
fxb_keyring *fxb_keyring_load(const char *dir, fxb_err *err);

/* Creates dir (and missing parents, mode 0700) if needed, writes a new
 * P-256 key as <kid>.pem (mode 0600, temp file + fsync + rename) and makes
 * it active (same way). kid = "k" + UTC time "YYYYMMDDTHHMMSSZ" + "-" + 8 random
 * hex digits, so later keys sort after earlier ones. kid_out (may be NULL)
 * receives the kid and must hold FXB_KEY_KID_MAX + 1 bytes. Refuses
 * (FXB_FAILED_PRECONDITION) when dir already holds FXB_KEYRING_MAX_KEYS keys
 * or a file load would refuse by name, since the new key could never be
 * loaded. Returns FXB_OK or FXB_INTERNAL / FXB_FAILED_PRECONDITION with a
 * message naming the path. Existing key files are never touched. */
fxb_code fxb_keyring_generate(const char *dir, char *kid_out, fxb_err *err);

/* Releases the keyring (wiping private key text). NULL is allowed. */
void fxb_keyring_free(fxb_keyring *ring);

/* Number of keys (1..FXB_KEYRING_MAX_KEYS). */
size_t fxb_keyring_count(const fxb_keyring *ring);

/* The i-th key in kid order (NULL when out of range). */
const fxb_key *fxb_keyring_at(const fxb_keyring *ring, size_t i);

/* The key that signs. Never NULL for a loaded keyring. */
const fxb_key *fxb_keyring_active(const fxb_keyring *ring);

/* The key with this kid, or NULL. */
const fxb_key *fxb_keyring_find(const fxb_keyring *ring, const char *kid);

/* Accessors; the returned memory belongs to the keyring. */
const char *fxb_key_kid(const fxb_key *key);
/* The SubjectPublicKeyInfo PEM (what libjwt verifies with); *len may be
 * NULL. */
const char *fxb_key_public_pem(const fxb_key *key, size_t *len);
/* The PKCS#8 private key PEM (what libjwt signs with); *len may be NULL. */
const char *fxb_key_private_pem(const fxb_key *key, size_t *len);
/* The parsed key (private + public), for direct OpenSSL use. Do not free. */
EVP_PKEY *fxb_key_pkey(const fxb_key *key);

#endif
