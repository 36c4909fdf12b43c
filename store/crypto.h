/* Personal data at rest (PIPL art. 51, GB/T 35273 §6.3): field encryption
 * with AES-256-GCM under rotatable data keys, an HMAC-SHA256 blind index for
 * exact-match lookups, and the masks used wherever personal data is shown.
 *
 * Key directory (normally <FXB_DATA_DIR>/FXB_CRYPTO_KEY_SUBDIR), mode 0700:
 *   <kid>.key   a data key: exactly 32 random bytes, mode 0600. kid is
 *               1..16 characters of [a-z0-9]; "index" is reserved.
 *   active      the kid used for new seals (one line). Without it, the
 *               greatest kid: longer kids are greater, equal lengths compare
 *               bytewise, so both counters ("9" < "10") and the timestamps
 *               of fxb_crypto_generate_key order as expected.
 *   index.key   the blind-index key, 32 bytes, mode 0600. It NEVER rotates:
 *               every stored index is an HMAC under it, so a new index key
 *               would require recomputing every index from the decrypted
 *               data (a re-indexing migration) before lookups work again.
 * Names starting with '.' (temp files of an interrupted write) are ignored,
 * as are names not ending in ".key" other than "active".
 *
 * Sealed format: "v1.<kid>.<base64url(nonce[12] || ciphertext || tag[16])>"
 * (no padding), AAD "fxb|v1|<field_label>|<owner_id>", so a ciphertext copied
 * to another field or another owner does not open. Nonces are 96 random bits:
 * keep each data key under 2^32 seals (NIST SP 800-38D §8.3) by rotating;
 * at our scale (1e8 values) a rotation per year leaves a wide margin.
 *
 * A loaded fxb_crypto is immutable: seal/open/index may be called from any
 * number of threads at once. Nothing here logs; messages in fxb_err name
 * files and kids, never key bytes or plaintext. */
#ifndef FXB_CRYPTO_H
#define FXB_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/arena.h"
#include "server/status.h"

#define FXB_CRYPTO_KEY_SUBDIR    "keys/data" /* under FXB_DATA_DIR */
#define FXB_CRYPTO_KEY_LEN       32u
#define FXB_CRYPTO_KID_MAX       16u
#define FXB_CRYPTO_KEYS_MAX      16u
#define FXB_CRYPTO_NONCE_LEN     12u
#define FXB_CRYPTO_TAG_LEN       16u
#define FXB_CRYPTO_PLAINTEXT_MAX 4096u
/* field_label: 1..32 of [a-z0-9_.-]; owner_id: 1..128 of [A-Za-z0-9_:.-].
 * Neither may contain '|', which keeps the AAD unambiguous. */
#define FXB_CRYPTO_LABEL_MAX 32u
#define FXB_CRYPTO_OWNER_MAX 128u
/* Longest sealed string (without NUL): "v1." kid "." base64url of the
 * largest body. Anything longer is refused before decoding. */
#define FXB_CRYPTO_B64_LEN(n) ((4u * (n) + 2u) / 3u)
#define FXB_CRYPTO_SEALED_MAX                                                                      \
    (3u + FXB_CRYPTO_KID_MAX + 1u +                                                                \
     FXB_CRYPTO_B64_LEN(FXB_CRYPTO_NONCE_LEN + FXB_CRYPTO_PLAINTEXT_MAX + FXB_CRYPTO_TAG_LEN))
#define FXB_CRYPTO_INDEX_HEX_LEN 32u /* 128 bits, lower-case hex */

/* fxb_err reasons returned by this module. */
#define FXB_CRYPTO_KEYS_MISSING      "KEYS_MISSING"        /* FAILED_PRECONDITION */
#define FXB_CRYPTO_KEY_FILE_INVALID  "KEY_FILE_INVALID"    /* FAILED_PRECONDITION */
#define FXB_CRYPTO_KEY_FILE_INSECURE "KEY_FILE_INSECURE"   /* FAILED_PRECONDITION */
#define FXB_CRYPTO_KEYS_TOO_MANY     "KEYS_TOO_MANY"       /* FAILED_PRECONDITION */
#define FXB_CRYPTO_KEY_IO            "KEY_IO"              /* INTERNAL */
#define FXB_CRYPTO_KEY_UNKNOWN       "KEY_UNKNOWN"         /* DATA_LOSS */
#define FXB_CRYPTO_DECRYPT_FAILED    "DECRYPT_FAILED"      /* DATA_LOSS */
#define FXB_CRYPTO_SEALED_MALFORMED  "SEALED_MALFORMED"    /* DATA_LOSS */
#define FXB_CRYPTO_BAD_ARGUMENT      "CRYPTO_BAD_ARGUMENT" /* INVALID_ARGUMENT */
#define FXB_CRYPTO_FAILED            "CRYPTO_FAILED"       /* INTERNAL */

typedef struct fxb_crypto fxb_crypto;

/* Loads every key of dir. With create_if_missing, a missing or empty
 * directory is initialised: directories made 0700, then index.key, one data
 * key and `active`, each written to a temp file and linked/renamed into place
 * (getrandom(2) bytes). A directory that holds data keys but no index.key is
 * refused even with create_if_missing: a fresh index key would silently
 * orphan every stored index. Refuses (NULL, err set, reason above) key files
 * of the wrong size, symlinks, files readable or writable by group/others,
 * a group/world-writable directory or `active`, "*.key" names that are not
 * a valid kid, more than FXB_CRYPTO_KEYS_MAX data keys, and an `active` that
 * names no loaded key. Free with fxb_crypto_free. */
