/* Field encryption, blind index and masks for personal data. Keys live in
 * one directory of small files so that rotation is "add a file, point
 * `active` at it" and an operator can audit them with ls -l. All buffers
 * that held key bytes or plaintext are wiped with OPENSSL_cleanse. */
#include "store/crypto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define INDEX_FILE    "index.key"
#define INDEX_NAME    "index" /* reserved: not a kid */
#define ACTIVE_FILE   "active"
#define KEY_SUFFIX    ".key"
#define AAD_PREFIX    "fxb|v1|"
#define SEALED_PREFIX "v1."
#define BODY_MAX      (FXB_CRYPTO_NONCE_LEN + FXB_CRYPTO_PLAINTEXT_MAX + FXB_CRYPTO_TAG_LEN)
#define AAD_MAX       (sizeof AAD_PREFIX + FXB_CRYPTO_LABEL_MAX + 1 + FXB_CRYPTO_OWNER_MAX)

typedef struct data_key {
    char kid[FXB_CRYPTO_KID_MAX + 1];
    uint8_t key[FXB_CRYPTO_KEY_LEN];
} data_key;

struct fxb_crypto {
    EVP_CIPHER *aes;
    EVP_MAC *hmac;
    size_t nkeys;
    size_t active;
    data_key keys[FXB_CRYPTO_KEYS_MAX];
    uint8_t index_key[FXB_CRYPTO_KEY_LEN];
};

static const char MSG_ZH_CONFIG[] = "服务配置错误，请联系管理员";
static const char MSG_ZH_INTERNAL[] = "系统繁忙，请稍后重试";
static const char MSG_ZH_DATA[] = "数据校验失败，请联系客服";
static const char MSG_ZH_ARG[] = "请求参数有误";

/* ---- names ------------------------------------------------------------ */

static bool kid_valid(const char *s, size_t len)
{
    if (len == 0 || len > FXB_CRYPTO_KID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
            return false;
    }
    return !(len == sizeof INDEX_NAME - 1 && memcmp(s, INDEX_NAME, len) == 0);
}

/* Shortlex: longer kids are greater, then bytewise. */
static int kid_cmp(const char *x, const char *y)
{
    size_t lx = strlen(x), ly = strlen(y);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x, y);
}

static bool label_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t len = strnlen(s, FXB_CRYPTO_LABEL_MAX + 1);
    if (len == 0 || len > FXB_CRYPTO_LABEL_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
              ch == '-'))
            return false;
    }
    return true;
}

