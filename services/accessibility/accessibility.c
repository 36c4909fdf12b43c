/* AccessibilityService: settings in {u:<id>}:a11y, changed only by Lua
 * scripts that compare-and-set the version, so two devices never overwrite
 * each other silently; and the trusted relative, verified by a code sent to
 * the relative's phone before it may receive the account's sign-in codes.
 *
 * Hash fields: version, updated_ms, elder_mode, font_scale_pct,
 * high_contrast, reduced_motion, screen_reader_hints, voice_broadcast,
 * speech_rate_pct, timeout_pct, language, relative_enc, relative_masked,
 * relative_pending_enc (label "relative_pending"), relative_pending_exp_ms.
 * {u:<id>}:a11y:relstarts:<day> counts StartTrustedRelative calls per
 * Asia/Shanghai day. Nothing here logs a phone number or a code. */
#include "services/accessibility/accessibility.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/account.h"
#include "auth/otp.h"
#include "auth/phone.h"
#include "auth/sms.h"
#include "fxb/v1/accessibility.pb-c.h"
#include "services/auth/auth_service.h"
#include "store/crypto.h"
#include "store/keys.h"
#include "store/store.h"

#define LABEL_RELATIVE "relative_phone"   /* read by the auth service */
#define LABEL_PENDING  "relative_pending" /* a pending, unverified number */
#define LABEL_PHONE    "phone"            /* the account's own number */

#define ZH_BUSY     "系统繁忙，请稍后重试"
#define ZH_CONFLICT "设置已在其他设备上修改，请刷新后重试"

/* The fields every read returns, in this order (HMGET). */
enum {
    F_VERSION,
    F_UPDATED,
    F_ELDER,
    F_FONT,
    F_CONTRAST,
    F_MOTION,
    F_SR_HINTS,
    F_VOICE,
    F_SPEECH,
    F_TIMEOUT,
    F_LANGUAGE,
    F_REL_MASKED,
    F_COUNT
};
#define FIELDS_LUA                                                                                 \
    "'version', 'updated_ms', 'elder_mode', 'font_scale_pct', 'high_contrast', "                   \
    "'reduced_motion', 'screen_reader_hints', 'voice_broadcast', 'speech_rate_pct', "              \
    "'timeout_pct', 'language', 'relative_masked'"
#define FIELDS_CMD                                                                                 \
    "version updated_ms elder_mode font_scale_pct high_contrast reduced_motion "                   \
    "screen_reader_hints voice_broadcast speech_rate_pct timeout_pct language relative_masked"

/* KEYS[1] a11y; ARGV[1] version read, ARGV[2] now_ms, ARGV[3..] field/value
 * pairs. A retry of a write that already succeeded (version one further,
 * every field as requested) answers like the first time instead of
 * conflicting. */
static fxb_script update_script = FXB_SCRIPT(
    "a11y_update",
    "local cur = redis.call('HGET', KEYS[1], 'version') or '0'\n"
    "if cur ~= ARGV[1] then\n"
    "  local same = tonumber(cur) == tonumber(ARGV[1]) + 1\n"
    "  local i = 3\n"
    "  while same and i < #ARGV do\n"
    "    if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then same = false end\n"
    "    i = i + 2\n"
    "  end\n"
    "  if not same then\n"
    "    return redis.error_reply('FXB 10 VERSION_CONFLICT the settings are at version ' ..\n"
    "      cur .. ', not ' .. ARGV[1] .. ': read them again and reapply the change')\n"
    "  end\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], unpack(ARGV, 3))\n"
    "  redis.call('HSET', KEYS[1], 'updated_ms', ARGV[2])\n"
    "  redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "end\n"
    "return redis.call('HMGET', KEYS[1], " FIELDS_LUA ")\n");

/* KEYS[1] a11y, KEYS[2] the day's start counter; ARGV: pending_enc,
 * pending_exp_ms, counter ttl (s). Not a settings change: no version bump. */
static fxb_script start_script = FXB_SCRIPT(
    "a11y_relative_start", "redis.call('HSET', KEYS[1], 'relative_pending_enc', ARGV[1],\n"
                           "  'relative_pending_exp_ms', ARGV[2])\n"
                           "local n = redis.call('INCR', KEYS[2])\n"
                           "redis.call('EXPIRE', KEYS[2], ARGV[3])\n"
                           "return n\n");

