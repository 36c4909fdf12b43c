/* One-time codes. Keys (the phone tag is fxb_phone_tag, the address tag the
 * same HMAC over the client's address or IPv6 /64, label "fxb/ip"):
 *   {p:<tag>}:otp:last            time of the last issue (ms), TTL 60 s
 *   {p:<tag>}:otp:day:<day>       codes issued to the number on <day>
 *   {p:<tag>}:otp:code:<purpose>  hash: h (code HMAC; absent once burnt),
 *                                 exp (ms), tries (wrong tries so far)
 *   {ip:<tag>}:otp:day:<day>      codes issued to the address on <day>
 * <day> counts Asia/Shanghai days since the epoch. Times inside the scripts
 * are the caller's now_ms (tests move it instead of sleeping); TTLs are
 * relative and only collect garbage, never decide.
 *
 * The number's keys and the address's key live in different hash slots, so
 * one script may not touch both (Redis Cluster): the address quota is
 * reserved first by its own script and handed back if the number's script
 * then refuses. A crash in between leaves the address one code poorer, the
 * safe direction.
 *
 * Scripts answer {outcome, number} instead of raising "FXB ..." errors
 * because outcomes carry numbers (retry_after_ms, tries left) that the error
 * convention has no field for; C maps them to fxb_err with zh-CN text.
 *
 * Code hashes are compared with Lua string equality, which is not constant
 * time; that is acceptable because both sides are HMACs under the server
 * secret: timing can at most reveal a prefix of a keyed hash the attacker
 * cannot relate to any code. */
#include "auth/otp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "auth/phone.h"

/* Codes are kept this long after they expire so that a late try says
 * "expired" rather than "no code". */
#define SLOT_GRACE_MS (10LL * 60 * 1000)
/* Day counters outlive their day by this much (the key names the day). */
#define DAY_GRACE_MS (3600LL * 1000)
/* Largest multiple of 10^6 that fits in 32 bits: draws at or above it are
 * rejected so that every code is equally likely. */
#define CODE_DRAW_LIMIT 4294000000u
#define KEY_MAX         96
#define NUM_MAX         24
#define OUTCOME_MAX     40

#define ZH_BAD_REQUEST "请求参数有误"
#define ZH_INTERNAL    "系统错误，请稍后重试"
#define ZH_CODE_FORMAT "请输入6位数字验证码"
#define ZH_RESEND      "验证码发送过于频繁，请稍后再试"
#define ZH_DAILY_PHONE "该手机号今日获取验证码次数已达上限，请明天再试"
#define ZH_DAILY_IP    "当前网络今日获取验证码次数已达上限，请明天再试"
#define ZH_EXPIRED     "验证码已失效，请重新获取"
#define ZH_EXHAUSTED   "验证码错误次数过多，请重新获取"

/* KEYS[1] the address's count today. ARGV: limit, ttl_ms. */
static fxb_script ip_reserve_script = FXB_SCRIPT("otp_ip_reserve", "\
local n = tonumber(redis.call('GET', KEYS[1]) or '0')\n\
if n >= tonumber(ARGV[1]) then return {'CODE_DAILY_LIMIT_IP', 0} end\n\
n = redis.call('INCR', KEYS[1])\n\
redis.call('PEXPIRE', KEYS[1], ARGV[2])\n\
return {'OK', n}\n");

/* KEYS[1] the address's count today: hands back one reservation. */
static fxb_script ip_release_script = FXB_SCRIPT("otp_ip_release", "\
local n = tonumber(redis.call('GET', KEYS[1]) or '0')\n\
if n > 0 then n = redis.call('DECR', KEYS[1]) end\n\
return {'OK', n}\n");

/* KEYS: last issue time, the number's count today, the code slot.
 * ARGV: now, resend_ms, daily limit, day ttl_ms, code hash, expires_at,
 * slot ttl_ms. */
static fxb_script issue_script = FXB_SCRIPT("otp_issue", "\
local now = tonumber(ARGV[1])\n\
local resend = tonumber(ARGV[2])\n\
local last = tonumber(redis.call('GET', KEYS[1]) or '')\n\
if last then\n\
  local wait = last + resend - now\n\
  if wait > resend then wait = resend end\n\
  if wait > 0 then return {'CODE_RESEND_TOO_SOON', wait} end\n\
end\n\
local n = tonumber(redis.call('GET', KEYS[2]) or '0')\n\
if n >= tonumber(ARGV[3]) then return {'CODE_DAILY_LIMIT_PHONE', 0} end\n\
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n\
n = redis.call('INCR', KEYS[2])\n\
redis.call('PEXPIRE', KEYS[2], ARGV[4])\n\
redis.call('DEL', KEYS[3])\n\
redis.call('HSET', KEYS[3], 'h', ARGV[5], 'exp', ARGV[6], 'tries', '0')\n\
redis.call('PEXPIRE', KEYS[3], ARGV[7])\n\
return {'OK', n}\n");