static bool owner_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t len = strnlen(s, FXB_CRYPTO_OWNER_MAX + 1);
    if (len == 0 || len > FXB_CRYPTO_OWNER_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == ':' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* ---- files ------------------------------------------------------------- */

/* Sets an INTERNAL error naming the file (name may be "") and errno;
 * returns -1 so that callers can `return io_error(...)`. */
static int io_error(fxb_err *err, const char *what, const char *dir, const char *name)
{
    int e = errno;
    fxb_err_set(err, FXB_INTERNAL, FXB_CRYPTO_KEY_IO, MSG_ZH_CONFIG, "%s %s%s%s: %s", what, dir,
                name[0] ? "/" : "", name, strerror(e));
    return -1;
}

static int fill_random(uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes data to a temp file in dirfd, fsyncs it, then puts it in place as
 * name: renamed over an existing file when replace, else linked so that an
 * existing name is never overwritten (EEXIST). Crashes leave either the old
 * state or the complete new file, plus at most a '.'-temp file. */
static int write_file_atomic(int dirfd, const char *name, const uint8_t *data, size_t len,
                             bool replace)
{
    char tmp[64];
    uint8_t r[6];
    if (fill_random(r, sizeof r) != 0)
        return -1;
    snprintf(tmp, sizeof tmp, ".tmp-%ld-%02x%02x%02x%02x%02x%02x", (long)getpid(), r[0], r[1], r[2],
             r[3], r[4], r[5]);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (fchmod(fd, 0600) == 0 && write_all(fd, data, len) == 0 && fsync(fd) == 0)
        rc = 0;
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        saved = errno;
        rc = -1;
    }
    if (rc == 0) {
        if (replace)
            rc = renameat(dirfd, tmp, dirfd, name);
        else
            rc = linkat(dirfd, tmp, dirfd, name, 0);
        saved = errno;
    }
    if (rc != 0 || !replace)
        unlinkat(dirfd, tmp, 0);
    if (rc == 0 && fsync(dirfd) != 0) {
        saved = errno;
        rc = -1;
    }
    errno = saved;
    return rc;
}

static int write_new_key(int dirfd, const char *name)
{
    uint8_t key[FXB_CRYPTO_KEY_LEN];
    int rc = fill_random(key, sizeof key);
    if (rc == 0)
        rc = write_file_atomic(dirfd, name, key, sizeof key, false);
    int saved = errno;
    OPENSSL_cleanse(key, sizeof key);
    errno = saved;
    return rc;
}

/* Opens name in dirfd as a regular, non-symlink file and checks that none of
 * the mode bits in forbidden are set. Returns the fd, or -1 with err set. */
static int open_checked(int dirfd, const char *dir, const char *name, mode_t forbidden,
                        struct stat *st, fxb_err *err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ELOOP)
            fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INSECURE, MSG_ZH_CONFIG,
                        "key file %s/%s is a symlink; key files must be regular files", dir, name);
        else
            io_error(err, "cannot open", dir, name);
        return -1;
    }
    if (fstat(fd, st) != 0) {
        io_error(err, "cannot stat", dir, name);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INVALID, MSG_ZH_CONFIG,
                    "key file %s/%s is not a regular file", dir, name);
        close(fd);
        return -1;
    }
    if (st->st_mode & forbidden) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INSECURE, MSG_ZH_CONFIG,
                    "key file %s/%s has mode %04o; it must not be %s by group or others "
                    "(chmod 600)",
                    dir, name, (unsigned)(st->st_mode & 07777),
                    forbidden & 044 ? "readable or writable" : "writable");
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads exactly one key from name into key. */
static int read_key(int dirfd, const char *dir, const char *name, uint8_t *key, fxb_err *err)
{
    struct stat st;
    int fd = open_checked(dirfd, dir, name, 077, &st, err);
    if (fd < 0)
        return -1;
    if (st.st_size != (off_t)FXB_CRYPTO_KEY_LEN) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INVALID, MSG_ZH_CONFIG,
                    "key file %s/%s has %lld bytes; a key is exactly %u random bytes", dir, name,
                    (long long)st.st_size, FXB_CRYPTO_KEY_LEN);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < FXB_CRYPTO_KEY_LEN) {
        ssize_t n = read(fd, key + got, FXB_CRYPTO_KEY_LEN - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            io_error(err, "cannot read", dir, name);
            OPENSSL_cleanse(key, FXB_CRYPTO_KEY_LEN);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    return 0;
}

/* Reads `active` into kid; 0 when read, 1 when absent, -1 on error. */
static int read_active(int dirfd, const char *dir, char kid[FXB_CRYPTO_KID_MAX + 1], fxb_err *err)
{
    struct stat st;
    if (fstatat(dirfd, ACTIVE_FILE, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
        return 1;
    int fd = open_checked(dirfd, dir, ACTIVE_FILE, 022, &st, err);
    if (fd < 0)
        return -1;
    char buf[FXB_CRYPTO_KID_MAX + 4];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            io_error(err, "cannot read", dir, ACTIVE_FILE);
            close(fd);
            return -1;
        }
        if (n == 0 || (got += (size_t)n) == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[got] = '\0';
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r' || buf[got - 1] == ' '))
        buf[--got] = '\0';
    if (!kid_valid(buf, got)) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INVALID, MSG_ZH_CONFIG,
                    "%s/%s must hold one kid (1..%u of [a-z0-9], not \"index\")", dir, ACTIVE_FILE,
                    FXB_CRYPTO_KID_MAX);
        return -1;
    }
    memcpy(kid, buf, got + 1);
    return 0;
}

/* Makes every missing component of path with mode 0700. */
static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        buf[i] = saved;
    }
    return 0;
}