/* KEYS[1] a11y; ARGV: relative_enc, relative_masked, the pending_enc that
 * was verified, now_ms. A newer pending number (a Start that raced this
 * Confirm) stays pending. */
static fxb_script confirm_script =
    FXB_SCRIPT("a11y_relative_confirm",
               "redis.call('HSET', KEYS[1], 'relative_enc', ARGV[1], 'relative_masked', ARGV[2],\n"
               "  'updated_ms', ARGV[4])\n"
               "if redis.call('HGET', KEYS[1], 'relative_pending_enc') == ARGV[3] then\n"
               "  redis.call('HDEL', KEYS[1], 'relative_pending_enc', 'relative_pending_exp_ms')\n"
               "end\n"
               "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
               "return redis.call('HMGET', KEYS[1], " FIELDS_LUA ")\n");

/* KEYS[1] a11y; ARGV[1] now_ms. Removing nothing changes nothing (no
 * version bump), so a retried Remove is harmless. */
static fxb_script remove_script = FXB_SCRIPT(
    "a11y_relative_remove",
    "local had = redis.call('HEXISTS', KEYS[1], 'relative_enc')\n"
    "redis.call('HDEL', KEYS[1], 'relative_enc', 'relative_masked', 'relative_pending_enc',\n"
    "  'relative_pending_exp_ms')\n"
    "if had == 1 then\n"
    "  redis.call('HSET', KEYS[1], 'updated_ms', ARGV[1])\n"
    "  redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "end\n"
    "return redis.call('HMGET', KEYS[1], " FIELDS_LUA ")\n");

/* --- the rules (pure) --------------------------------------------------- */

static const char *const languages[] = {FXB_A11Y_DEFAULT_LANGUAGE};

void fxb_a11y_defaults(fxb_a11y_settings *s)
{
    memset(s, 0, sizeof *s);
    s->font_scale_pct = FXB_A11Y_DEFAULT_PCT;
    s->speech_rate_pct = FXB_A11Y_DEFAULT_PCT;
    s->timeout_pct = FXB_A11Y_DEFAULT_PCT;
    s->language = languages[0];
}

const char *fxb_a11y_language(const char *tag)
{
    if (tag == NULL || tag[0] == '\0')
        return languages[0];
    size_t n = strnlen(tag, FXB_A11Y_LANGUAGE_MAX + 1);
    if (n > FXB_A11Y_LANGUAGE_MAX)
        return NULL;
    for (size_t i = 0; i < sizeof languages / sizeof languages[0]; i++)
        if (strlen(languages[i]) == n && strncasecmp(tag, languages[i], n) == 0)
            return languages[i];
    return NULL;
}

fxb_code fxb_a11y_validate(const fxb_a11y_settings *in, fxb_a11y_settings *out, fxb_err *err)
{
    fxb_a11y_settings v = *in;
    if (v.font_scale_pct == 0)
        v.font_scale_pct = FXB_A11Y_DEFAULT_PCT;
    if (v.speech_rate_pct == 0)
        v.speech_rate_pct = FXB_A11Y_DEFAULT_PCT;
    if (v.timeout_pct == 0)
        v.timeout_pct = FXB_A11Y_DEFAULT_PCT;
    if (v.font_scale_pct < FXB_A11Y_FONT_SCALE_MIN || v.font_scale_pct > FXB_A11Y_FONT_SCALE_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_A11Y_FONT_SCALE_RANGE,
                           "字体大小应在100%至200%之间",
                           "settings.font_scale_percent must be %d..%d (0 = default), got %" PRIu32,
                           FXB_A11Y_FONT_SCALE_MIN, FXB_A11Y_FONT_SCALE_MAX, v.font_scale_pct);
    if (v.speech_rate_pct < FXB_A11Y_SPEECH_RATE_MIN ||
        v.speech_rate_pct > FXB_A11Y_SPEECH_RATE_MAX)
        return fxb_err_set(
            err, FXB_INVALID_ARGUMENT, FXB_A11Y_SPEECH_RATE_RANGE, "语速应在50%至200%之间",
            "settings.speech_rate_percent must be %d..%d (0 = default), got %" PRIu32,
            FXB_A11Y_SPEECH_RATE_MIN, FXB_A11Y_SPEECH_RATE_MAX, v.speech_rate_pct);
    if (v.timeout_pct < FXB_A11Y_TIMEOUT_PCT_MIN || v.timeout_pct > FXB_A11Y_TIMEOUT_PCT_MAX)
        return fxb_err_set(
            err, FXB_INVALID_ARGUMENT, FXB_A11Y_TIMEOUT_RANGE, "操作时限倍数应在100%至300%之间",
            "settings.timeout_multiplier_percent must be %d..%d (0 = default), got %" PRIu32,
            FXB_A11Y_TIMEOUT_PCT_MIN, FXB_A11Y_TIMEOUT_PCT_MAX, v.timeout_pct);
    v.language = fxb_a11y_language(in->language);
    if (v.language == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_A11Y_LANGUAGE_UNSUPPORTED,
                           "暂不支持该语言", "settings.language: only \"%s\" is supported",
                           FXB_A11Y_DEFAULT_LANGUAGE);
    if (v.elder_mode && v.font_scale_pct < FXB_A11Y_ELDER_PRESET)
        v.font_scale_pct = FXB_A11Y_ELDER_PRESET;
    *out = v;
    return FXB_OK;
}