/* KEYS[1] the code slot. ARGV: presented code hash, now, max tries. */
static fxb_script verify_script = FXB_SCRIPT("otp_verify", "\
local s = redis.call('HMGET', KEYS[1], 'h', 'exp', 'tries')\n\
local exp = tonumber(s[2])\n\
if not exp or tonumber(ARGV[2]) >= exp then return {'CODE_EXPIRED', 0} end\n\
if not s[1] then return {'CODE_EXHAUSTED', 0} end\n\
if s[1] == ARGV[1] then\n\
  redis.call('DEL', KEYS[1])\n\
  return {'OK', 0}\n\
end\n\
local tries = (tonumber(s[3]) or 0) + 1\n\
local left = tonumber(ARGV[3]) - tries\n\
if left <= 0 then\n\
  redis.call('HDEL', KEYS[1], 'h')\n\
  redis.call('HSET', KEYS[1], 'tries', tries)\n\
  return {'CODE_EXHAUSTED', 0}\n\
end\n\
redis.call('HSET', KEYS[1], 'tries', tries)\n\
return {'CODE_INVALID', left}\n");

void fxb_otp_params_init(fxb_otp_params *p, const uint8_t secret[FXB_SECRET_LEN])
{
    if (p == NULL)
        return;
    memset(p, 0, sizeof *p);
    if (secret != NULL)
        memcpy(p->secret, secret, FXB_SECRET_LEN);
    p->daily_limit_phone = FXB_OTP_DAILY_PHONE;
    p->daily_limit_ip = FXB_OTP_DAILY_IP;
}

static bool purpose_valid(int purpose)
{
    return purpose == FXB_OTP_SIGN_IN || purpose == FXB_OTP_STEP_UP ||
           purpose == FXB_OTP_VERIFY_RELATIVE;
}

static fxb_code bad_purpose(fxb_err *err)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_OTP_CODE_PURPOSE_INVALID, ZH_BAD_REQUEST,
                       "purpose must be SIGN_IN (1), STEP_UP (2) or VERIFY_RELATIVE (3)");
}

static fxb_code bad_call(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, "OTP_BAD_CALL", ZH_INTERNAL, "otp: %s", what);
}

static int limit_or_default(int v, int def)
{
    return v == 0 ? def : v;
}

static bool limit_valid(int v)
{
    return v >= 1 && v <= FXB_OTP_DAILY_LIMIT_MAX;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The Asia/Shanghai day of now_ms and the ms left until the next one. */
static int64_t day_of(int64_t now_ms, int64_t *until_next_ms)
{
    int64_t day = floor_div(now_ms + FXB_OTP_DAY_OFFSET_MS, FXB_OTP_DAY_MS);
    *until_next_ms = (day + 1) * FXB_OTP_DAY_MS - FXB_OTP_DAY_OFFSET_MS - now_ms;
    return day;
}

static int64_t validity_ms(int pct)
{
    if (pct < FXB_OTP_TIMEOUT_PCT_MIN)
        pct = FXB_OTP_TIMEOUT_PCT_MIN;
    if (pct > FXB_OTP_TIMEOUT_PCT_MAX)
        pct = FXB_OTP_TIMEOUT_PCT_MAX;
    int64_t v = FXB_OTP_VALIDITY_MS * pct / 100;
    return v > FXB_OTP_VALIDITY_MAX_MS ? FXB_OTP_VALIDITY_MAX_MS : v;
}

static bool random_code(char out[FXB_OTP_DIGITS + 1])
{
    /* A draw is rejected with probability 2.3e-4: 64 rejections in a row
     * mean a broken generator, not bad luck. */
    for (int attempt = 0; attempt < 64; attempt++) {
        uint32_t v;
        ssize_t n = getrandom(&v, sizeof v, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof v)
            return false;
        if (v >= CODE_DRAW_LIMIT)
            continue;
        v %= 1000000u;
        for (int i = FXB_OTP_DIGITS - 1; i >= 0; i--) {
            out[i] = (char)('0' + v % 10);
            v /= 10;
        }
        out[FXB_OTP_DIGITS] = '\0';
        return true;
    }
    return false;
}

static bool code_well_formed(const char *code)
{
    if (code == NULL || strnlen(code, FXB_OTP_DIGITS + 1) != FXB_OTP_DIGITS)
        return false;
    for (int i = 0; i < FXB_OTP_DIGITS; i++)
        if (code[i] < '0' || code[i] > '9')
            return false;
    return true;
}

/* HMAC(secret, "fxb/otp-code", "<purpose>|<phone>|<code>"): the purpose and
 * the number are inside, so a hash is worthless for any other pair. */
static bool code_hash(const fxb_otp_params *p, int purpose, const char *phone, const char *code,
                      char out[FXB_HMAC_HEX_LEN + 1])
{
    char data[32];
    int n = snprintf(data, sizeof data, "%d|%s|%s", purpose, phone, code);
    bool ok = n > 0 && (size_t)n < sizeof data &&
              fxb_hmac_hex(p->secret, "fxb/otp-code", data, (size_t)n, out);
    explicit_bzero(data, sizeof data);
    return ok;
}

/* What the address limit counts: IPv4 as is, IPv6 per /64 (a subscriber's
 * allocation), anything else (e.g. "unix") as given. */
static void ip_bucket(const char *ip, char *out, size_t cap)
{
    struct in6_addr a6;
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        char text[INET6_ADDRSTRLEN];
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            struct in_addr a4;
            memcpy(&a4, &a6.s6_addr[12], sizeof a4);
            if (inet_ntop(AF_INET, &a4, out, (socklen_t)cap) != NULL)
                return;
        } else {
            memset(&a6.s6_addr[8], 0, 8);
            if (inet_ntop(AF_INET6, &a6, text, sizeof text) != NULL) {
                snprintf(out, cap, "%s/64", text);
                return;
            }
        }
    }
    snprintf(out, cap, "%s", ip);
}