typedef struct scan {
    size_t nkeys;
    char kids[FXB_CRYPTO_KEYS_MAX][FXB_CRYPTO_KID_MAX + 1];
    bool has_index;
} scan;

/* Lists the key files of dirfd without reading them. */
static int scan_dir(int dirfd, const char *dir, scan *s, fxb_err *err)
{
    memset(s, 0, sizeof *s);
    int fd = dup(dirfd);
    if (fd < 0)
        return io_error(err, "cannot list", dir, "");
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        io_error(err, "cannot list", dir, "");
        close(fd);
        return -1;
    }
    rewinddir(d);
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        size_t slen = sizeof KEY_SUFFIX - 1;
        if (name[0] == '.' || len < slen || strcmp(name + len - slen, KEY_SUFFIX) != 0)
            continue;
        if (strcmp(name, INDEX_FILE) == 0) {
            s->has_index = true;
            continue;
        }
        if (!kid_valid(name, len - slen)) {
            rc = -1;
            fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INVALID, MSG_ZH_CONFIG,
                        "key file %s/%s: a kid is 1..%u characters of [a-z0-9]", dir, name,
                        FXB_CRYPTO_KID_MAX);
            break;
        }
        if (s->nkeys == FXB_CRYPTO_KEYS_MAX) {
            rc = -1;
            fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEYS_TOO_MANY, MSG_ZH_CONFIG,
                        "%s holds more than %u data keys; rekey and retire old keys", dir,
                        FXB_CRYPTO_KEYS_MAX);
            break;
        }
        memcpy(s->kids[s->nkeys], name, len - slen);
        s->kids[s->nkeys][len - slen] = '\0';
        s->nkeys++;
        errno = 0;
    }
    if (rc == 0 && errno != 0) {
        io_error(err, "cannot list", dir, "");
        rc = -1;
    }
    closedir(d);
    return rc;
}

static void kid_now(char kid[FXB_CRYPTO_KID_MAX + 1])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(kid, FXB_CRYPTO_KID_MAX + 1, "k%Y%m%d%H%M%S", &tm);
}

/* Picks a kid not in s: the timestamp, or the timestamp plus a letter. */
static bool kid_fresh(const scan *s, char kid[FXB_CRYPTO_KID_MAX + 1])
{
    kid_now(kid);
    size_t base = strlen(kid);
    for (int suffix = 0; suffix <= 26; suffix++) {
        if (suffix > 0) {
            kid[base] = (char)('a' + suffix - 1);
            kid[base + 1] = '\0';
        }
        bool taken = false;
        for (size_t i = 0; i < s->nkeys; i++)
            taken = taken || strcmp(s->kids[i], kid) == 0;
        if (!taken)
            return true;
    }
    return false;
}

/* Adds a data key to dirfd and points `active` at it. */
static int add_data_key(int dirfd, const char *dir, const scan *s,
                        char kid_out[FXB_CRYPTO_KID_MAX + 1], fxb_err *err)
{
    char kid[FXB_CRYPTO_KID_MAX + 1];
    char name[FXB_CRYPTO_KID_MAX + sizeof KEY_SUFFIX];
    if (s->nkeys >= FXB_CRYPTO_KEYS_MAX || !kid_fresh(s, kid)) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEYS_TOO_MANY, MSG_ZH_CONFIG,
                    "%s already holds %zu data keys (at most %u); rekey and retire old keys", dir,
                    s->nkeys, FXB_CRYPTO_KEYS_MAX);
        return -1;
    }
    snprintf(name, sizeof name, "%s%s", kid, KEY_SUFFIX);
    if (write_new_key(dirfd, name) != 0)
        return io_error(err, "cannot write", dir, name);
    char line[FXB_CRYPTO_KID_MAX + 2];
    int n = snprintf(line, sizeof line, "%s\n", kid);
    if (write_file_atomic(dirfd, ACTIVE_FILE, (const uint8_t *)line, (size_t)n, true) != 0)
        return io_error(err, "cannot write", dir, ACTIVE_FILE);
    if (kid_out != NULL)
        memcpy(kid_out, kid, sizeof kid);
    return 0;
}

