/* Blobs: immutable, content-addressed byte strings (uploaded materials),
 * named by the lower-case hex SHA-256 of their bytes. An interface (a
 * table of functions over a state) so that object storage can replace the
 * filesystem implementation without touching its callers.
 *
 * Writing is a stream: begin, write chunks, then commit (the bytes become
 * the blob of their digest; a blob already stored under that digest is
 * kept and the new copy dropped) or abort (nothing is left behind). The
 * digest is computed while writing, so a caller may check it (and refuse)
 * before committing.
 *
 * The filesystem implementation (fxb_blob_fs_new) keeps, under
 * <data_dir>/blobs (directories 0700, files 0600):
 *   tmp/up-<32 hex>              a write in progress (random name, O_EXCL)
 *   sha256/<aa>/<bb>/<64 hex>    a committed blob (aa, bb: its first hex
 *                                digits, so no directory grows too large)
 * A commit fsyncs the file, moves it into place without replacing an
 * existing blob, and fsyncs the directories it changed: once commit
 * returns, the blob survives a crash. File names carry digests and random
 * ids only, never anything a client chose. Temp files older than
 * FXB_BLOB_TMP_STALE_S (a crash mid-write) are removed when the store is
 * opened. */
#ifndef FXB_BLOB_H
#define FXB_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/status.h"

#define FXB_BLOB_HEX_LEN     64 /* SHA-256, lower-case hex */
#define FXB_BLOB_SUBDIR      "blobs"
#define FXB_BLOB_TMP_STALE_S (24 * 3600)
/* Writes are gathered into a buffer of this size before they reach the
 * file, so many tiny chunks do not cost one system call each. */
#define FXB_BLOB_WRITE_BUFFER (64 * 1024)

/* fxb_err reasons of this module. */
#define FXB_BLOB_IO        "BLOB_IO"             /* INTERNAL: the storage failed */
#define FXB_BLOB_NOT_FOUND "BLOB_NOT_FOUND"      /* NOT_FOUND */
#define FXB_BLOB_DIGEST    "BLOB_DIGEST_INVALID" /* INVALID_ARGUMENT: not 64 lower hex */

/* A write in progress; implementation-defined. */
typedef struct fxb_blob_writer fxb_blob_writer;

/* A blob store: state plus its operations. Every function returns FXB_OK
 * or an error also stored in *err (which may not be NULL). A store may be
 * used from several threads at once; a writer belongs to one thread at a
 * time. */
typedef struct fxb_blob_store {
    void *state;
    /* Starts a write; *out is freed by exactly one commit or abort. */
    fxb_code (*begin)(void *state, fxb_blob_writer **out, fxb_err *err);
    /* Appends len bytes (len may be 0). After a failure the writer can
     * only be aborted. */
    fxb_code (*write)(fxb_blob_writer *w, const void *data, size_t len, fxb_err *err);
    /* Ends the data and writes the digest of everything written into hex
     * (FXB_BLOB_HEX_LEN + 1 bytes); no write may follow. May be called more
     * than once. */
    fxb_code (*digest)(fxb_blob_writer *w, char *hex, fxb_err *err);
    /* Stores the bytes as the blob of their digest (written into hex when
     * not NULL) and frees w, whatever the outcome. *created (may be NULL)
     * tells whether this commit made the blob (false: it existed and was
     * kept). On failure nothing is left behind. */
    fxb_code (*commit)(fxb_blob_writer *w, char *hex, bool *created, fxb_err *err);
    /* Drops the write and frees w; NULL is a no-op. Never fails. */
    void (*abort)(fxb_blob_writer *w);
    /* FXB_OK with the blob's size in *size (may be NULL), or NOT_FOUND
     * reason BLOB_NOT_FOUND. */
    fxb_code (*stat)(void *state, const char *hex, uint64_t *size, fxb_err *err);
    /* Reads up to cap bytes at offset into buf; *n is how many (0 at the
     * end). NOT_FOUND reason BLOB_NOT_FOUND when there is no such blob. */
    fxb_code (*read)(void *state, const char *hex, uint64_t offset, void *buf, size_t cap,
                     size_t *n, fxb_err *err);
    /* Removes a blob; removing one that does not exist is FXB_OK. Callers
     * remove only blobs no record refers to: blobs are shared. */
    fxb_code (*remove)(void *state, const char *hex, fxb_err *err);
    /* Releases the state. */
    void (*free)(void *state);
} fxb_blob_store;

/* The filesystem store under <data_dir>/blobs, creating the directories
 * (0700) when missing and sweeping stale temp files. Returns NULL with
 * *err set (INTERNAL BLOB_IO naming the path, or INVALID_ARGUMENT for a
 * missing or over-long data_dir). Free with fxb_blob_store_free. */
fxb_blob_store *fxb_blob_fs_new(const char *data_dir, fxb_err *err);

/* Releases any store made by a constructor of this module; NULL is a no-op. */
void fxb_blob_store_free(fxb_blob_store *bs);

/* True when hex is exactly FXB_BLOB_HEX_LEN lower-case hex digits. */
bool fxb_blob_digest_valid(const char *hex);

/* Shorthands for the table. */
static inline fxb_code fxb_blob_begin(const fxb_blob_store *bs, fxb_blob_writer **out, fxb_err *err)
{
    return bs->begin(bs->state, out, err);
}

static inline fxb_code fxb_blob_write(const fxb_blob_store *bs, fxb_blob_writer *w,
                                      const void *data, size_t len, fxb_err *err)
{
    return bs->write(w, data, len, err);
}

static inline fxb_code fxb_blob_digest(const fxb_blob_store *bs, fxb_blob_writer *w, char *hex,
                                       fxb_err *err)
{
    return bs->digest(w, hex, err);
}

static inline fxb_code fxb_blob_commit(const fxb_blob_store *bs, fxb_blob_writer *w, char *hex,
                                       bool *created, fxb_err *err)
{
    return bs->commit(w, hex, created, err);
}

static inline void fxb_blob_abort(const fxb_blob_store *bs, fxb_blob_writer *w)
{
    bs->abort(w);
}

static inline fxb_code fxb_blob_stat(const fxb_blob_store *bs, const char *hex, uint64_t *size,
                                     fxb_err *err)
{
    return bs->stat(bs->state, hex, size, err);
}

/* True when the blob is stored (false also when the store cannot tell). */
static inline bool fxb_blob_exists(const fxb_blob_store *bs, const char *hex)
{
    fxb_err err;
    return bs->stat(bs->state, hex, NULL, &err) == FXB_OK;
}

static inline fxb_code fxb_blob_read(const fxb_blob_store *bs, const char *hex, uint64_t offset,
                                     void *buf, size_t cap, size_t *n, fxb_err *err)
{
    return bs->read(bs->state, hex, offset, buf, cap, n, err);
}

static inline fxb_code fxb_blob_remove(const fxb_blob_store *bs, const char *hex, fxb_err *err)
{
    return bs->remove(bs->state, hex, err);
}

#endif
