/* The ES256 keyring. Each key file is parsed once with OpenSSL; the keyring
 * keeps the parsed EVP_PKEY (for the fast verify path and for signing) and
 * normalized PEM texts (for libjwt, which wants PEM strings). Private key
 * text lives only in buffers that are wiped before they are freed. */
#include "auth/keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#define KEY_SUFFIX  ".pem"
#define ACTIVE_FILE "active"
/* `active` holds a kid and a newline; anything longer is not ours. */
#define ACTIVE_FILE_MAX 128

struct fxb_key {
    char kid[FXB_KEY_KID_MAX + 1];
    char *private_pem; /* PKCS#8, NUL-terminated, wiped on free */
    size_t private_pem_len;
    char *public_pem; /* SubjectPublicKeyInfo, NUL-terminated */
    size_t public_pem_len;
    EVP_PKEY *pkey;
};

struct fxb_keyring {
    size_t count;
    size_t active;
    fxb_key keys[FXB_KEYRING_MAX_KEYS];
};

static const char KEYRING_ZH[] = "服务器签名密钥配置错误";

/* One place builds key errors; callers pass paths and kids, never key text.
 * OpenSSL's error queue is cleared so that it does not leak into later
 * unrelated calls on this thread. */
#define keyring_fail(err, code, ...)                                                               \
    (ERR_clear_error(), fxb_err_set((err), (code), "KEYRING_INVALID", KEYRING_ZH, __VA_ARGS__))

bool fxb_key_kid_valid(const char *kid)
{
    if (kid == NULL || kid[0] == '\0')
        return false;
    size_t n = 0;
    for (const char *p = kid; *p != '\0'; p++, n++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        if (!ok || n >= FXB_KEY_KID_MAX)
            return false;
    }
    return true;
}

fxb_code fxb_keyring_path(const char *data_dir, char *out, size_t cap, fxb_err *err)
{
    if (data_dir == NULL || data_dir[0] == '\0' || out == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "KEYRING_INVALID", KEYRING_ZH,
                           "data directory is empty");
    int n = snprintf(out, cap, "%s/%s", data_dir, FXB_KEYRING_SUBDIR);
    if (n < 0 || (size_t)n >= cap)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "KEYRING_INVALID", KEYRING_ZH,
                           "data directory path is too long");
    return FXB_OK;
}

/* Refuses to prompt on the terminal for an encrypted key. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Copies a memory BIO's contents into a new NUL-terminated string. */
static char *bio_to_string(BIO *bio, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || data == NULL)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *len = (size_t)n;
    return s;
}

static void key_clear(fxb_key *k)
{
    if (k->private_pem != NULL) {
        OPENSSL_cleanse(k->private_pem, k->private_pem_len);
        free(k->private_pem);
    }
    free(k->public_pem);
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

static bool is_p256(EVP_PKEY *pkey)
{
    char group[64];
    size_t glen = 0;
    if (!EVP_PKEY_is_a(pkey, "EC"))
        return false;
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        &glen))
        return false;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

/* Full private/public consistency check: a SEC1 file may carry a public
 * point that does not belong to its private scalar. */
static bool key_consistent(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx == NULL)
        return false;
    int ok = EVP_PKEY_check(ctx);
    EVP_PKEY_CTX_free(ctx);
    return ok == 1;
}

/* Reads a whole small regular file into buf (cap bytes). Returns the length,
 * -1 on I/O error (errno set), -2 when not a regular file, -3 when larger
 * than cap - 1. */
static ssize_t read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return -2;
    }
    if (st.st_size < 0 || (size_t)st.st_size >= cap) {
        close(fd);
        return -3;
    }
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    /* The file grew while reading: refuse rather than parse a prefix. */
    char extra;
    ssize_t more = read(fd, &extra, 1);
    close(fd);
    if (more > 0)
        return -3;
    buf[got] = '\0';
    return (ssize_t)got;
}