/* Opens dir (creating it when asked) and checks it is not writable by
 * group/others. Returns the fd or -1 with err set. */
static int open_dir(const char *dir, bool create, fxb_err *err)
{
    if (create && mkdir_p(dir) != 0) {
        io_error(err, "cannot create key directory", dir, "");
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEYS_MISSING, MSG_ZH_CONFIG,
                        "key directory %s does not exist (run fxb-admin to create keys)", dir);
        else
            io_error(err, "cannot open key directory", dir, "");
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        io_error(err, "cannot stat key directory", dir, "");
        close(fd);
        return -1;
    }
    if (st.st_mode & 022) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INSECURE, MSG_ZH_CONFIG,
                    "key directory %s has mode %04o; it must not be writable by group or others "
                    "(chmod 700)",
                    dir, (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- load / rotate ------------------------------------------------------ */

void fxb_crypto_free(fxb_crypto *c)
{
    if (c == NULL)
        return;
    EVP_CIPHER_free(c->aes);
    EVP_MAC_free(c->hmac);
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

/* Brings a missing or partial key set to the minimum: index.key when there
 * is no data (so no index can exist yet), and one data key. */
static int initialise(int dirfd, const char *dir, scan *s, fxb_err *err)
{
    if (s->nkeys > 0)
        return 0;
    if (!s->has_index) {
        if (write_new_key(dirfd, INDEX_FILE) != 0 && errno != EEXIST)
            return io_error(err, "cannot write", dir, INDEX_FILE);
    }
    if (add_data_key(dirfd, dir, s, NULL, err) != 0)
        return -1;
    return scan_dir(dirfd, dir, s, err);
}

fxb_crypto *fxb_crypto_load(const char *dir, bool create_if_missing, fxb_err *err)
{
    if (dir == NULL || dir[0] == '\0') {
        fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_CONFIG,
                    "key directory not set");
        return NULL;
    }
    int dirfd = open_dir(dir, create_if_missing, err);
    if (dirfd < 0)
        return NULL;
    fxb_crypto *c = calloc(1, sizeof *c);
    scan s;
    if (c == NULL) {
        fxb_err_set(err, FXB_INTERNAL, FXB_CRYPTO_FAILED, MSG_ZH_INTERNAL, "out of memory");
        goto fail;
    }
    if (scan_dir(dirfd, dir, &s, err) != 0)
        goto fail;
    if (s.nkeys > 0 && !s.has_index) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEYS_MISSING, MSG_ZH_CONFIG,
                    "%s holds data keys but no %s; restore it from backup (a new index key "
                    "would orphan every stored blind index)",
                    dir, INDEX_FILE);
        goto fail;
    }
    if (create_if_missing && initialise(dirfd, dir, &s, err) != 0)
        goto fail;
    if (s.nkeys == 0 || !s.has_index) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEYS_MISSING, MSG_ZH_CONFIG,
                    "%s holds no %s (run fxb-admin to create keys)", dir,
                    s.nkeys == 0 ? "data key" : INDEX_FILE);
        goto fail;
    }
    if (read_key(dirfd, dir, INDEX_FILE, c->index_key, err) != 0)
        goto fail;
    for (size_t i = 0; i < s.nkeys; i++) {
        char name[FXB_CRYPTO_KID_MAX + sizeof KEY_SUFFIX];
        snprintf(name, sizeof name, "%s%s", s.kids[i], KEY_SUFFIX);
        memcpy(c->keys[i].kid, s.kids[i], sizeof c->keys[i].kid);
        if (read_key(dirfd, dir, name, c->keys[i].key, err) != 0)
            goto fail;
        c->nkeys++;
        if (kid_cmp(c->keys[i].kid, c->keys[c->active].kid) > 0)
            c->active = i;
    }
    char active[FXB_CRYPTO_KID_MAX + 1];
    int got = read_active(dirfd, dir, active, err);
    if (got < 0)
        goto fail;
    if (got == 0) {
        size_t i = 0;
        while (i < c->nkeys && strcmp(c->keys[i].kid, active) != 0)
            i++;
        if (i == c->nkeys) {
            fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_CRYPTO_KEY_FILE_INVALID, MSG_ZH_CONFIG,
                        "%s/%s names kid \"%s\" but %s/%s.key does not exist", dir, ACTIVE_FILE,
                        active, dir, active);
            goto fail;
        }
        c->active = i;
    }
    c->aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    c->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (c->aes == NULL || c->hmac == NULL) {
        fxb_err_set(err, FXB_INTERNAL, FXB_CRYPTO_FAILED, MSG_ZH_INTERNAL,
                    "OpenSSL lacks AES-256-GCM or HMAC");
        goto fail;
    }
    close(dirfd);
    return c;
