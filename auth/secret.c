/* Loading and creating the server secret, and the keyed hash built on it.
 * The file rules mirror ssh's for private keys: refuse rather than use a
 * secret that others could have read or replaced. */
#include "auth/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define ZH_SECRET "服务配置错误"

static fxb_code fail(fxb_err *err, uint8_t *out, fxb_code code, const char *reason,
                     const char *what, const char *path, int errnum)
{
    explicit_bzero(out, FXB_SECRET_LEN);
    if (errnum != 0)
        return fxb_err_set(err, code, reason, ZH_SECRET, "server secret %s: %s (%s)", path, what,
                           strerror(errnum));
    return fxb_err_set(err, code, reason, ZH_SECRET, "server secret %s: %s", path, what);
}

/* Reads the file at path; ENOENT is reported through *missing. */
static fxb_code read_secret(const char *path, uint8_t out[FXB_SECRET_LEN], bool *missing,
                            fxb_err *err)
{
    *missing = false;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) {
            *missing = true;
            return fail(err, out, FXB_FAILED_PRECONDITION, FXB_SECRET_MISSING,
                        "does not exist (create it with create=true)", path, 0);
        }
        if (errno == ELOOP)
            return fail(err, out, FXB_FAILED_PRECONDITION, FXB_SECRET_INSECURE,
                        "is a symbolic link", path, 0);
        return fail(err, out, FXB_INTERNAL, FXB_SECRET_IO, "cannot open", path, errno);
    }
    struct stat st;
    fxb_code rc = FXB_OK;
    if (fstat(fd, &st) != 0)
        rc = fail(err, out, FXB_INTERNAL, FXB_SECRET_IO, "cannot stat", path, errno);
    else if (!S_ISREG(st.st_mode))
        rc = fail(err, out, FXB_FAILED_PRECONDITION, FXB_SECRET_INVALID, "is not a regular file",
                  path, 0);
    else if ((st.st_mode & 077) != 0)
        rc = fail(err, out, FXB_FAILED_PRECONDITION, FXB_SECRET_INSECURE,
                  "is accessible by group or others (chmod 600)", path, 0);
    else if (st.st_uid != geteuid())
        rc = fail(err, out, FXB_FAILED_PRECONDITION, FXB_SECRET_INSECURE,
                  "is owned by another user", path, 0);
    else if (st.st_size != FXB_SECRET_LEN)
        rc = fail(err, out, FXB_FAILED_PRECONDITION, FXB_SECRET_INVALID, "must be exactly 32 bytes",
                  path, 0);
    if (rc != FXB_OK) {
        close(fd);
        return rc;
    }
    size_t got = 0;
    while (got < FXB_SECRET_LEN) {
        ssize_t n = read(fd, out + got, FXB_SECRET_LEN - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            close(fd);
            return fail(err, out, FXB_INTERNAL, FXB_SECRET_IO, "short read", path, e);
        }
        got += (size_t)n;
    }
    close(fd);
    return FXB_OK;
}

static bool write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool fill_random(uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Writes a fresh secret to tmp, then links it to path. EEXIST from link
 * means another process won the race: its file is the secret. */
static fxb_code create_secret(const char *data_dir, const char *dir, const char *path, fxb_err *err)
{
    uint8_t buf[FXB_SECRET_LEN];
    char tmp[PATH_MAX];
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        return fail(err, buf, FXB_INTERNAL, FXB_SECRET_IO, "cannot create directory", data_dir,
                    errno);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return fail(err, buf, FXB_INTERNAL, FXB_SECRET_IO, "cannot create directory", dir, errno);
    if (snprintf(tmp, sizeof tmp, "%s/.server-secret.%ld", dir, (long)getpid()) >= (int)sizeof tmp)
        return fail(err, buf, FXB_INTERNAL, FXB_SECRET_IO, "path too long", dir, 0);
    unlink(tmp); /* a leftover of a crashed start of this same pid number */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, buf, FXB_INTERNAL, FXB_SECRET_IO, "cannot create", tmp, errno);
    bool ok = fill_random(buf, sizeof buf);
    int e = ok ? 0 : errno;
    if (ok && (!write_all(fd, buf, sizeof buf) || fsync(fd) != 0)) {
        ok = false;
        e = errno;
    }
    explicit_bzero(buf, sizeof buf);
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && link(tmp, path) != 0 && errno != EEXIST) {
        ok = false;
        e = errno;
    }
    unlink(tmp);
    if (!ok)
        return fail(err, buf, FXB_INTERNAL, FXB_SECRET_IO, "cannot write", path, e);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* make the new name durable; best effort */
        close(dfd);
    }
    return FXB_OK;
}

fxb_code fxb_secret_load_or_create(const char *data_dir, uint8_t out[FXB_SECRET_LEN], bool create,
                                   fxb_err *err)
{
    if (out == NULL)
        return fxb_err_set(err, FXB_INTERNAL, FXB_SECRET_IO, ZH_SECRET, "no output buffer");
    explicit_bzero(out, FXB_SECRET_LEN);
    if (data_dir == NULL || data_dir[0] == '\0')
        return fail(err, out, FXB_FAILED_PRECONDITION, FXB_SECRET_MISSING, "no data directory",
                    "(none)", 0);
    char dir[PATH_MAX];
    char path[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/keys", data_dir) >= (int)sizeof dir ||
        snprintf(path, sizeof path, "%s/%s", data_dir, FXB_SECRET_FILE) >= (int)sizeof path)
        return fail(err, out, FXB_INTERNAL, FXB_SECRET_IO, "path too long", "(data dir)", 0);
    bool missing;
    fxb_code rc = read_secret(path, out, &missing, err);
    if (rc == FXB_OK || !missing || !create)
        return rc;
    rc = create_secret(data_dir, dir, path, err);
    if (rc != FXB_OK)
        return rc;
    return read_secret(path, out, &missing, err);
}

bool fxb_hmac_hex(const uint8_t key[FXB_SECRET_LEN], const char *label, const void *data,
                  size_t len, char out[FXB_HMAC_HEX_LEN + 1])
{
    if (out == NULL)
        return false;
    out[0] = '\0';
    if (key == NULL || label == NULL || (data == NULL && len > 0))
        return false;
    size_t label_len = strnlen(label, FXB_HMAC_LABEL_MAX + 1);
    if (label_len == 0 || label_len > FXB_HMAC_LABEL_MAX)
        return false;

    bool ok = false;
    unsigned char mac[32];
    size_t mac_len = 0;
    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = alg != NULL ? EVP_MAC_CTX_new(alg) : NULL;
    if (ctx != NULL) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end(),
        };
        static const unsigned char sep = 0;
        /* The label's own NUL would do as separator, but an explicit byte
         * keeps the construction readable: label || 0x00 || data. */
        ok = EVP_MAC_init(ctx, key, FXB_SECRET_LEN, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)label, label_len) == 1 &&
             EVP_MAC_update(ctx, &sep, 1) == 1 &&
             (len == 0 || EVP_MAC_update(ctx, data, len) == 1) &&
             EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) == 1 && mac_len == sizeof mac;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(alg);
    if (!ok)
        return false;
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof mac; i++) {
        out[2 * i] = digits[mac[i] >> 4];
        out[2 * i + 1] = digits[mac[i] & 15];
    }
    out[FXB_HMAC_HEX_LEN] = '\0';
    explicit_bzero(mac, sizeof mac);
    return true;
}