static bool client_ip_valid(const char *ip)
{
    if (ip == NULL)
        return false;
    size_t n = strnlen(ip, FXB_OTP_CLIENT_IP_MAX + 1);
    if (n == 0 || n > FXB_OTP_CLIENT_IP_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ip[i] <= ' ' || ip[i] > '~')
            return false;
    return true;
}

/* Decodes a script answer {outcome, number}. False for any other shape. */
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

/* Runs a script and decodes its answer. FXB_OK with *outcome and *num, or the
 * store's error. */
static fxb_code run(fxb_store *s, fxb_script *script, int nkeys, const char **keys, int nargs,
                    const char **args, char outcome[OUTCOME_MAX], long long *num, fxb_err *err)
{
    fxb_err store_err;
    redisReply *r = fxb_store_eval(s, &store_err, script, nkeys, keys, nargs, args, NULL);
    if (r == NULL) {
        if (err != NULL)
            fxb_err_copy(err, &store_err);
        return store_err.code;
    }
    bool ok = outcome_of(r, outcome, num);
    freeReplyObject(r);
    if (!ok)
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL,
                           "script %s answered in an unexpected shape", script->name);
    return FXB_OK;
}

static fxb_code exhausted(fxb_err *err, const char *reason, const char *zh, long long retry_ms,
                          const char *what)
{
    fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, reason, zh, "%s; retry in %lld ms", what, retry_ms);
    if (err != NULL)
        err->retry_after_ms = retry_ms;
    return FXB_RESOURCE_EXHAUSTED;
}