fail:
    close(dirfd);
    fxb_crypto_free(c);
    return NULL;
}

fxb_code fxb_crypto_generate_key(const char *dir, char *kid_out, fxb_err *err)
{
    fxb_err local;
    fxb_err *e = err != NULL ? err : &local;
    /* Load first: never add a key to a set the server would refuse. */
    fxb_crypto *c = fxb_crypto_load(dir, false, e);
    if (c == NULL)
        return e->code;
    fxb_crypto_free(c);
    int dirfd = open_dir(dir, false, e);
    if (dirfd < 0)
        return e->code;
    scan s;
    int rc = scan_dir(dirfd, dir, &s, e);
    if (rc == 0)
        rc = add_data_key(dirfd, dir, &s, kid_out, e);
    close(dirfd);
    return rc == 0 ? FXB_OK : e->code;
}

const char *fxb_crypto_active_kid(const fxb_crypto *c)
{
    return c->keys[c->active].kid;
}

/* ---- base64url (RFC 4648 §5, no padding, canonical only) ---------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = B64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
    }
    return o;
}

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

/* Decodes len characters into out (capacity cap). Refuses any character
 * outside the alphabet, impossible lengths and non-zero spare bits, so each
 * byte string has exactly one accepted spelling. Returns bytes or -1. */
static long b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1))
        return -1;
    return (long)o;
}

/* ---- seal / open -------------------------------------------------------- */

static size_t build_aad(char *aad, const char *label, const char *owner)
{
    int n = snprintf(aad, AAD_MAX, "%s%s|%s", AAD_PREFIX, label, owner);
    return (size_t)n;
}

static fxb_code bad_names(fxb_err *err, const char *label, const char *owner)
{
    if (!label_valid(label))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "field label must be 1..%u of [a-z0-9_.-]", FXB_CRYPTO_LABEL_MAX);
    if (!owner_valid(owner))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "owner id must be 1..%u of [A-Za-z0-9_:.-]", FXB_CRYPTO_OWNER_MAX);
    return FXB_OK;
}

static fxb_code openssl_failed(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, FXB_CRYPTO_FAILED, MSG_ZH_INTERNAL, "OpenSSL %s failed",
                       what);
}