static uint32_t scaled_dp(uint32_t base, uint32_t pct)
{
    return (base * pct + 50u) / 100u;
}

void fxb_a11y_derive_dp(uint32_t font_scale_pct, bool elder_mode, uint32_t *body_dp,
                        uint32_t *largest_dp)
{
    uint32_t pct = font_scale_pct < FXB_A11Y_FONT_SCALE_MIN   ? FXB_A11Y_FONT_SCALE_MIN
                   : font_scale_pct > FXB_A11Y_FONT_SCALE_MAX ? FXB_A11Y_FONT_SCALE_MAX
                                                              : font_scale_pct;
    uint32_t body = scaled_dp(FXB_A11Y_BODY_DP_BASE, pct);
    uint32_t largest = scaled_dp(FXB_A11Y_LARGEST_DP_BASE, pct);
    if (elder_mode && body < FXB_A11Y_ELDER_BODY_DP)
        body = FXB_A11Y_ELDER_BODY_DP;
    if (elder_mode && largest < FXB_A11Y_ELDER_LARGEST)
        largest = FXB_A11Y_ELDER_LARGEST;
    *body_dp = body;
    *largest_dp = largest;
}

#define DAY_MS    (24LL * 3600 * 1000)
#define UTC8_MS   (8LL * 3600 * 1000)
#define WALL_MAX  253402300800000LL /* 10000-01-01T00:00:00Z */
#define AGE_LIMIT 150

/* Gregorian date of a count of days since 1970-01-01 (H. Hinnant's
 * civil_from_days), for days >= 0. */
static void civil_from_days(int64_t days, int *y, int *m, int *d)
{
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t mm = mp < 10 ? mp + 3 : mp - 9;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)mm;
    *y = (int)(yoe + era * 400 + (mm <= 2));
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

bool fxb_a11y_age_on(const char *birth, int64_t now_ms, int *age)
{
    *age = -1;
    if (birth == NULL || now_ms < 0 || now_ms >= WALL_MAX - UTC8_MS)
        return false;
    int v[8];
    for (int i = 0; i < 8; i++) {
        if (birth[i] < '0' || birth[i] > '9')
            return false;
        v[i] = birth[i] - '0';
    }
    if (birth[8] != '\0')
        return false;
    int by = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
    int bm = v[4] * 10 + v[5];
    int bd = v[6] * 10 + v[7];
    if (by < 1900 || bm < 1 || bm > 12 || bd < 1 || bd > days_in_month(by, bm))
        return false;
    int ty, tm, td;
    civil_from_days((now_ms + UTC8_MS) / DAY_MS, &ty, &tm, &td);
    int years = ty - by;
    if (tm < bm || (tm == bm && td < bd))
        years--;
    if (years < 0 || years > AGE_LIMIT)
        return false;
    *age = years;
    return true;
}

bool fxb_a11y_elder_suggested(const char *birth, bool elder_mode, int64_t now_ms)
{
    int age;
    return !elder_mode && fxb_a11y_age_on(birth, now_ms, &age) && age >= FXB_A11Y_ELDER_SUGGEST_AGE;
}

/* --- store <-> settings ------------------------------------------------- */

typedef struct a11y_record {
    uint64_t version;
    int64_t updated_ms;
    fxb_a11y_settings s;
    char relative_masked[FXB_PHONE_LEN + 1];
} a11y_record;

