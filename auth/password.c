/* Passwords: argon2id through libargon2, the policy of SetPassword, and the
 * lockout counters. The sign-in check is built so that a number without an
 * account, or an account without a password, is indistinguishable from a
 * wrong password: same error, same argon2 cost, same lockout. */
#include "auth/password.h"

#include <argon2.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "auth/phone.h"
#include "store/keys.h"

/* Bounds on parameters read back from a stored hash. */
#define STORED_M_MAX_KIB (256u * 1024u)
#define STORED_T_MAX     16u
#define STORED_P_MAX     8u
#define KEY_MAX          96
#define NUM_MAX          24
#define OUTCOME_MAX      40

#define ZH_WEAK_LENGTH "密码长度应为8至128个字节"
#define ZH_WEAK_UTF8   "密码包含无法识别的字符"
#define ZH_WEAK_DIGITS "密码不能全部是数字"
#define ZH_WEAK_PHONE  "密码不能与手机号相同"
#define ZH_BAD_REQUEST "请求参数有误"
#define ZH_INTERNAL    "系统错误，请稍后重试"

/* KEYS[1] the lock hash. ARGV: now. */
static fxb_script check_script = FXB_SCRIPT("pw_check_lock", "\
local u = tonumber(redis.call('HGET', KEYS[1], 'until') or '0') or 0\n\
local now = tonumber(ARGV[1])\n\
if u > now then return {'PASSWORD_LOCKED', u - now} end\n\
return {'OK', 0}\n");

/* KEYS[1] the lock hash. ARGV: now, max failures, locked until (now + lock),
 * lock ms, memory ms. Answers {'OK', tries left} or {'PASSWORD_LOCKED', ms}. */
static fxb_script failure_script = FXB_SCRIPT("pw_record_failure", "\
local s = redis.call('HMGET', KEYS[1], 'fails', 'until')\n\
local now = tonumber(ARGV[1])\n\
local u = tonumber(s[2]) or 0\n\
if u > now then return {'PASSWORD_LOCKED', u - now} end\n\
local f = (tonumber(s[1]) or 0) + 1\n\
local max = tonumber(ARGV[2])\n\
if f >= max then\n\
  redis.call('HSET', KEYS[1], 'fails', '0', 'until', ARGV[3])\n\
  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n\
  return {'PASSWORD_LOCKED', tonumber(ARGV[4])}\n\
end\n\
redis.call('HSET', KEYS[1], 'fails', f)\n\
redis.call('PEXPIRE', KEYS[1], ARGV[5])\n\
return {'OK', max - f}\n");

/* KEYS[1] the lock hash. */
static fxb_script success_script = FXB_SCRIPT("pw_record_success", "\
redis.call('DEL', KEYS[1])\n\
return {'OK', 0}\n");

/* ---- policy --------------------------------------------------------------- */

/* Decodes one UTF-8 sequence at s (n bytes left) into *cp and returns its
 * length, or 0 when it is invalid (overlong, surrogate, > U+10FFFF, cut). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v;
    uint32_t min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

static bool is_any_digit(uint32_t cp)
{
    return (cp >= '0' && cp <= '9') || (cp >= 0xFF10 && cp <= 0xFF19); /* ０..９ */
}

fxb_code fxb_password_policy(const char *pw, const char *phone, fxb_err *err)
{
    size_t n = pw == NULL ? 0 : strnlen(pw, FXB_PASSWORD_MAX_BYTES + 1);
    if (n < FXB_PASSWORD_MIN_BYTES || n > FXB_PASSWORD_MAX_BYTES)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_PASSWORD_WEAK, ZH_WEAK_LENGTH,
                           "password must be %d..%d bytes of UTF-8", FXB_PASSWORD_MIN_BYTES,
                           FXB_PASSWORD_MAX_BYTES);
    const unsigned char *s = (const unsigned char *)pw;
    bool all_digits = true;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        if (len == 0)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_PASSWORD_WEAK, ZH_WEAK_UTF8,
                               "password must be valid UTF-8");
        if (!is_any_digit(cp))
            all_digits = false;
        i += len;
    }
    if (all_digits)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_PASSWORD_WEAK, ZH_WEAK_DIGITS,
                           "password must not consist of digits only");
    char own[FXB_PHONE_LEN + 1];
    char as_phone[FXB_PHONE_LEN + 1];
    if (phone != NULL && fxb_phone_normalize(phone, own, NULL) == FXB_OK &&
        fxb_phone_normalize(pw, as_phone, NULL) == FXB_OK && strcmp(own, as_phone) == 0)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_PASSWORD_WEAK, ZH_WEAK_PHONE,
                           "password must not be the account's phone number");
    return FXB_OK;
}