fxb_code fxb_crypto_seal(const fxb_crypto *c, const char *field_label, const char *owner_id,
                         const uint8_t *pt, size_t len, fxb_arena *a, char **out_sealed,
                         fxb_err *err)
{
    if (out_sealed != NULL)
        *out_sealed = NULL;
    if (c == NULL || a == NULL || out_sealed == NULL || (pt == NULL && len > 0))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "fxb_crypto_seal: missing argument");
    fxb_code code = bad_names(err, field_label, owner_id);
    if (code != FXB_OK)
        return code;
    if (len > FXB_CRYPTO_PLAINTEXT_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "plaintext of %zu bytes exceeds %u", len, FXB_CRYPTO_PLAINTEXT_MAX);

    const data_key *k = &c->keys[c->active];
    char aad[AAD_MAX];
    size_t aad_len = build_aad(aad, field_label, owner_id);
    uint8_t body[BODY_MAX];
    uint8_t *nonce = body, *ct = body + FXB_CRYPTO_NONCE_LEN, *tag = ct + len;
    if (RAND_bytes(nonce, FXB_CRYPTO_NONCE_LEN) != 1)
        return openssl_failed(err, "RAND_bytes");

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    bool ok = ctx != NULL && EVP_EncryptInit_ex2(ctx, c->aes, k->key, nonce, NULL) == 1 &&
              EVP_EncryptUpdate(ctx, NULL, &outl, (const uint8_t *)aad, (int)aad_len) == 1;
    if (ok && len > 0)
        ok = EVP_EncryptUpdate(ctx, ct, &outl, pt, (int)len) == 1 && (size_t)outl == len;
    ok = ok && EVP_EncryptFinal_ex(ctx, ct + len, &outl) == 1 && outl == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, FXB_CRYPTO_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return openssl_failed(err, "AES-256-GCM encryption");

    size_t body_len = FXB_CRYPTO_NONCE_LEN + len + FXB_CRYPTO_TAG_LEN;
    size_t kid_len = strlen(k->kid);
    size_t total = sizeof SEALED_PREFIX - 1 + kid_len + 1 + FXB_CRYPTO_B64_LEN(body_len);
    char *s = fxb_arena_alloc(a, total + 1);
    if (s == NULL)
        return fxb_err_set(err, FXB_INTERNAL, FXB_CRYPTO_FAILED, MSG_ZH_INTERNAL,
                           "arena full while sealing");
    size_t o = 0;
    memcpy(s, SEALED_PREFIX, sizeof SEALED_PREFIX - 1);
    o += sizeof SEALED_PREFIX - 1;
    memcpy(s + o, k->kid, kid_len);
    o += kid_len;
    s[o++] = '.';
    o += b64_encode(body, body_len, s + o);
    s[o] = '\0';
    *out_sealed = s;
    return FXB_OK;
}

/* Splits "v1.<kid>.<b64>": kid into kid_out, *b64 at the body. */
static bool parse_sealed(const char *sealed, char kid_out[FXB_CRYPTO_KID_MAX + 1], const char **b64,
                         size_t *b64_len)
{
    size_t len = strnlen(sealed, FXB_CRYPTO_SEALED_MAX + 1);
    size_t plen = sizeof SEALED_PREFIX - 1;
    if (len > FXB_CRYPTO_SEALED_MAX || len < plen || memcmp(sealed, SEALED_PREFIX, plen) != 0)
        return false;
    const char *kid = sealed + plen;
    const char *dot = memchr(kid, '.', len - plen);
    if (dot == NULL || !kid_valid(kid, (size_t)(dot - kid)))
        return false;
    memcpy(kid_out, kid, (size_t)(dot - kid));
    kid_out[dot - kid] = '\0';
    *b64 = dot + 1;
    *b64_len = len - (size_t)(*b64 - sealed);
    return true;
}

static fxb_code malformed(fxb_err *err, const char *why)
{
    return fxb_err_set(err, FXB_DATA_LOSS, FXB_CRYPTO_SEALED_MALFORMED, MSG_ZH_DATA,
                       "sealed value is malformed: %s", why);
}