static bool reply_u64(const redisReply *r, uint64_t *out)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return false;
        v = v * 10u + (uint64_t)(r->str[i] - '0');
    }
    *out = v;
    return true;
}

/* A stored percentage, or dflt when absent or out of [lo, hi] (data that no
 * validated write produced is not shown as if it were). */
static uint32_t reply_pct(const redisReply *r, uint32_t lo, uint32_t hi, uint32_t dflt)
{
    uint64_t v;
    if (!reply_u64(r, &v) || v < lo || v > hi)
        return dflt;
    return (uint32_t)v;
}

static bool reply_bool(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING && r->len == 1 && r->str[0] == '1';
}

/* Decodes an HMGET of the FIELDS list; false for any other shape. */
static bool record_from_reply(const redisReply *r, a11y_record *rec)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != F_COUNT)
        return false;
    redisReply *const *e = r->element;
    memset(rec, 0, sizeof *rec);
    fxb_a11y_defaults(&rec->s);
    if (!reply_u64(e[F_VERSION], &rec->version))
        rec->version = 0;
    uint64_t updated = 0;
    if (reply_u64(e[F_UPDATED], &updated) && updated < (uint64_t)WALL_MAX)
        rec->updated_ms = (int64_t)updated;
    rec->s.elder_mode = reply_bool(e[F_ELDER]);
    rec->s.font_scale_pct = reply_pct(e[F_FONT], FXB_A11Y_FONT_SCALE_MIN, FXB_A11Y_FONT_SCALE_MAX,
                                      FXB_A11Y_DEFAULT_PCT);
    rec->s.high_contrast = reply_bool(e[F_CONTRAST]);
    rec->s.reduced_motion = reply_bool(e[F_MOTION]);
    rec->s.screen_reader_hints = reply_bool(e[F_SR_HINTS]);
    rec->s.voice_broadcast = reply_bool(e[F_VOICE]);
    rec->s.speech_rate_pct = reply_pct(e[F_SPEECH], FXB_A11Y_SPEECH_RATE_MIN,
                                       FXB_A11Y_SPEECH_RATE_MAX, FXB_A11Y_DEFAULT_PCT);
    rec->s.timeout_pct = reply_pct(e[F_TIMEOUT], FXB_A11Y_TIMEOUT_PCT_MIN, FXB_A11Y_TIMEOUT_PCT_MAX,
                                   FXB_A11Y_DEFAULT_PCT);
    const redisReply *lang = e[F_LANGUAGE];
    if (lang->type == REDIS_REPLY_STRING && lang->len <= FXB_A11Y_LANGUAGE_MAX) {
        const char *canon = fxb_a11y_language(lang->str);
        if (canon != NULL)
            rec->s.language = canon;
    }
    const redisReply *masked = e[F_REL_MASKED];
    if (masked->type == REDIS_REPLY_STRING && masked->len == FXB_PHONE_LEN) {
        memcpy(rec->relative_masked, masked->str, FXB_PHONE_LEN);
        rec->relative_masked[FXB_PHONE_LEN] = '\0';
    }
    return true;
}

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code bad_reply(fxb_ctx *ctx, const char *what)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                        "%s answered in an unexpected shape", what);
}

/* "{u:<caller>}:<suffix>" in the call arena, or NULL after failing the call
 * (the runtime only lets valid ids through; this is belt and braces). */
static const char *caller_key(fxb_ctx *ctx, const char *suffix)
{
    const char *key =
        fxb_key_owned(fxb_ctx_arena(ctx), "u", fxb_ctx_caller(ctx)->account_id, suffix);
    if (key == NULL)
        fxb_ctx_fail(ctx, FXB_INTERNAL, "ACCOUNT_ID_INVALID", ZH_BUSY,
                     "the caller's account id cannot form a key");
    return key;
}

/* The verified birth date (YYYYMMDD) of the caller into birth, "" when
 * unknown. Written by identity verification; a store failure only costs the
 * suggestion, never the settings. */
static void read_birth_date(fxb_ctx *ctx, char birth[16])
{
    birth[0] = '\0';
    const char *key =
        fxb_key_owned(fxb_ctx_arena(ctx), "u", fxb_ctx_caller(ctx)->account_id, "identity");
    if (key == NULL)
        return;
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "HGET %s birth_date", key);
    if (r != NULL && r->type == REDIS_REPLY_STRING && r->len == 8) {
        memcpy(birth, r->str, 8);
        birth[8] = '\0';
    }
    if (r != NULL)
        freeReplyObject(r);
}