fxb_crypto *fxb_crypto_load(const char *dir, bool create_if_missing, fxb_err *err);

/* Wipes the keys and frees. NULL is a no-op. */
void fxb_crypto_free(fxb_crypto *c);

/* The kid new seals use; valid as long as c is. */
const char *fxb_crypto_active_kid(const fxb_crypto *c);

/* Rotation (for `fxb-admin`): checks that dir loads, adds a new data key
 * named "k<UTC yyyymmddhhmmss>" (a letter appended if that kid exists) and
 * makes it active. Writes the kid into kid_out (FXB_CRYPTO_KID_MAX + 1
 * bytes, or NULL). Refuses when dir already holds FXB_CRYPTO_KEYS_MAX keys (rekey the
 * data and retire old keys first). Servers that loaded dir before keep their
 * key set until they reload it: with several servers, distribute the key to
 * all of them before any seals with it, or the others answer KEY_UNKNOWN.
 * Returns FXB_OK or the error also stored in *err. */
fxb_code fxb_crypto_generate_key(const char *dir, char *kid_out, fxb_err *err);

/* Encrypts len bytes of pt (NULL allowed when len is 0; len at most
 * FXB_CRYPTO_PLAINTEXT_MAX) under the active key, bound to field_label and
 * owner_id. *out_sealed is a NUL-terminated string allocated in arena a (it
 * lives until the arena is reset; nothing to free). Returns FXB_OK, or
 * INVALID_ARGUMENT for bad labels/ids/lengths, INTERNAL when the arena is
 * full or OpenSSL fails; *out_sealed is then NULL. */
fxb_code fxb_crypto_seal(const fxb_crypto *c, const char *field_label, const char *owner_id,
                         const uint8_t *pt, size_t len, fxb_arena *a, char **out_sealed,
                         fxb_err *err);

/* Reverses fxb_crypto_seal for the same field_label and owner_id. On FXB_OK
 * *out_pt is the plaintext in arena a with a NUL after its *out_len bytes (so
 * text fields can be used as C strings). Errors: DATA_LOSS with reason
 * SEALED_MALFORMED (not "v1.<kid>.<canonical base64url>" or a body of
 * impossible length), KEY_UNKNOWN (kid not loaded) or DECRYPT_FAILED (tag
 * check failed: tampered, or another field/owner/key); INVALID_ARGUMENT for
 * bad labels/ids; INTERNAL for arena or OpenSSL failure. On error *out_pt is
 * NULL and no unauthenticated plaintext is left in the arena. */
fxb_code fxb_crypto_open(const fxb_crypto *c, const char *field_label, const char *owner_id,
                         const char *sealed, fxb_arena *a, uint8_t **out_pt, size_t *out_len,
                         fxb_err *err);

/* True when sealed is a well-formed "v1.<kid>." string whose kid is not the
 * active one, i.e. `fxb-admin rekey` should open and seal it again. False for
 * the active kid and for malformed input (open reports those). */
bool fxb_crypto_needs_rekey(const fxb_crypto *c, const char *sealed);

/* Blind index: HMAC-SHA256 under index.key over label || 0x00 || value,
 * first 128 bits as 32 lower-case hex digits + NUL in out_hex. Deterministic;
 * labels (1..32 of [a-z0-9_.-], e.g. "phone", "id_number") separate domains so
 * equal values of different kinds never share an index. value must already
 * be normalised by the caller (the match is byte-exact).
 *
 * Why 128 bits: among n = 1e8 indexed values the chance that any two collide
 * is about n^2 / 2^129 ~ 1.5e-23; and since the HMAC is keyed, no one without
 * index.key can search for collisions or preimages offline at all. Whoever
 * holds index.key, though, can enumerate a low-entropy space such as all
 * phone numbers in minutes: it is as secret as the data keys.
 *
 * Returns FXB_OK; or INVALID_ARGUMENT (bad label, NULL, value longer than
 * FXB_CRYPTO_PLAINTEXT_MAX) or INTERNAL, also stored in *err (may be NULL),
 * with out_hex set to "". */
fxb_code fxb_crypto_index(const fxb_crypto *c, const char *label, const char *value,
                          char out_hex[FXB_CRYPTO_INDEX_HEX_LEN + 1], fxb_err *err);

/* "410702199001011234" -> "410702********1234": first 6 and last 4 kept
 * (a lower-case check digit x shown as X). Input that is not 17 digits plus
 * a digit or X gives "*" and false: we never show part of something we
 * cannot recognise. */
bool fxb_mask_id_number(const char *id18, char out[19]);

/* First character, then one '*' per further character, counting Unicode
 * characters, not bytes: "张三" -> "张*", "欧阳娜娜" -> "欧***". A name of a
 * single character gives "*" (showing it would show the whole name); "" gives
 * "". Invalid UTF-8 (stray or missing continuation bytes, overlong forms,
 * surrogates, beyond U+10FFFF), NULL, or a result that does not fit in cap
 * bytes gives "*" (when cap >= 2) and false. */
bool fxb_mask_name(const char *utf8_name, char *out, size_t cap);

#endif