fxb_code fxb_crypto_open(const fxb_crypto *c, const char *field_label, const char *owner_id,
                         const char *sealed, fxb_arena *a, uint8_t **out_pt, size_t *out_len,
                         fxb_err *err)
{
    if (out_pt != NULL)
        *out_pt = NULL;
    if (out_len != NULL)
        *out_len = 0;
    if (c == NULL || a == NULL || out_pt == NULL || out_len == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "fxb_crypto_open: missing argument");
    fxb_code code = bad_names(err, field_label, owner_id);
    if (code != FXB_OK)
        return code;
    if (sealed == NULL)
        return malformed(err, "NULL");

    char kid[FXB_CRYPTO_KID_MAX + 1];
    const char *b64;
    size_t b64_len;
    if (!parse_sealed(sealed, kid, &b64, &b64_len))
        return malformed(err, "not v1.<kid>.<base64url>");
    uint8_t body[BODY_MAX];
    long body_len = b64_decode(b64, b64_len, body, sizeof body);
    if (body_len < 0)
        return malformed(err, "body is not canonical base64url or too long");
    if ((size_t)body_len < FXB_CRYPTO_NONCE_LEN + FXB_CRYPTO_TAG_LEN)
        return malformed(err, "body shorter than nonce and tag");
    const data_key *k = NULL;
    for (size_t i = 0; i < c->nkeys && k == NULL; i++)
        if (strcmp(c->keys[i].kid, kid) == 0)
            k = &c->keys[i];
    if (k == NULL)
        return fxb_err_set(err, FXB_DATA_LOSS, FXB_CRYPTO_KEY_UNKNOWN, MSG_ZH_DATA,
                           "sealed with kid \"%s\", which is not loaded", kid);

    size_t len = (size_t)body_len - FXB_CRYPTO_NONCE_LEN - FXB_CRYPTO_TAG_LEN;
    const uint8_t *nonce = body, *ct = body + FXB_CRYPTO_NONCE_LEN;
    uint8_t *tag = body + FXB_CRYPTO_NONCE_LEN + len;
    uint8_t *pt = fxb_arena_alloc(a, len + 1);
    if (pt == NULL)
        return fxb_err_set(err, FXB_INTERNAL, FXB_CRYPTO_FAILED, MSG_ZH_INTERNAL,
                           "arena full while opening");
    char aad[AAD_MAX];
    size_t aad_len = build_aad(aad, field_label, owner_id);

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    bool ok = ctx != NULL && EVP_DecryptInit_ex2(ctx, c->aes, k->key, nonce, NULL) == 1 &&
              EVP_DecryptUpdate(ctx, NULL, &outl, (const uint8_t *)aad, (int)aad_len) == 1;
    if (ok && len > 0)
        ok = EVP_DecryptUpdate(ctx, pt, &outl, ct, (int)len) == 1 && (size_t)outl == len;
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, FXB_CRYPTO_TAG_LEN, tag) == 1;
    bool setup = ok;
    ok = ok && EVP_DecryptFinal_ex(ctx, pt + len, &outl) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        OPENSSL_cleanse(pt, len + 1);
        if (!setup)
            return openssl_failed(err, "AES-256-GCM decryption");
        return fxb_err_set(err, FXB_DATA_LOSS, FXB_CRYPTO_DECRYPT_FAILED, MSG_ZH_DATA,
                           "authentication failed for kid \"%s\" (tampered, or another field, "
                           "owner or key)",
                           kid);
    }
    pt[len] = '\0';
    *out_pt = pt;
    *out_len = len;
    return FXB_OK;
}

bool fxb_crypto_needs_rekey(const fxb_crypto *c, const char *sealed)
{
    char kid[FXB_CRYPTO_KID_MAX + 1];
    const char *b64;
    size_t b64_len;
    if (c == NULL || sealed == NULL || !parse_sealed(sealed, kid, &b64, &b64_len))
        return false;
    return strcmp(kid, c->keys[c->active].kid) != 0;
}

/* ---- blind index -------------------------------------------------------- */