/* Fills the response from an HMGET of FIELDS (reply is not freed here). */
static fxb_code respond(fxb_ctx *ctx, const redisReply *reply, const char *what,
                        Fxb__V1__AccessibilitySettings *resp)
{
    a11y_record rec;
    if (!record_from_reply(reply, &rec))
        return bad_reply(ctx, what);
    char birth[16];
    read_birth_date(ctx, birth);
    fxb_arena *a = fxb_ctx_arena(ctx);
    resp->version = rec.version;
    resp->elder_mode = rec.s.elder_mode;
    resp->font_scale_percent = rec.s.font_scale_pct;
    fxb_a11y_derive_dp(rec.s.font_scale_pct, rec.s.elder_mode, &resp->body_text_dp,
                       &resp->largest_text_dp);
    resp->high_contrast = rec.s.high_contrast;
    resp->reduced_motion = rec.s.reduced_motion;
    resp->screen_reader_hints = rec.s.screen_reader_hints;
    resp->voice_broadcast = rec.s.voice_broadcast;
    resp->speech_rate_percent = rec.s.speech_rate_pct;
    resp->timeout_multiplier_percent = rec.s.timeout_pct;
    resp->language = fxb_arena_strdup(a, rec.s.language);
    resp->trusted_relative_masked_phone = fxb_arena_strdup(a, rec.relative_masked);
    resp->elder_mode_suggested = fxb_a11y_elder_suggested(birth, rec.s.elder_mode, fxb_wall_ms());
    resp->updated_at_ms = rec.updated_ms;
    if (resp->language == NULL || resp->trusted_relative_masked_phone == NULL)
        return out_of_memory(ctx);
    return FXB_OK;
}

/* Runs a script over the caller's a11y hash and answers with the settings
 * it returns. */
static fxb_code write_and_respond(fxb_ctx *ctx, fxb_script *script, int nargs, const char **args,
                                  Fxb__V1__AccessibilitySettings *resp)
{
    const char *key = caller_key(ctx, "a11y");
    if (key == NULL)
        return FXB_INTERNAL;
    fxb_err err;
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, script, 1, &key, nargs, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, FXB_A11Y_VERSION_CONFLICT) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", ZH_CONFLICT);
        return fxb_ctx_fail_err(ctx, &err);
    }
    fxb_code rc = respond(ctx, r, script->name, resp);
    freeReplyObject(r);
    return rc;
}

/* --- GetSettings / UpdateSettings --------------------------------------- */

static fxb_code get_settings(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    Fxb__V1__AccessibilitySettings *resp = (Fxb__V1__AccessibilitySettings *)resp_msg;
    const char *key = caller_key(ctx, "a11y");
    if (key == NULL)
        return FXB_INTERNAL;
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "HMGET %s " FIELDS_CMD, key);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_code rc = respond(ctx, r, "HMGET", resp);
    freeReplyObject(r);
    return rc;
}