static fxb_code key_load(const char *dir, const char *kid, fxb_key *k, fxb_err *err)
{
    char path[FXB_KEYRING_PATH_MAX];
    int pn = snprintf(path, sizeof(path), "%s/%s%s", dir, kid, KEY_SUFFIX);
    if (pn < 0 || (size_t)pn >= sizeof(path))
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "key file path too long in %s", dir);

    char *buf = malloc(FXB_KEY_FILE_MAX + 1);
    if (buf == NULL)
        return keyring_fail(err, FXB_INTERNAL, "out of memory loading %s", path);
    ssize_t n = read_small_file(path, buf, FXB_KEY_FILE_MAX + 1);
    if (n < 0) {
        const char *why = n == -2   ? "not a regular file"
                          : n == -3 ? "larger than 16 KiB"
                                    : strerror(errno);
        OPENSSL_cleanse(buf, FXB_KEY_FILE_MAX + 1);
        free(buf);
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "key file %s: %s", path, why);
    }

    BIO *in = BIO_new_mem_buf(buf, (int)n);
    EVP_PKEY *pkey = in ? PEM_read_bio_PrivateKey(in, NULL, no_passphrase, NULL) : NULL;
    BIO_free(in);
    OPENSSL_cleanse(buf, FXB_KEY_FILE_MAX + 1);
    free(buf);
    if (pkey == NULL)
        return keyring_fail(err, FXB_FAILED_PRECONDITION,
                            "key file %s: not an unencrypted PEM private key", path);
    if (!is_p256(pkey)) {
        EVP_PKEY_free(pkey);
        return keyring_fail(err, FXB_FAILED_PRECONDITION,
                            "key file %s: not an EC P-256 key (ES256 needs P-256)", path);
    }
    if (!key_consistent(pkey)) {
        EVP_PKEY_free(pkey);
        return keyring_fail(err, FXB_FAILED_PRECONDITION,
                            "key file %s: public and private parts do not match", path);
    }

    memset(k, 0, sizeof(*k));
    size_t kid_len = strnlen(kid, FXB_KEY_KID_MAX); /* validated by the caller */
    memcpy(k->kid, kid, kid_len);
    k->kid[kid_len] = '\0';
    k->pkey = pkey;

    BIO *priv = BIO_new(BIO_s_secmem());
    BIO *pub = BIO_new(BIO_s_mem());
    int ok = priv != NULL && pub != NULL &&
             PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0, NULL, NULL) == 1 &&
             PEM_write_bio_PUBKEY(pub, pkey) == 1;
    if (ok) {
        k->private_pem = bio_to_string(priv, &k->private_pem_len);
        k->public_pem = bio_to_string(pub, &k->public_pem_len);
        ok = k->private_pem != NULL && k->public_pem != NULL;
    }
    BIO_free(priv);
    BIO_free(pub);
    if (!ok) {
        key_clear(k);
        return keyring_fail(err, FXB_INTERNAL, "key file %s: cannot re-encode the key", path);
    }
    return FXB_OK;
}

static int cmp_kid(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Reads `active`: FXB_OK with kid filled, FXB_NOT_FOUND when absent. */
static fxb_code read_active(const char *dir, char kid[FXB_KEY_KID_MAX + 1], fxb_err *err)
{
    char path[FXB_KEYRING_PATH_MAX];
    int pn = snprintf(path, sizeof(path), "%s/%s", dir, ACTIVE_FILE);
    if (pn < 0 || (size_t)pn >= sizeof(path))
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "path too long in %s", dir);
    char buf[ACTIVE_FILE_MAX + 1];
    ssize_t n = read_small_file(path, buf, sizeof(buf));
    if (n == -1 && errno == ENOENT)
        return FXB_NOT_FOUND;
    if (n < 0)
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "%s: %s", path,
                            n == -2   ? "not a regular file"
                            : n == -3 ? "too long"
                                      : strerror(errno));
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    if (strlen(buf) != (size_t)n || !fxb_key_kid_valid(buf))
        return keyring_fail(err, FXB_FAILED_PRECONDITION,
                            "%s: must hold one kid of 1..32 characters [A-Za-z0-9_-]", path);
    memcpy(kid, buf, (size_t)n + 1);
    return FXB_OK;
}

/* Lists the <kid>.pem files of dir, sorted, into kids. FXB_NOT_FOUND
 * (reason KEYRING_EMPTY) when dir is missing or holds no key file; other
 * failures name the directory or the file. */
