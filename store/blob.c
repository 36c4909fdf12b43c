/* The filesystem blob store (store/blob.h). A write goes to a fresh temp
 * file while SHA-256 runs over the same bytes; commit fsyncs it and moves
 * it to its content address with a rename that never replaces (so two
 * uploads of the same bytes race harmlessly: one file wins, the other is
 * dropped), then fsyncs the directories it changed. */
#include "store/blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define TMP_PREFIX "up-"
#define TMP_RAND   16 /* bytes: 32 hex digits */
#define TMP_TRIES  4
#define DIR_MODE   0700
#define FILE_MODE  0600
#define ROOT_MAX   (PATH_MAX - 128) /* room for "/sha256/aa/bb/<hex>" */
#define ZH_BUSY    "系统繁忙，请稍后重试"

typedef struct fs_state {
    char root[ROOT_MAX]; /* <data_dir>/blobs */
} fs_state;

struct fxb_blob_writer {
    fs_state *fs;
    int fd;
    bool done;   /* digest taken: no more writes */
    bool failed; /* a write failed: only abort remains */
    EVP_MD_CTX *md;
    char tmp[PATH_MAX];
    char hex[FXB_BLOB_HEX_LEN + 1];
    size_t buf_len;
    unsigned char buf[FXB_BLOB_WRITE_BUFFER];
};

static fxb_code io_error(fxb_err *err, const char *what, int e)
{
    return fxb_err_set(err, FXB_INTERNAL, FXB_BLOB_IO, ZH_BUSY, "blob store: %s: %s", what,
                       strerror(e));
}

bool fxb_blob_digest_valid(const char *hex)
{
    if (hex == NULL || strnlen(hex, FXB_BLOB_HEX_LEN + 1) != FXB_BLOB_HEX_LEN)
        return false;
    for (size_t i = 0; i < FXB_BLOB_HEX_LEN; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return false;
    return true;
}

static fxb_code bad_digest(fxb_err *err)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_BLOB_DIGEST, ZH_BUSY,
                       "a blob digest is %d lower-case hex digits", FXB_BLOB_HEX_LEN);
}

static fxb_code not_found(fxb_err *err, const char *hex)
{
    return fxb_err_set(err, FXB_NOT_FOUND, FXB_BLOB_NOT_FOUND, ZH_BUSY,
                       "blob store: no blob %.12s...", hex);
}

/* "<root>/sha256[/<aa>[/<bb>[/<hex>]]]" into out by depth 0..3. */
static void blob_path(const fs_state *fs, const char *hex, int depth, char *out, size_t cap)
{
    if (depth == 0)
        snprintf(out, cap, "%s/sha256", fs->root);
    else if (depth == 1)
        snprintf(out, cap, "%s/sha256/%.2s", fs->root, hex);
    else if (depth == 2)
        snprintf(out, cap, "%s/sha256/%.2s/%.2s", fs->root, hex, hex + 2);
    else
        snprintf(out, cap, "%s/sha256/%.2s/%.2s/%s", fs->root, hex, hex + 2, hex);
}

static int mkdir_ok(const char *path, bool *created)
{
    if (mkdir(path, DIR_MODE) == 0) {
        if (created)
            *created = true;
        return 0;
    }
    return errno == EEXIST ? 0 : -1;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* --- writer ----------------------------------------------------------------- */

static void writer_free(fxb_blob_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    EVP_MD_CTX_free(w->md);
    free(w);
}

static fxb_code fs_begin(void *state, fxb_blob_writer **out, fxb_err *err)
{
    fs_state *fs = state;
    *out = NULL;
    fxb_blob_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    w->fs = fs;
    w->fd = -1;
    w->md = EVP_MD_CTX_new();
    if (w->md == NULL || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        writer_free(w);
        return fxb_err_set(err, FXB_INTERNAL, FXB_BLOB_IO, ZH_BUSY,
                           "blob store: SHA-256 unavailable");
    }
    for (int tries = 0; tries < TMP_TRIES && w->fd < 0; tries++) {
        unsigned char rnd[TMP_RAND];
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            writer_free(w);
            return fxb_err_set(err, FXB_INTERNAL, FXB_BLOB_IO, ZH_BUSY,
                               "blob store: no randomness for a temp name");
        }
        int n = snprintf(w->tmp, sizeof w->tmp, "%s/tmp/" TMP_PREFIX, fs->root);
        for (size_t i = 0; i < sizeof rnd; i++)
            n += snprintf(w->tmp + n, sizeof w->tmp - (size_t)n, "%02x", rnd[i]);
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, FILE_MODE);
        if (w->fd < 0 && errno != EEXIST) {
            int e = errno;
            writer_free(w);
            return io_error(err, "cannot create a temp file", e);
        }
    }
    if (w->fd < 0) {
        writer_free(w);
        return io_error(err, "cannot create a temp file", EEXIST);
    }
    *out = w;
    return FXB_OK;
}