static fxb_code update_settings(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    const Fxb__V1__UpdateSettingsRequest *req = (const Fxb__V1__UpdateSettingsRequest *)req_msg;
    Fxb__V1__AccessibilitySettings *resp = (Fxb__V1__AccessibilitySettings *)resp_msg;
    const Fxb__V1__AccessibilitySettings *in = req->settings;
    if (in == NULL)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, FXB_A11Y_SETTINGS_REQUIRED, "缺少设置内容",
                            "settings is required");
    /* derived and read-only fields (version, *_dp, trusted relative,
     * elder_mode_suggested, updated_at_ms) are not looked at */
    fxb_a11y_settings s = {
        .elder_mode = in->elder_mode,
        .font_scale_pct = in->font_scale_percent,
        .high_contrast = in->high_contrast,
        .reduced_motion = in->reduced_motion,
        .screen_reader_hints = in->screen_reader_hints,
        .voice_broadcast = in->voice_broadcast,
        .speech_rate_pct = in->speech_rate_percent,
        .timeout_pct = in->timeout_multiplier_percent,
        .language = in->language,
    };
    fxb_err err;
    if (fxb_a11y_validate(&s, &s, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char version[24], now[24], font[12], speech[12], timeout[12];
    snprintf(version, sizeof version, "%" PRIu64, (uint64_t)req->version);
    snprintf(now, sizeof now, "%" PRId64, fxb_wall_ms());
    snprintf(font, sizeof font, "%" PRIu32, s.font_scale_pct);
    snprintf(speech, sizeof speech, "%" PRIu32, s.speech_rate_pct);
    snprintf(timeout, sizeof timeout, "%" PRIu32, s.timeout_pct);
    const char *args[] = {
        version,
        now,
        "elder_mode",
        s.elder_mode ? "1" : "0",
        "font_scale_pct",
        font,
        "high_contrast",
        s.high_contrast ? "1" : "0",
        "reduced_motion",
        s.reduced_motion ? "1" : "0",
        "screen_reader_hints",
        s.screen_reader_hints ? "1" : "0",
        "voice_broadcast",
        s.voice_broadcast ? "1" : "0",
        "speech_rate_pct",
        speech,
        "timeout_pct",
        timeout,
        "language",
        s.language,
    };
    return write_and_respond(ctx, &update_script, (int)(sizeof args / sizeof args[0]), args, resp);
}

/* --- trusted relative --------------------------------------------------- */

static const fxb_auth_deps *deps_or_fail(fxb_ctx *ctx)
{
    const fxb_auth_deps *d = fxb_auth_deps_get();
    if (d == NULL || d->crypto == NULL)
        fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "AUTH_NOT_CONFIGURED", ZH_BUSY,
                     "the authentication service is not configured");
    return d != NULL && d->crypto != NULL ? d : NULL;
}