fxb_code fxb_crypto_index(const fxb_crypto *c, const char *label, const char *value,
                          char out_hex[FXB_CRYPTO_INDEX_HEX_LEN + 1], fxb_err *err)
{
    if (out_hex == NULL || c == NULL || value == NULL) {
        if (out_hex != NULL)
            out_hex[0] = '\0';
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "fxb_crypto_index: missing argument");
    }
    out_hex[0] = '\0';
    if (!label_valid(label))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "index label must be 1..%u of [a-z0-9_.-]", FXB_CRYPTO_LABEL_MAX);
    size_t vlen = strnlen(value, FXB_CRYPTO_PLAINTEXT_MAX + 1);
    if (vlen > FXB_CRYPTO_PLAINTEXT_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_CRYPTO_BAD_ARGUMENT, MSG_ZH_ARG,
                           "indexed value exceeds %u bytes", FXB_CRYPTO_PLAINTEXT_MAX);

    uint8_t mac[32];
    size_t mac_len = 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    static const uint8_t sep = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(c->hmac);
    bool ok = ctx != NULL && EVP_MAC_init(ctx, c->index_key, sizeof c->index_key, params) == 1 &&
              EVP_MAC_update(ctx, (const uint8_t *)label, strlen(label)) == 1 &&
              EVP_MAC_update(ctx, &sep, 1) == 1 &&
              EVP_MAC_update(ctx, (const uint8_t *)value, vlen) == 1 &&
              EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) == 1 && mac_len == sizeof mac;
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return openssl_failed(err, "HMAC-SHA256");
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < FXB_CRYPTO_INDEX_HEX_LEN / 2; i++) {
        out_hex[2 * i] = hex[mac[i] >> 4];
        out_hex[2 * i + 1] = hex[mac[i] & 15];
    }
    out_hex[FXB_CRYPTO_INDEX_HEX_LEN] = '\0';
    return FXB_OK;
}

/* ---- masks -------------------------------------------------------------- */

bool fxb_mask_id_number(const char *id18, char out[19])
{
    if (out == NULL)
        return false;
    bool ok = id18 != NULL && strnlen(id18, 19) == 18;
    for (size_t i = 0; ok && i < 17; i++)
        ok = id18[i] >= '0' && id18[i] <= '9';
    ok = ok && ((id18[17] >= '0' && id18[17] <= '9') || id18[17] == 'X' || id18[17] == 'x');
    if (!ok) {
        memcpy(out, "*", 2);
        return false;
    }
    memcpy(out, id18, 6);
    memset(out + 6, '*', 8);
    memcpy(out + 14, id18 + 14, 4);
    if (out[17] == 'x')
        out[17] = 'X';
    out[18] = '\0';
    return true;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 table), or 0. */
static size_t utf8_seq_len(const unsigned char *s)
{
    unsigned char b = s[0];
    if (b < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        n = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0; /* overlong */
        else if (b == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0)
            lo = 0x90; /* overlong */
        else if (b == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

static bool mask_fail(char *out, size_t cap)
{
    if (cap >= 2)
        memcpy(out, "*", 2);
    else if (cap == 1)
        out[0] = '\0';
    return false;
}

bool fxb_mask_name(const char *utf8_name, char *out, size_t cap)
{
    if (out == NULL || utf8_name == NULL)
        return mask_fail(out, out == NULL ? 0 : cap);
    const unsigned char *s = (const unsigned char *)utf8_name;
    size_t first = 0, chars = 0;
    for (size_t i = 0; s[i] != '\0';) {
        size_t n = utf8_seq_len(s + i);
        if (n == 0)
            return mask_fail(out, cap);
        if (chars == 0)
            first = n;
        chars++;
        i += n;
    }
    if (chars <= 1) {
        const char *r = chars == 0 ? "" : "*";
        if (cap < strlen(r) + 1)
            return mask_fail(out, cap);
        memcpy(out, r, strlen(r) + 1);
        return true;
    }
    if (cap < first + (chars - 1) + 1)
        return mask_fail(out, cap);
    memcpy(out, utf8_name, first);
    memset(out + first, '*', chars - 1);
    out[first + chars - 1] = '\0';
    return true;
}