static fxb_code writer_flush(fxb_blob_writer *w, fxb_err *err)
{
    if (w->buf_len > 0 && write_all(w->fd, w->buf, w->buf_len) != 0) {
        w->failed = true;
        return io_error(err, "cannot write a temp file", errno);
    }
    w->buf_len = 0;
    return FXB_OK;
}

static fxb_code fs_write(fxb_blob_writer *w, const void *data, size_t len, fxb_err *err)
{
    if (w->failed || w->done)
        return fxb_err_set(err, FXB_INTERNAL, FXB_BLOB_IO, ZH_BUSY,
                           "blob store: write after the end or a failure");
    if (len == 0)
        return FXB_OK;
    if (EVP_DigestUpdate(w->md, data, len) != 1) {
        w->failed = true;
        return fxb_err_set(err, FXB_INTERNAL, FXB_BLOB_IO, ZH_BUSY, "blob store: SHA-256 failed");
    }
    const unsigned char *p = data;
    if (w->buf_len + len > sizeof w->buf) {
        if (writer_flush(w, err) != FXB_OK)
            return err->code;
        if (len >= sizeof w->buf) {
            if (write_all(w->fd, p, len) != 0) {
                w->failed = true;
                return io_error(err, "cannot write a temp file", errno);
            }
            return FXB_OK;
        }
    }
    memcpy(w->buf + w->buf_len, p, len);
    w->buf_len += len;
    return FXB_OK;
}

static fxb_code fs_digest(fxb_blob_writer *w, char *hex, fxb_err *err)
{
    if (w->failed)
        return fxb_err_set(err, FXB_INTERNAL, FXB_BLOB_IO, ZH_BUSY,
                           "blob store: digest of a failed write");
    if (!w->done) {
        if (writer_flush(w, err) != FXB_OK)
            return err->code;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(w->md, md, &n) != 1 || n * 2 != FXB_BLOB_HEX_LEN) {
            w->failed = true;
            return fxb_err_set(err, FXB_INTERNAL, FXB_BLOB_IO, ZH_BUSY,
                               "blob store: SHA-256 failed");
        }
        for (unsigned int i = 0; i < n; i++)
            snprintf(w->hex + 2 * i, 3, "%02x", md[i]);
        w->done = true;
    }
    if (hex != NULL)
        memcpy(hex, w->hex, FXB_BLOB_HEX_LEN + 1);
    return FXB_OK;
}

static void fs_abort(fxb_blob_writer *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    unlink(w->tmp);
    writer_free(w);
}

/* Moves tmp to final unless final exists: 1 moved, 0 final existed (tmp
 * left for the caller to remove), -1 error (errno). */
static int move_no_replace(const char *tmp, const char *final)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
        return 1;
    if (errno == EEXIST)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* a filesystem without RENAME_NOREPLACE: link refuses to replace too */
    if (link(tmp, final) == 0) {
        unlink(tmp);
        return 1;
    }
    return errno == EEXIST ? 0 : -1;
}

static fxb_code fs_commit(fxb_blob_writer *w, char *hex, bool *created, fxb_err *err)
{
    if (created)
        *created = false;
    fxb_code rc = fs_digest(w, hex, err);
    if (rc != FXB_OK) {
        fs_abort(w);
        return rc;
    }
    if (fsync(w->fd) != 0) {
        int e = errno;
        fs_abort(w);
        return io_error(err, "cannot sync a temp file", e);
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        int e = errno;
        fs_abort(w);
        return io_error(err, "cannot close a temp file", e);
    }
    char dirs[3][PATH_MAX], final[PATH_MAX];
    bool made[3] = {false, false, false};
    for (int d = 0; d < 3; d++)
        blob_path(w->fs, w->hex, d, dirs[d], sizeof dirs[d]);
    blob_path(w->fs, w->hex, 3, final, sizeof final);
    if (mkdir_ok(dirs[1], &made[1]) != 0 || mkdir_ok(dirs[2], &made[2]) != 0) {
        int e = errno;
        fs_abort(w);
        return io_error(err, "cannot create a blob directory", e);
    }
    int moved = move_no_replace(w->tmp, final);
    if (moved < 0) {
        int e = errno;
        fs_abort(w);
        return io_error(err, "cannot move a blob into place", e);
    }
    if (moved == 0)
        unlink(w->tmp); /* the same bytes are stored already */
    /* the new entries: the file in bb, and each directory we made */
    if ((moved && fsync_dir(dirs[2]) != 0) || (made[2] && fsync_dir(dirs[1]) != 0) ||
        (made[1] && fsync_dir(dirs[0]) != 0)) {
        int e = errno;
        writer_free(w);
        return io_error(err, "cannot sync a blob directory", e);
    }
    if (created)
        *created = moved == 1;
    writer_free(w);
    return FXB_OK;
}