/* The caller's own number, decrypted, into phone. */
static fxb_code own_phone(fxb_ctx *ctx, const fxb_auth_deps *d, char phone[FXB_PHONE_LEN + 1])
{
    fxb_err err;
    if (fxb_account_phone(fxb_ctx_store(ctx), d->crypto, fxb_ctx_caller(ctx)->account_id,
                          fxb_ctx_arena(ctx), phone, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

/* Refuses when the account already started FXB_A11Y_RELATIVE_STARTS_DAY
 * relatives today: each start sends an SMS to a number of the caller's
 * choosing. */
static fxb_code check_start_quota(fxb_ctx *ctx, const char *counter_key, int64_t now_ms)
{
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "GET %s", counter_key);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    uint64_t n = 0;
    bool over = reply_u64(r, &n) && n >= FXB_A11Y_RELATIVE_STARTS_DAY;
    freeReplyObject(r);
    if (!over)
        return FXB_OK;
    int64_t next_day = ((now_ms + UTC8_MS) / DAY_MS + 1) * DAY_MS - UTC8_MS;
    fxb_err_set(&err, FXB_RESOURCE_EXHAUSTED, FXB_A11Y_RELATIVE_DAILY_LIMIT,
                "今日添加亲属次数已达上限，请明天再试",
                "at most %d trusted-relative verifications per day", FXB_A11Y_RELATIVE_STARTS_DAY);
    err.retry_after_ms = next_day - now_ms;
    return fxb_ctx_fail_err(ctx, &err);
}

static fxb_code start_relative(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__StartTrustedRelativeRequest *req =
        (const Fxb__V1__StartTrustedRelativeRequest *)req_msg;
    Fxb__V1__StartTrustedRelativeResponse *resp = (Fxb__V1__StartTrustedRelativeResponse *)resp_msg;
    const fxb_auth_deps *d = deps_or_fail(ctx);
    if (d == NULL)
        return FXB_UNAVAILABLE;
    const char *id = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1], self[FXB_PHONE_LEN + 1];
    if (fxb_phone_normalize(req->relative_phone, phone, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_code rc = own_phone(ctx, d, self);
    if (rc != FXB_OK)
        return rc;
    bool is_self = strcmp(phone, self) == 0;
    memset(self, 0, sizeof self);
    if (is_self)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, FXB_A11Y_RELATIVE_IS_SELF,
                            "亲属手机号不能是本人的手机号",
                            "relative_phone is the account's own number");
    if (d->sms == NULL)
        return fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "SMS_NOT_CONFIGURED", "短信服务暂不可用",
                            "no SMS sender is configured on this server");
    int64_t now = fxb_wall_ms();
    const char *key = caller_key(ctx, "a11y");
    const char *counter =
        fxb_arena_printf(a, "a11y:relstarts:%lld", (long long)((now + UTC8_MS) / DAY_MS));
    counter = counter ? fxb_key_owned(a, "u", id, counter) : NULL;
    if (key == NULL)
        return FXB_INTERNAL;
    if (counter == NULL)
        return out_of_memory(ctx);
    rc = check_start_quota(ctx, counter, now);
    if (rc != FXB_OK)
        return rc;
    char ip[FXB_PEER_IP_MAX];
    if (!fxb_peer_ip(fxb_ctx_peer(ctx), ip))
        snprintf(ip, sizeof ip, "unknown");
    int pct = fxb_auth_timeout_pct(st, id);
    char code[FXB_OTP_DIGITS + 1];
    int64_t expires = 0, resend = 0;
    if (fxb_otp_issue(st, &d->otp, phone, ip, FXB_OTP_VERIFY_RELATIVE, pct, now, code, &expires,
                      &resend, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char *sealed = NULL;
    char exp_text[24], ttl[16];
    snprintf(exp_text, sizeof exp_text, "%" PRId64, expires);
    snprintf(ttl, sizeof ttl, "%lld", 2 * DAY_MS / 1000);
    char text[256];
    text[0] = '\0';
    if (fxb_crypto_seal(d->crypto, LABEL_PENDING, id, (const uint8_t *)phone, FXB_PHONE_LEN, a,
                        &sealed, &err) != FXB_OK) {
        rc = fxb_ctx_fail_err(ctx, &err);
    } else {
        const char *keys[] = {key, counter};
        const char *args[] = {sealed, exp_text, ttl};
        redisReply *r = fxb_store_eval(st, &err, &start_script, 2, keys, 3, args, NULL);
        if (r == NULL)
            rc = fxb_ctx_fail_err(ctx, &err);
        else
            freeReplyObject(r);
    }
    if (rc == FXB_OK &&
        !fxb_otp_sms_text(FXB_OTP_VERIFY_RELATIVE, code, expires - now, text, sizeof text))
        rc = fxb_ctx_fail(ctx, FXB_INTERNAL, "SMS_TEXT_FAILED", ZH_BUSY, "cannot build the SMS");
    if (rc == FXB_OK && fxb_sms_send(d->sms, phone, text, &err) != FXB_OK)
        rc = fxb_ctx_fail_err(ctx, &err);
    memset(code, 0, sizeof code);
    memset(text, 0, sizeof text);
    if (rc != FXB_OK)
        return rc;
    char masked[FXB_PHONE_LEN + 1];
    fxb_phone_mask(phone, masked);
    resp->masked_phone = fxb_arena_strdup(a, masked);
    resp->expires_at_ms = expires;
    if (resp->masked_phone == NULL)
        return out_of_memory(ctx);
    return FXB_OK;
}

static fxb_code no_pending(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_FAILED_PRECONDITION, FXB_A11Y_NO_PENDING_RELATIVE,
                        "请先获取亲属手机验证码",
                        "no trusted relative is being added: call StartTrustedRelative first");
}

static fxb_code confirm_relative(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ConfirmTrustedRelativeRequest *req =
        (const Fxb__V1__ConfirmTrustedRelativeRequest *)req_msg;
    Fxb__V1__AccessibilitySettings *resp = (Fxb__V1__AccessibilitySettings *)resp_msg;
    const fxb_auth_deps *d = deps_or_fail(ctx);
    if (d == NULL)
        return FXB_UNAVAILABLE;
    const char *id = fxb_ctx_caller(ctx)->account_id;
    fxb_store *st = fxb_ctx_store(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *key = caller_key(ctx, "a11y");
    if (key == NULL)
        return FXB_INTERNAL;
    fxb_err err;
    redisReply *r = fxb_store_command(st, &err,
                                      "HMGET %s relative_pending_enc "
                                      "relative_pending_exp_ms",
                                      key);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return bad_reply(ctx, "HMGET");
    }
    const redisReply *enc = r->element[0];
    uint64_t exp = 0;
    bool have = enc->type == REDIS_REPLY_STRING && enc->len > 0 &&
                enc->len <= FXB_CRYPTO_SEALED_MAX && reply_u64(r->element[1], &exp);
    char *pending = have ? fxb_arena_strndup(a, enc->str, enc->len) : NULL;
    freeReplyObject(r);
    if (!have)
        return no_pending(ctx);
    if (pending == NULL)
        return out_of_memory(ctx);
    int64_t now = fxb_wall_ms();
    /* past its code's validity: the code is gone too, whatever was typed */
    if ((uint64_t)now > exp)
        return fxb_ctx_fail(ctx, FXB_UNAUTHENTICATED, FXB_OTP_CODE_EXPIRED,
                            "验证码已过期，请重新获取",
                            "the relative's code expired: call StartTrustedRelative again");
    uint8_t *pt = NULL;
    size_t len = 0;
    if (fxb_crypto_open(d->crypto, LABEL_PENDING, id, pending, a, &pt, &len, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char phone[FXB_PHONE_LEN + 1];
    bool ok = len == FXB_PHONE_LEN && fxb_phone_valid((const char *)pt);
    if (ok)
        memcpy(phone, pt, FXB_PHONE_LEN + 1);
    memset(pt, 0, len);
    if (!ok)
        return fxb_ctx_fail(ctx, FXB_DATA_LOSS, "PHONE_CORRUPT", ZH_BUSY,
                            "stored pending phone invalid");
    if (fxb_otp_verify(st, &d->otp, phone, FXB_OTP_VERIFY_RELATIVE, req->code, now, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char *sealed = NULL;
    char masked[FXB_PHONE_LEN + 1], now_text[24];
    fxb_phone_mask(phone, masked);
    fxb_code rc = fxb_crypto_seal(d->crypto, LABEL_RELATIVE, id, (const uint8_t *)phone,
                                  FXB_PHONE_LEN, a, &sealed, &err);
    memset(phone, 0, sizeof phone);
    if (rc != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    snprintf(now_text, sizeof now_text, "%" PRId64, now);
    const char *args[] = {sealed, masked, pending, now_text};
    return write_and_respond(ctx, &confirm_script, 4, args, resp);
}

static fxb_code remove_relative(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    Fxb__V1__AccessibilitySettings *resp = (Fxb__V1__AccessibilitySettings *)resp_msg;
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, fxb_wall_ms());
    const char *args[] = {now};
    return write_and_respond(ctx, &remove_script, 1, args, resp);
}

/* --- method table ------------------------------------------------------- */

/* Every method acts on the caller's own account only: signed in at any
 * level, never through a proxy's delegated token. */
#define OWN_ACCOUNT                                                                                \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .min_level = 0, .delegable = false                           \
    }

static const fxb_method methods[] = {
    {.path = "/fxb.v1.AccessibilityService/GetSettings",
     .request = &fxb__v1__get_settings_request__descriptor,
     .response = &fxb__v1__accessibility_settings__descriptor,
     .unary = get_settings,
     .access = OWN_ACCOUNT,
     .limits = {.max_request_bytes = 256}},
    {.path = "/fxb.v1.AccessibilityService/UpdateSettings",
     .request = &fxb__v1__update_settings_request__descriptor,
     .response = &fxb__v1__accessibility_settings__descriptor,
     .unary = update_settings,
     .access = OWN_ACCOUNT,
     .limits = {.max_request_bytes = 1024}},
    {.path = "/fxb.v1.AccessibilityService/StartTrustedRelative",
     .request = &fxb__v1__start_trusted_relative_request__descriptor,
     .response = &fxb__v1__start_trusted_relative_response__descriptor,
     .unary = start_relative,
     .access = {.kind = FXB_ACCESS_SIGNED_IN,
                .min_level = 0,
                .delegable = false,
                .step_up_s = FXB_STEP_UP_WINDOW_S},
     .limits = {.max_request_bytes = 256}},
    {.path = "/fxb.v1.AccessibilityService/ConfirmTrustedRelative",
     .request = &fxb__v1__confirm_trusted_relative_request__descriptor,
     .response = &fxb__v1__accessibility_settings__descriptor,
     .unary = confirm_relative,
     .access = OWN_ACCOUNT,
     .limits = {.max_request_bytes = 256}},
    {.path = "/fxb.v1.AccessibilityService/RemoveTrustedRelative",
     .request = &fxb__v1__remove_trusted_relative_request__descriptor,
     .response = &fxb__v1__accessibility_settings__descriptor,
     .unary = remove_relative,
     .access = OWN_ACCOUNT,
     .limits = {.max_request_bytes = 256}},
};

const fxb_service fxb_accessibility_service = {
    .name = "fxb.v1.AccessibilityService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