/* ---- hashing -------------------------------------------------------------- */

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

fxb_code fxb_password_hash(const char *pw, char *out, size_t cap, fxb_err *err)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (out == NULL || cap < FXB_PASSWORD_ENCODED_MAX)
        return fxb_err_set(err, FXB_INTERNAL, "PASSWORD_HASH_FAILED", ZH_INTERNAL,
                           "password hash buffer smaller than %d bytes", FXB_PASSWORD_ENCODED_MAX);
    size_t n = pw == NULL ? 0 : strnlen(pw, FXB_PASSWORD_MAX_BYTES + 1);
    if (n == 0 || n > FXB_PASSWORD_MAX_BYTES)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_PASSWORD_WEAK, ZH_WEAK_LENGTH,
                           "password must be 1..%d bytes", FXB_PASSWORD_MAX_BYTES);
    uint8_t salt[FXB_PASSWORD_SALT_LEN];
    if (!fill_random(salt, sizeof salt))
        return fxb_err_set(err, FXB_INTERNAL, "PASSWORD_HASH_FAILED", ZH_INTERNAL,
                           "getrandom failed");
    int rc = argon2id_hash_encoded(FXB_PASSWORD_T_COST, FXB_PASSWORD_M_COST_KIB,
                                   FXB_PASSWORD_PARALLELISM, pw, n, salt, sizeof salt,
                                   FXB_PASSWORD_TAG_LEN, out, cap);
    if (rc != ARGON2_OK) {
        out[0] = '\0';
        return fxb_err_set(err, FXB_INTERNAL, "PASSWORD_HASH_FAILED", ZH_INTERNAL,
                           "argon2id failed: %s", argon2_error_message(rc));
    }
    return FXB_OK;
}

/* The parameter prefix of hashes made now. */
static void current_prefix(char *out, size_t cap)
{
    snprintf(out, cap, "$argon2id$v=%d$m=%d,t=%d,p=%d$", ARGON2_VERSION_13, FXB_PASSWORD_M_COST_KIB,
             FXB_PASSWORD_T_COST, FXB_PASSWORD_PARALLELISM);
}

/* Reads "<name>=<decimal>" at *p into *out; false when absent, longer than
 * 9 digits or above max. Written out rather than sscanf'd because a %u
 * conversion of an out-of-range number is undefined behaviour. */
static bool take_param(const char **p, const char *name, unsigned max, unsigned *out)
{
    size_t nlen = strlen(name);
    if (strncmp(*p, name, nlen) != 0 || (*p)[nlen] != '=')
        return false;
    const char *d = *p + nlen + 1;
    size_t n = strspn(d, "0123456789");
    if (n == 0 || n > 9)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(d[i] - '0');
    if (v > max)
        return false;
    *out = v;
    *p = d + n;
    return true;
}

/* True when encoded is a bounded argon2id string with sane parameters. */
static bool encoded_acceptable(const char *encoded)
{
    if (strnlen(encoded, FXB_PASSWORD_ENCODED_MAX + 1) > FXB_PASSWORD_ENCODED_MAX)
        return false;
    static const char head[] = "$argon2id$";
    if (strncmp(encoded, head, sizeof head - 1) != 0)
        return false;
    const char *p = encoded + sizeof head - 1;
    unsigned v, m, t, lanes;
    if (!take_param(&p, "v", ARGON2_VERSION_13, &v) || v != ARGON2_VERSION_13 || *p++ != '$' ||
        !take_param(&p, "m", STORED_M_MAX_KIB, &m) || *p++ != ',' ||
        !take_param(&p, "t", STORED_T_MAX, &t) || *p++ != ',' ||
        !take_param(&p, "p", STORED_P_MAX, &lanes) || *p++ != '$')
        return false;
    /* "$<salt>$<tag>", unpadded base64: at least 8 salt and 4 tag bytes. */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t salt_len = strspn(p, b64);
    if (salt_len < 11 || p[salt_len] != '$')
        return false;
    p += salt_len + 1;
    size_t tag_len = strspn(p, b64);
    return tag_len >= 6 && p[tag_len] == '\0' && m >= 8 && t >= 1 && lanes >= 1;
}