fxb_code fxb_otp_issue(fxb_store *s, const fxb_otp_params *p, const char *phone,
                       const char *client_ip, int purpose, int timeout_multiplier_pct,
                       int64_t now_ms, char code_out[FXB_OTP_DIGITS + 1], int64_t *expires_at_ms,
                       int64_t *resend_after_ms, fxb_err *err)
{
    if (code_out != NULL)
        code_out[0] = '\0';
    if (s == NULL || p == NULL || code_out == NULL || expires_at_ms == NULL ||
        resend_after_ms == NULL || now_ms <= 0)
        return bad_call(err, "missing argument to fxb_otp_issue");
    int limit_phone = limit_or_default(p->daily_limit_phone, FXB_OTP_DAILY_PHONE);
    int limit_ip = limit_or_default(p->daily_limit_ip, FXB_OTP_DAILY_IP);
    if (!limit_valid(limit_phone) || !limit_valid(limit_ip))
        return bad_call(err, "daily limits must be 1..100000");

    char bare[FXB_PHONE_LEN + 1];
    fxb_code rc = fxb_phone_normalize(phone, bare, err);
    if (rc != FXB_OK)
        return rc;
    if (!purpose_valid(purpose))
        return bad_purpose(err);
    if (!client_ip_valid(client_ip))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_OTP_CLIENT_ADDRESS_INVALID,
                           ZH_BAD_REQUEST, "client address must be 1..%d printable characters",
                           FXB_OTP_CLIENT_IP_MAX);

    int64_t until_next_day;
    int64_t day = day_of(now_ms, &until_next_day);
    int64_t valid_ms = validity_ms(timeout_multiplier_pct);
    int64_t expires = now_ms + valid_ms;

    char tag[FXB_PHONE_TAG_LEN + 1];
    char bucket[FXB_OTP_CLIENT_IP_MAX + 8];
    char ip_hash[FXB_HMAC_HEX_LEN + 1];
    char code[FXB_OTP_DIGITS + 1];
    char hash[FXB_HMAC_HEX_LEN + 1];
    ip_bucket(client_ip, bucket, sizeof bucket);
    if (!fxb_phone_tag(p->secret, bare, tag) ||
        !fxb_hmac_hex(p->secret, "fxb/ip", bucket, strlen(bucket), ip_hash))
        return bad_call(err, "HMAC failed");
    if (!random_code(code))
        return bad_call(err, "getrandom failed");
    bool hashed = code_hash(p, purpose, bare, code, hash);
    if (!hashed) {
        explicit_bzero(code, sizeof code);
        return bad_call(err, "HMAC failed");
    }

    char ip_key[KEY_MAX], last_key[KEY_MAX], day_key[KEY_MAX], slot_key[KEY_MAX];
    snprintf(ip_key, sizeof ip_key, "{ip:%.16s}:otp:day:%" PRId64, ip_hash, day);
    snprintf(last_key, sizeof last_key, "{p:%s}:otp:last", tag);
    snprintf(day_key, sizeof day_key, "{p:%s}:otp:day:%" PRId64, tag, day);
    snprintf(slot_key, sizeof slot_key, "{p:%s}:otp:code:%d", tag, purpose);
    char a_now[NUM_MAX], a_resend[NUM_MAX], a_limit_p[NUM_MAX], a_limit_ip[NUM_MAX],
        a_day_ttl[NUM_MAX], a_exp[NUM_MAX], a_slot_ttl[NUM_MAX];
    snprintf(a_now, sizeof a_now, "%" PRId64, now_ms);
    snprintf(a_resend, sizeof a_resend, "%lld", FXB_OTP_RESEND_MS);
    snprintf(a_limit_p, sizeof a_limit_p, "%d", limit_phone);
    snprintf(a_limit_ip, sizeof a_limit_ip, "%d", limit_ip);
    snprintf(a_day_ttl, sizeof a_day_ttl, "%" PRId64, (int64_t)(until_next_day + DAY_GRACE_MS));
    snprintf(a_exp, sizeof a_exp, "%" PRId64, expires);
    snprintf(a_slot_ttl, sizeof a_slot_ttl, "%" PRId64, (int64_t)(valid_ms + SLOT_GRACE_MS));

    char outcome[OUTCOME_MAX];
    long long num;
    const char *ip_keys[] = {ip_key};
    const char *ip_args[] = {a_limit_ip, a_day_ttl};
    rc = run(s, &ip_reserve_script, 1, ip_keys, 2, ip_args, outcome, &num, err);
    if (rc == FXB_OK && strcmp(outcome, "OK") != 0)
        rc = exhausted(err, FXB_OTP_CODE_DAILY_LIMIT_IP, ZH_DAILY_IP, until_next_day,
                       "daily code limit of this client address reached");
    if (rc != FXB_OK) {
        explicit_bzero(code, sizeof code);
        return rc;
    }

    const char *keys[] = {last_key, day_key, slot_key};
    const char *args[] = {a_now, a_resend, a_limit_p, a_day_ttl, hash, a_exp, a_slot_ttl};
    rc = run(s, &issue_script, 3, keys, 7, args, outcome, &num, err);
    if (rc == FXB_OK && strcmp(outcome, "CODE_RESEND_TOO_SOON") == 0)
        rc = exhausted(err, FXB_OTP_CODE_RESEND_TOO_SOON, ZH_RESEND, num,
                       "a code was sent to this number less than 60 s ago");
    else if (rc == FXB_OK && strcmp(outcome, "CODE_DAILY_LIMIT_PHONE") == 0)
        rc = exhausted(err, FXB_OTP_CODE_DAILY_LIMIT_PHONE, ZH_DAILY_PHONE, until_next_day,
                       "daily code limit of this number reached");
    else if (rc == FXB_OK && strcmp(outcome, "OK") != 0)
        rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL,
                         "script otp_issue answered %s", outcome);
    if (rc != FXB_OK) {
        /* Hand the address's reservation back; if this fails too, the
         * address merely loses one code for the day. */
        fxb_err ignored;
        char o2[OUTCOME_MAX];
        long long n2;
        run(s, &ip_release_script, 1, ip_keys, 0, NULL, o2, &n2, &ignored);
        explicit_bzero(code, sizeof code);
        return rc;
    }
    memcpy(code_out, code, sizeof code);
    explicit_bzero(code, sizeof code);
    *expires_at_ms = expires;
    *resend_after_ms = now_ms + FXB_OTP_RESEND_MS;
    return FXB_OK;
}