/* --- reading ---------------------------------------------------------------- */

static fxb_code fs_stat(void *state, const char *hex, uint64_t *size, fxb_err *err)
{
    if (!fxb_blob_digest_valid(hex))
        return bad_digest(err);
    char path[PATH_MAX];
    blob_path(state, hex, 3, path, sizeof path);
    struct stat st;
    bool found = stat(path, &st) == 0;
    if (!found && errno != ENOENT && errno != ENOTDIR)
        return io_error(err, "cannot look at a blob", errno);
    if (!found || !S_ISREG(st.st_mode))
        return not_found(err, hex);
    if (size)
        *size = (uint64_t)st.st_size;
    return FXB_OK;
}

static fxb_code fs_read(void *state, const char *hex, uint64_t offset, void *buf, size_t cap,
                        size_t *n, fxb_err *err)
{
    *n = 0;
    if (!fxb_blob_digest_valid(hex))
        return bad_digest(err);
    char path[PATH_MAX];
    blob_path(state, hex, 3, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return not_found(err, hex);
        return io_error(err, "cannot open a blob", errno);
    }
    if (offset > (uint64_t)INT64_MAX) {
        close(fd);
        return FXB_OK;
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = pread(fd, (unsigned char *)buf + got, cap - got, (off_t)(offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return io_error(err, "cannot read a blob", e);
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *n = got;
    return FXB_OK;
}

static fxb_code fs_remove(void *state, const char *hex, fxb_err *err)
{
    if (!fxb_blob_digest_valid(hex))
        return bad_digest(err);
    char path[PATH_MAX];
    blob_path(state, hex, 3, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        return io_error(err, "cannot remove a blob", errno);
    return FXB_OK;
}

static void fs_free(void *state)
{
    free(state);
}

/* --- opening ---------------------------------------------------------------- */

/* Removes temp files left by writes that never ended (a crash). */
static void sweep_tmp(const char *root)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/tmp", root);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    time_t cutoff = time(NULL) - FXB_BLOB_TMP_STALE_S;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_mtime < cutoff)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

fxb_blob_store *fxb_blob_fs_new(const char *data_dir, fxb_err *err)
{
    if (data_dir == NULL || data_dir[0] == '\0' ||
        strnlen(data_dir, ROOT_MAX) + sizeof "/" FXB_BLOB_SUBDIR > ROOT_MAX) {
        fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_BLOB_IO, ZH_BUSY,
                    "blob store: the data directory is missing or its path too long");
        return NULL;
    }
    fxb_blob_store *bs = calloc(1, sizeof *bs);
    fs_state *fs = calloc(1, sizeof *fs);
    if (bs == NULL || fs == NULL) {
        free(bs);
        free(fs);
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
        return NULL;
    }
    snprintf(fs->root, sizeof fs->root, "%s/" FXB_BLOB_SUBDIR, data_dir);
    char tmp[PATH_MAX], sha[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/tmp", fs->root);
    snprintf(sha, sizeof sha, "%s/sha256", fs->root);
    if (mkdir_ok(fs->root, NULL) != 0 || mkdir_ok(tmp, NULL) != 0 || mkdir_ok(sha, NULL) != 0) {
        int e = errno;
        free(bs);
        free(fs);
        io_error(err, "cannot create the blob directories under the data directory", e);
        return NULL;
    }
    sweep_tmp(fs->root);
    bs->state = fs;
    bs->begin = fs_begin;
    bs->write = fs_write;
    bs->digest = fs_digest;
    bs->commit = fs_commit;
    bs->abort = fs_abort;
    bs->stat = fs_stat;
    bs->read = fs_read;
    bs->remove = fs_remove;
    bs->free = fs_free;
    return bs;
}

void fxb_blob_store_free(fxb_blob_store *bs)
{
    if (bs == NULL)
        return;
    if (bs->free)
        bs->free(bs->state);
    free(bs);
}