/* One hash with the current parameters, thrown away: the cost of a verify
 * when there is nothing to verify against. */
static void spend_dummy(const char *pw, size_t n)
{
    static const uint8_t salt[FXB_PASSWORD_SALT_LEN] = {0};
    uint8_t tag[FXB_PASSWORD_TAG_LEN];
    argon2id_hash_raw(FXB_PASSWORD_T_COST, FXB_PASSWORD_M_COST_KIB, FXB_PASSWORD_PARALLELISM, pw, n,
                      salt, sizeof salt, tag, sizeof tag);
    explicit_bzero(tag, sizeof tag);
}

bool fxb_password_verify(const char *encoded, const char *pw)
{
    size_t n = pw == NULL ? 0 : strnlen(pw, FXB_PASSWORD_MAX_BYTES + 1);
    if (n == 0 || n > FXB_PASSWORD_MAX_BYTES)
        return false; /* depends on the input only, not on any account */
    if (encoded == NULL || !encoded_acceptable(encoded)) {
        spend_dummy(pw, n);
        return false;
    }
    return argon2id_verify(encoded, pw, n) == ARGON2_OK;
}

bool fxb_password_needs_rehash(const char *encoded)
{
    char prefix[64];
    current_prefix(prefix, sizeof prefix);
    return encoded == NULL || !encoded_acceptable(encoded) ||
           strncmp(encoded, prefix, strlen(prefix)) != 0;
}

/* ---- lockout -------------------------------------------------------------- */

static bool outcome_of(const redisReply *r, char outcome[OUTCOME_MAX], long long *num)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return false;
    const redisReply *o = r->element[0];
    const redisReply *n = r->element[1];
    if ((o->type != REDIS_REPLY_STRING && o->type != REDIS_REPLY_STATUS) || o->len == 0 ||
        o->len >= OUTCOME_MAX || n->type != REDIS_REPLY_INTEGER)
        return false;
    memcpy(outcome, o->str, o->len);
    outcome[o->len] = '\0';
    *num = n->integer;
    return true;
}

static fxb_code locked(fxb_err *err, long long retry_ms)
{
    long long minutes = (retry_ms + 59999) / 60000;
    char zh[160];
    snprintf(zh, sizeof zh, "密码错误次数过多，请%lld分钟后再试，或使用短信验证码登录", minutes);
    fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, FXB_PASSWORD_LOCKED, zh,
                "too many failed password attempts; locked for %lld ms more", retry_ms);
    if (err != NULL)
        err->retry_after_ms = retry_ms;
    return FXB_RESOURCE_EXHAUSTED;
}

/* Runs a lock script on key. FXB_OK with *left (tries left; success and
 * check give 0), PASSWORD_LOCKED, or a store error. */
static fxb_code run_lock(fxb_store *s, fxb_script *script, const char *key, int64_t now_ms,
                         long long *left, fxb_err *err)
{
    char a_now[NUM_MAX], a_max[NUM_MAX], a_until[NUM_MAX], a_lock[NUM_MAX], a_memory[NUM_MAX];
    snprintf(a_now, sizeof a_now, "%" PRId64, now_ms);
    snprintf(a_max, sizeof a_max, "%d", FXB_PASSWORD_MAX_FAILURES);
    snprintf(a_until, sizeof a_until, "%" PRId64, (int64_t)(now_ms + FXB_PASSWORD_LOCK_MS));
    snprintf(a_lock, sizeof a_lock, "%lld", FXB_PASSWORD_LOCK_MS);
    snprintf(a_memory, sizeof a_memory, "%lld", FXB_PASSWORD_FAIL_MEMORY_MS);
    const char *keys[] = {key};
    const char *args[] = {a_now, a_max, a_until, a_lock, a_memory};
    int nargs = script == &failure_script ? 5 : script == &check_script ? 1 : 0;

    fxb_err store_err;
    redisReply *r = fxb_store_eval(s, &store_err, script, 1, keys, nargs, args, NULL);
    if (r == NULL) {
        if (err != NULL)
            fxb_err_copy(err, &store_err);
        return store_err.code;
    }
    char outcome[OUTCOME_MAX];
    long long num = 0;
    bool ok = outcome_of(r, outcome, &num);
    freeReplyObject(r);
    if (!ok)
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL,
                           "script %s answered in an unexpected shape", script->name);
    if (strcmp(outcome, "PASSWORD_LOCKED") == 0)
        return locked(err, num);
    if (strcmp(outcome, "OK") != 0)
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL, "script %s answered %s",
                           script->name, outcome);
    if (left != NULL)
        *left = num;
    return FXB_OK;
}