fxb_code fxb_otp_verify(fxb_store *s, const fxb_otp_params *p, const char *phone, int purpose,
                        const char *code, int64_t now_ms, fxb_err *err)
{
    if (s == NULL || p == NULL || now_ms <= 0)
        return bad_call(err, "missing argument to fxb_otp_verify");
    char bare[FXB_PHONE_LEN + 1];
    fxb_code rc = fxb_phone_normalize(phone, bare, err);
    if (rc != FXB_OK)
        return rc;
    if (!purpose_valid(purpose))
        return bad_purpose(err);
    if (!code_well_formed(code))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_OTP_CODE_MALFORMED, ZH_CODE_FORMAT,
                           "code must be exactly %d ASCII digits", FXB_OTP_DIGITS);

    char tag[FXB_PHONE_TAG_LEN + 1];
    char hash[FXB_HMAC_HEX_LEN + 1];
    if (!fxb_phone_tag(p->secret, bare, tag) || !code_hash(p, purpose, bare, code, hash))
        return bad_call(err, "HMAC failed");
    char slot_key[KEY_MAX];
    snprintf(slot_key, sizeof slot_key, "{p:%s}:otp:code:%d", tag, purpose);
    char a_now[NUM_MAX], a_tries[NUM_MAX];
    snprintf(a_now, sizeof a_now, "%" PRId64, now_ms);
    snprintf(a_tries, sizeof a_tries, "%d", FXB_OTP_MAX_TRIES);

    char outcome[OUTCOME_MAX];
    long long num;
    const char *keys[] = {slot_key};
    const char *args[] = {hash, a_now, a_tries};
    rc = run(s, &verify_script, 1, keys, 3, args, outcome, &num, err);
    if (rc != FXB_OK)
        return rc;
    if (strcmp(outcome, "OK") == 0)
        return FXB_OK;
    if (strcmp(outcome, "CODE_INVALID") == 0) {
        char zh[96];
        snprintf(zh, sizeof zh, "验证码错误，还可尝试%lld次", num);
        return fxb_err_set(err, FXB_UNAUTHENTICATED, FXB_OTP_CODE_INVALID, zh,
                           "wrong code; %lld tries left", num);
    }
    if (strcmp(outcome, "CODE_EXHAUSTED") == 0)
        return fxb_err_set(err, FXB_UNAUTHENTICATED, FXB_OTP_CODE_EXHAUSTED, ZH_EXHAUSTED,
                           "too many wrong tries; this code is no longer accepted, request a new"
                           " one");
    if (strcmp(outcome, "CODE_EXPIRED") == 0)
        return fxb_err_set(err, FXB_UNAUTHENTICATED, FXB_OTP_CODE_EXPIRED, ZH_EXPIRED,
                           "no valid code for this number and purpose (expired, used or never"
                           " sent); request a new one");
    return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL,
                       "script otp_verify answered %s", outcome);
}

bool fxb_otp_sms_text(int purpose, const char *code, int64_t validity_ms, char *out, size_t cap)
{
    if (out == NULL || cap == 0)
        return false;
    out[0] = '\0';
    const char *use = purpose == FXB_OTP_SIGN_IN           ? "登录"
                      : purpose == FXB_OTP_STEP_UP         ? "身份确认"
                      : purpose == FXB_OTP_VERIFY_RELATIVE ? "亲属手机号验证"
                                                           : NULL;
    if (use == NULL || !code_well_formed(code) || validity_ms <= 0)
        return false;
    long long minutes = (validity_ms + 59999) / 60000;
    int n = snprintf(out, cap, "【放新办】验证码%s，用于%s，%lld分钟内有效。请勿告诉他人。", code,
                     use, minutes);
    if (n < 0 || (size_t)n >= cap) {
        explicit_bzero(out, cap);
        out[0] = '\0';
        return false;
    }
    return true;
}