static fxb_code scan_dir(const char *dir, char kids[FXB_KEYRING_MAX_KEYS][FXB_KEY_KID_MAX + 1],
                         size_t *count_out, fxb_err *err)
{
    *count_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL && errno == ENOENT) {
        ERR_clear_error();
        return fxb_err_set(err, FXB_NOT_FOUND, "KEYRING_EMPTY", KEYRING_ZH,
                           "key directory %s does not exist (create a key with: fxb-admin keys "
                           "generate)",
                           dir);
    }
    if (d == NULL)
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "cannot open key directory %s: %s", dir,
                            strerror(errno));

    size_t count = 0;
    const size_t suffix_len = strlen(KEY_SUFFIX);
    fxb_code rc = FXB_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0)
                rc = keyring_fail(err, FXB_FAILED_PRECONDITION, "cannot read %s: %s", dir,
                                  strerror(errno));
            break;
        }
        const char *name = e->d_name;
        size_t len = strlen(name);
        /* Dot files include our own temp files from an interrupted generate. */
        if (name[0] == '.' || strcmp(name, ACTIVE_FILE) == 0)
            continue;
        if (len <= suffix_len || strcmp(name + len - suffix_len, KEY_SUFFIX) != 0)
            continue;
        char kid[FXB_KEY_KID_MAX + 1];
        size_t klen = len - suffix_len;
        if (klen > FXB_KEY_KID_MAX) {
            rc = keyring_fail(err, FXB_FAILED_PRECONDITION,
                              "key file %s/%s: kid longer than 32 characters", dir, name);
            break;
        }
        memcpy(kid, name, klen);
        kid[klen] = '\0';
        if (!fxb_key_kid_valid(kid)) {
            rc = keyring_fail(err, FXB_FAILED_PRECONDITION,
                              "key file %s/%s: kid must be characters [A-Za-z0-9_-]", dir, name);
            break;
        }
        if (count == FXB_KEYRING_MAX_KEYS) {
            rc = keyring_fail(err, FXB_FAILED_PRECONDITION,
                              "key directory %s holds more than 16 keys (at %s); remove retired "
                              "keys",
                              dir, name);
            break;
        }
        memcpy(kids[count++], kid, klen + 1);
    }
    closedir(d);
    if (rc != FXB_OK)
        return rc;
    if (count == 0) {
        ERR_clear_error();
        return fxb_err_set(err, FXB_NOT_FOUND, "KEYRING_EMPTY", KEYRING_ZH,
                           "key directory %s holds no <kid>.pem key (create one with: fxb-admin "
                           "keys generate)",
                           dir);
    }
    qsort(kids, count, sizeof(kids[0]), cmp_kid);
    *count_out = count;
    return FXB_OK;
}

fxb_keyring *fxb_keyring_load(const char *dir, fxb_err *err)
{
    if (dir == NULL || dir[0] == '\0') {
        keyring_fail(err, FXB_INVALID_ARGUMENT, "key directory is empty");
        return NULL;
    }
    if (strlen(dir) > FXB_KEYRING_PATH_MAX - FXB_KEY_KID_MAX - 16) {
        keyring_fail(err, FXB_INVALID_ARGUMENT, "key directory path too long");
        return NULL;
    }
    char kids[FXB_KEYRING_MAX_KEYS][FXB_KEY_KID_MAX + 1];
    size_t count = 0;
    fxb_code rc = scan_dir(dir, kids, &count, err);
    if (rc != FXB_OK)
        return NULL;

    fxb_keyring *ring = calloc(1, sizeof(*ring));
    if (ring == NULL) {
        keyring_fail(err, FXB_INTERNAL, "out of memory loading %s", dir);
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        if (key_load(dir, kids[i], &ring->keys[i], err) != FXB_OK) {
            fxb_keyring_free(ring);
            return NULL;
        }
        ring->count = i + 1;
    }

    char active[FXB_KEY_KID_MAX + 1];
    rc = read_active(dir, active, err);
    if (rc == FXB_NOT_FOUND) {
        ring->active = count - 1;
    } else if (rc != FXB_OK) {
        fxb_keyring_free(ring);
        return NULL;
    } else {
        const fxb_key *k = fxb_keyring_find(ring, active);
        if (k == NULL) {
            keyring_fail(err, FXB_FAILED_PRECONDITION,
                         "%s/active names kid %s, which has no key file", dir, active);
            fxb_keyring_free(ring);
            return NULL;
        }
        ring->active = (size_t)(k - ring->keys);
    }
    return ring;
}

void fxb_keyring_free(fxb_keyring *ring)
{
    if (ring == NULL)
        return;
    for (size_t i = 0; i < ring->count; i++)
        key_clear(&ring->keys[i]);
    free(ring);
}

size_t fxb_keyring_count(const fxb_keyring *ring)
{
    return ring->count;
}

const fxb_key *fxb_keyring_at(const fxb_keyring *ring, size_t i)
{
    return i < ring->count ? &ring->keys[i] : NULL;
}

const fxb_key *fxb_keyring_active(const fxb_keyring *ring)
{
    return &ring->keys[ring->active];
}

const fxb_key *fxb_keyring_find(const fxb_keyring *ring, const char *kid)
{
    if (ring == NULL || kid == NULL)
        return NULL;
    for (size_t i = 0; i < ring->count; i++) {
        if (strcmp(ring->keys[i].kid, kid) == 0)
            return &ring->keys[i];
    }
    return NULL;
}

const char *fxb_key_kid(const fxb_key *key)
{
    return key->kid;
}

const char *fxb_key_public_pem(const fxb_key *key, size_t *len)
{
    if (len != NULL)
        *len = key->public_pem_len;
    return key->public_pem;
}

const char *fxb_key_private_pem(const fxb_key *key, size_t *len)
{
    if (len != NULL)
        *len = key->private_pem_len;
    return key->private_pem;
}

EVP_PKEY *fxb_key_pkey(const fxb_key *key)
{
    return key->pkey;
}

