/* The per-deployment server secret: 32 random bytes that key every hash
 * fxb keeps of short, guessable values (phone tags, one-time codes), so that
 * a copy of the Redis data alone cannot be searched for them. Shared by all
 * servers of a deployment (copy the file); losing it invalidates live codes
 * and rate-limit counters, nothing durable. */
#ifndef FXB_SECRET_H
#define FXB_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/status.h"

#define FXB_SECRET_LEN 32
/* Relative to the data directory. */
#define FXB_SECRET_FILE "keys/server-secret"
/* Hex digits of an HMAC-SHA256; buffers hold FXB_HMAC_HEX_LEN + 1 bytes. */
#define FXB_HMAC_HEX_LEN 64
/* Longest label accepted by fxb_hmac_hex. */
#define FXB_HMAC_LABEL_MAX 64

/* fxb_err reasons (all FXB_FAILED_PRECONDITION except SECRET_IO, INTERNAL). */
#define FXB_SECRET_MISSING  "SECRET_MISSING"
#define FXB_SECRET_INVALID  "SECRET_INVALID"  /* not a regular file of 32 bytes */
#define FXB_SECRET_INSECURE "SECRET_INSECURE" /* group/world access or another owner */
#define FXB_SECRET_IO       "SECRET_IO"

/* Reads <data_dir>/keys/server-secret into out. When the file does not
 * exist and create is true, creates <data_dir> and <data_dir>/keys (0700) if
 * needed and writes 32 getrandom(2) bytes with mode 0600 through a temp file
 * that is fsync'd and hard-linked into place, so a crash never leaves a
 * short file and two processes starting at once end up with the same secret.
 * Refuses a symlink, a file that is not exactly 32 bytes, one with any
 * group/other permission bit, or one owned by another user. Returns FXB_OK or
 * an error (reasons above) with out zeroed; messages name the path, never
 * bytes. */
fxb_code fxb_secret_load_or_create(const char *data_dir, uint8_t out[FXB_SECRET_LEN], bool create,
                                   fxb_err *err);

/* HMAC-SHA256 under key over label || 0x00 || data, as 64 lower-case hex
 * digits + NUL. The label (1..FXB_HMAC_LABEL_MAX bytes, no NUL inside)
 * separates uses, so a hash made for one purpose never equals one made for
 * another from the same bytes. data may be NULL when len is 0. Returns
 * false (out "") on a bad argument or an OpenSSL failure. */
bool fxb_hmac_hex(const uint8_t key[FXB_SECRET_LEN], const char *label, const void *data,
                  size_t len, char out[FXB_HMAC_HEX_LEN + 1]);

#endif