static fxb_code account_key(const char *account_id, char key[KEY_MAX], fxb_err *err)
{
    if (!fxb_key_id_valid(account_id))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_ACCOUNT_ID_INVALID, ZH_BAD_REQUEST,
                           "account id must be 1..%d of [A-Za-z0-9_-]", FXB_KEY_ID_MAX);
    snprintf(key, KEY_MAX, "{u:%s}:pwlock", account_id);
    return FXB_OK;
}

static fxb_code lock_call(fxb_store *s, fxb_script *script, const char *account_id, int64_t now_ms,
                          fxb_err *err)
{
    if (s == NULL || now_ms <= 0)
        return fxb_err_set(err, FXB_INTERNAL, "PASSWORD_BAD_CALL", ZH_INTERNAL,
                           "missing argument to a password lock function");
    char key[KEY_MAX];
    fxb_code rc = account_key(account_id, key, err);
    if (rc != FXB_OK)
        return rc;
    return run_lock(s, script, key, now_ms, NULL, err);
}

fxb_code fxb_password_check_lock(fxb_store *s, const char *account_id, int64_t now_ms, fxb_err *err)
{
    return lock_call(s, &check_script, account_id, now_ms, err);
}

fxb_code fxb_password_record_failure(fxb_store *s, const char *account_id, int64_t now_ms,
                                     fxb_err *err)
{
    return lock_call(s, &failure_script, account_id, now_ms, err);
}

fxb_code fxb_password_record_success(fxb_store *s, const char *account_id, int64_t now_ms,
                                     fxb_err *err)
{
    return lock_call(s, &success_script, account_id, now_ms, err);
}

fxb_code fxb_password_authenticate(fxb_store *s, const uint8_t secret[FXB_SECRET_LEN],
                                   const char *phone, const char *account_id, const char *encoded,
                                   const char *pw, int64_t now_ms, fxb_err *err)
{
    if (s == NULL || secret == NULL || now_ms <= 0)
        return fxb_err_set(err, FXB_INTERNAL, "PASSWORD_BAD_CALL", ZH_INTERNAL,
                           "missing argument to fxb_password_authenticate");
    char bare[FXB_PHONE_LEN + 1];
    fxb_code rc = fxb_phone_normalize(phone, bare, err);
    if (rc != FXB_OK)
        return rc;
    char key[KEY_MAX];
    if (account_id != NULL) {
        rc = account_key(account_id, key, err);
        if (rc != FXB_OK)
            return rc;
    } else {
        char tag[FXB_PHONE_TAG_LEN + 1];
        if (!fxb_phone_tag(secret, bare, tag))
            return fxb_err_set(err, FXB_INTERNAL, "PASSWORD_BAD_CALL", ZH_INTERNAL, "HMAC failed");
        snprintf(key, sizeof key, "{p:%s}:pwlock", tag);
    }

    rc = run_lock(s, &check_script, key, now_ms, NULL, err);
    if (rc != FXB_OK)
        return rc;
    bool match = fxb_password_verify(encoded, pw); /* dummy cost when encoded is NULL */
    if (match && account_id != NULL && encoded != NULL)
        return run_lock(s, &success_script, key, now_ms, NULL, err);

    long long left = 0;
    rc = run_lock(s, &failure_script, key, now_ms, &left, err);
    if (rc != FXB_OK)
        return rc;
    char zh[160];
    snprintf(zh, sizeof zh, "手机号或密码错误，再错%lld次将锁定15分钟", left);
    return fxb_err_set(err, FXB_UNAUTHENTICATED, FXB_CREDENTIALS_INVALID, zh,
                       "phone number or password is wrong; %lld tries left before a 15-minute"
                       " lock",
                       left);
}