/* --- generation ----------------------------------------------------------- */

/* mkdir -p with mode 0700 for every directory it creates. */
static fxb_code mkdir_private(const char *dir, fxb_err *err)
{
    char path[FXB_KEYRING_PATH_MAX];
    int pn = snprintf(path, sizeof(path), "%s", dir);
    if (pn < 0 || (size_t)pn >= sizeof(path))
        return keyring_fail(err, FXB_INVALID_ARGUMENT, "key directory path too long");
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return keyring_fail(err, FXB_FAILED_PRECONDITION, "cannot create %s: %s", path,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "cannot create %s: %s", path,
                            strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "%s is not a directory", path);
    return FXB_OK;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes dir/name atomically: a 0600 temp file in the same directory,
 * fsync, rename over name, fsync of the directory. A crash leaves either
 * the old file or the new one, never a partial key. */
static fxb_code write_atomic(const char *dir, const char *name, const char *data, size_t len,
                             fxb_err *err)
{
    char final[FXB_KEYRING_PATH_MAX];
    char tmp[FXB_KEYRING_PATH_MAX];
    int n1 = snprintf(final, sizeof(final), "%s/%s", dir, name);
    int n2 = snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(final) || (size_t)n2 >= sizeof(tmp))
        return keyring_fail(err, FXB_INVALID_ARGUMENT, "path too long in %s", dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "cannot create a file in %s: %s", dir,
                            strerror(errno));
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "cannot write %s: %s", final,
                            strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        return keyring_fail(err, FXB_FAILED_PRECONDITION, "cannot write %s: %s", final,
                            strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return FXB_OK;
}

fxb_code fxb_keyring_generate(const char *dir, char *kid_out, fxb_err *err)
{
    if (dir == NULL || dir[0] == '\0')
        return keyring_fail(err, FXB_INVALID_ARGUMENT, "key directory is empty");
    if (strlen(dir) > FXB_KEYRING_PATH_MAX - FXB_KEY_KID_MAX - 16)
        return keyring_fail(err, FXB_INVALID_ARGUMENT, "key directory path too long");
    fxb_code rc = mkdir_private(dir, err);
    if (rc != FXB_OK)
        return rc;
    /* A 17th key would stop every server at its next start: refuse now. */
    char kids[FXB_KEYRING_MAX_KEYS][FXB_KEY_KID_MAX + 1];
    size_t count = 0;
    rc = scan_dir(dir, kids, &count, err);
    if (rc != FXB_OK && rc != FXB_NOT_FOUND)
        return rc;
    if (count >= FXB_KEYRING_MAX_KEYS)
        return keyring_fail(err, FXB_FAILED_PRECONDITION,
                            "key directory %s already holds 16 keys; remove retired keys (older "
                            "than the access-token lifetime) first",
                            dir);

    unsigned char rnd[4];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return keyring_fail(err, FXB_INTERNAL, "no randomness for a kid");
    char stamp[17]; /* YYYYMMDDTHHMMSSZ */
    struct tm tm;
    time_t now = time(NULL);
    if (gmtime_r(&now, &tm) == NULL || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
        return keyring_fail(err, FXB_INTERNAL, "cannot format the time");
    char kid[FXB_KEY_KID_MAX + 1];
    snprintf(kid, sizeof(kid), "k%s-%02x%02x%02x%02x", stamp, rnd[0], rnd[1], rnd[2], rnd[3]);

    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    if (pkey == NULL)
        return keyring_fail(err, FXB_INTERNAL, "cannot generate a P-256 key");
    BIO *out = BIO_new(BIO_s_secmem());
    char *pem = NULL;
    long pem_len = 0;
    if (out == NULL || PEM_write_bio_PrivateKey(out, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        (pem_len = BIO_get_mem_data(out, &pem)) <= 0) {
        BIO_free(out);
        EVP_PKEY_free(pkey);
        return keyring_fail(err, FXB_INTERNAL, "cannot encode the new key");
    }
    EVP_PKEY_free(pkey);

    char name[FXB_KEY_KID_MAX + sizeof(KEY_SUFFIX)];
    snprintf(name, sizeof(name), "%s%s", kid, KEY_SUFFIX);
    rc = write_atomic(dir, name, pem, (size_t)pem_len, err);
    BIO_free(out); /* secmem: wiped */
    if (rc != FXB_OK)
        return rc;

    char line[FXB_KEY_KID_MAX + 2];
    int ln = snprintf(line, sizeof(line), "%s\n", kid);
    rc = write_atomic(dir, ACTIVE_FILE, line, (size_t)ln, err);
    if (rc != FXB_OK)
        return rc;
    if (kid_out != NULL)
        memcpy(kid_out, kid, strlen(kid) + 1);
    ERR_clear_error();
    return FXB_OK;
}
