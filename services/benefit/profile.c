/* Profiles: records from department feeds checked against the schema and
 * applied one subject at a time (one script per subject: compare, write
 * what changed with its provenance, bump _rev), the change feed the
 * matching engine follows, the per-process schema cache, and
 * ProfileService. The key schema is in profile.h.
 *
 * A record is prepared first (validated, the subject derived, the script's
 * arguments built) and applied after, so that fxb-admin can pipeline many
 * prepared records per round trip (fxb_profile_apply_batch) while the RPC
 * applies each record as it arrives. ID numbers and credit codes exist
 * here only long enough to be checked and turned into a blind index: they
 * are never stored, logged or echoed in a rejection. */
#include "services/benefit/profile.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth/idnumber.h"
#include "auth/uscc.h"
#include "services/enterprise/enterprise.h"
#include "services/identity/identity.h"
#include "store/keys.h"

/* The identity service's label for the ID number's blind index
 * (services/identity/identity.c LABEL_ID): the same label makes an
 * account's verified identity lead to its person subject. */
#define LABEL_ID_NUMBER "id_number"

#define KEY_SCHEMA      "fxb:profile:schema"
#define KEY_SCHEMA_REV  "fxb:profile:schema:rev"
#define KEY_CHANGES     "fxb:profile:changes"
#define CHANGES_MAXLEN  "1000000"
#define SUBJECT_HEX     24
#define SET_SEP         '\x1f'
#define SCHEMA_ERRS_CAP 2048
#define RECORD_ARENA    (1024u * 1024u) /* scratch of one streamed record */

#define ZH_BUSY     "系统繁忙，请稍后重试"
#define ZH_REJECTED "数据未通过校验"

static fxb_profile_deps deps;

void fxb_profile_service_init(const fxb_profile_deps *d)
{
    deps = *d;
}

/* --- the apply script ---------------------------------------------------- */

/* KEYS[1] the subject's profile hash; ARGV[1] now_ms, ARGV[2] the number of
 * attributes set, then per attribute name, stored text, source; then the
 * names to clear. Writes only what differs (with "@<name>" = "<source>
 * <now_ms>"); returns the new _rev when anything changed, else 0. */
static fxb_script apply_script = FXB_SCRIPT(
    "profile_apply", "local now = ARGV[1]\n"
                     "local nset = tonumber(ARGV[2])\n"
                     "local changed = false\n"
                     "local i = 3\n"
                     "for _ = 1, nset do\n"
                     "  local name, val = ARGV[i], ARGV[i + 1]\n"
                     "  if redis.call('HGET', KEYS[1], name) ~= val then\n"
                     "    redis.call('HSET', KEYS[1], name, val, '@' .. name,\n"
                     "               ARGV[i + 2] .. ' ' .. now)\n"
                     "    changed = true\n"
                     "  end\n"
                     "  i = i + 3\n"
                     "end\n"
                     "for k = i, #ARGV do\n"
                     "  if redis.call('HDEL', KEYS[1], ARGV[k], '@' .. ARGV[k]) > 0 then\n"
                     "    changed = true\n"
                     "  end\n"
                     "end\n"
                     "if not changed then return 0 end\n"
                     "redis.call('HSET', KEYS[1], '_updated_at_ms', now)\n"
                     "return redis.call('HINCRBY', KEYS[1], '_rev', 1)\n");

/* KEYS[1] schema, KEYS[2] rev; ARGV[1] the JSON. {changed, rev}. */
static fxb_script schema_script =
    FXB_SCRIPT("profile_schema_store", "local rev = redis.call('GET', KEYS[2])\n"
                                       "if rev and redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                       "  return {0, tonumber(rev)}\n"
                                       "end\n"
                                       "redis.call('SET', KEYS[1], ARGV[1])\n"
                                       "return {1, redis.call('INCR', KEYS[2])}\n");

/* --- subjects ------------------------------------------------------------- */

static const char *type_text(fxb_subject_type t)
{
    return t == FXB_SUBJECT_PERSON ? "person" : "enterprise";
}

fxb_code fxb_profile_person_id(const fxb_crypto *c, const char *id_number,
                               char out[FXB_PROFILE_SUBJECT_LEN + 1], fxb_err *err)
{
    out[0] = '\0';
    fxb_idnumber num;
    if (fxb_idnumber_check(id_number, fxb_idv_today(fxb_wall_ms()), &num, err) != FXB_OK)
        return err->code;
    char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    fxb_code rc = fxb_crypto_index(c, LABEL_ID_NUMBER, num.id, idx, err);
    if (rc != FXB_OK)
        return rc;
    out[0] = 'p';
    memcpy(out + 1, idx, SUBJECT_HEX);
    out[FXB_PROFILE_SUBJECT_LEN] = '\0';
    return FXB_OK;
}

fxb_code fxb_profile_person_of_account(fxb_store *s, const char *account_id,
                                       char out[FXB_PROFILE_SUBJECT_LEN + 1], fxb_err *err)
{
    out[0] = '\0';
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *ikey = fxb_key_owned(&a, "u", account_id, "identity");
    if (ikey == NULL) {
        fxb_arena_free(&a);
        return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                           "an account id cannot form a key");
    }
    redisReply *r = fxb_store_command(s, err, "HGET %s id_idx", ikey);
    fxb_arena_free(&a);
    if (r == NULL)
        return err->code;
    bool found = r->type == REDIS_REPLY_STRING && r->len == FXB_CRYPTO_INDEX_HEX_LEN;
    if (found) {
        out[0] = 'p';
        memcpy(out + 1, r->str, SUBJECT_HEX);
        out[FXB_PROFILE_SUBJECT_LEN] = '\0';
    }
    freeReplyObject(r);
    if (!found)
        return fxb_err_set(err, FXB_NOT_FOUND, "IDENTITY_NOT_VERIFIED", "本账号尚未完成实名认证",
                           "this account has no verified identity");
    return FXB_OK;
}

/* "p" / "e" + 24 lower-case hex digits. */
static bool subject_valid(const char *s, char tag)
{
    if (s == NULL || s[0] != tag || strlen(s) != FXB_PROFILE_SUBJECT_LEN)
        return false;
    for (size_t i = 1; i < FXB_PROFILE_SUBJECT_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static char *profile_key(fxb_arena *a, const char *subject)
{
    char tag[2] = {subject[0], '\0'};
    return fxb_key_owned(a, tag, subject, "profile");
}

/* --- values --------------------------------------------------------------- */

/* Characters of well-formed UTF-8 without controls (U+001F, the set
 * separator, is one), or -1. */
static long text_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    long n = 0;
    for (size_t i = 0; i < len; n++) {
        unsigned c = p[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) {
            cp = c;
            k = 1;
        } else if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F;
            k = 2;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F;
            k = 3;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07;
            k = 4;
        } else {
            return -1;
        }
        if (i + k > len)
            return -1;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0x20 ||
            (cp >= 0x7F && cp <= 0x9F))
            return -1;
        i += k;
    }
    return n;
}

/* "YYYY-MM-DD", a real date in years 1000..9999 -> yyyymmdd; 0 otherwise. */
static int64_t parse_date(const char *s)
{
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    int64_t v = 0;
    for (size_t i = 0; i < 10; i++) {
        if (i == 4 || i == 7)
            continue;
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 10000101 || !fxb_idnumber_date_valid(v))
        return 0;
    return v;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static const char *case_name(Fxb__V1__AttributeValue__ValueCase c)
{
    switch (c) {
    case FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE:
        return "int_value";
    case FXB__V1__ATTRIBUTE_VALUE__VALUE_BOOL_VALUE:
        return "bool_value";
    case FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE:
        return "text_value";
    case FXB__V1__ATTRIBUTE_VALUE__VALUE_SET_VALUE:
        return "set_value";
    default:
        return "value";
    }
}

static Fxb__V1__AttributeValue__ValueCase case_of(fxb_attr_type t)
{
    switch (t) {
    case FXB_ATTR_INT:
        return FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE;
    case FXB_ATTR_BOOL:
        return FXB__V1__ATTRIBUTE_VALUE__VALUE_BOOL_VALUE;
    case FXB_ATTR_ENUM:
    case FXB_ATTR_DATE:
        return FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE;
    default:
        return FXB__V1__ATTRIBUTE_VALUE__VALUE_SET_VALUE;
    }
}

/* --- preparing a record ----------------------------------------------------- */

static fxb_code reject(Fxb__V1__RejectedRecord *rej, fxb_arena *a, fxb_err *err, fxb_code code,
                       const char *field, const char *reason, const char *message)
{
    if (rej != NULL) {
        rej->field = fxb_arena_strdup(a, field);
        rej->reason = fxb_arena_strdup(a, reason);
        rej->message = fxb_arena_strdup(a, message);
        if (rej->field == NULL || rej->reason == NULL || rej->message == NULL) {
            rej->field = rej->reason = rej->message = (char *)"";
            return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                               "out of memory checking a record");
        }
    }
    return fxb_err_set(err, code, reason, ZH_REJECTED, "%s: %s", field, message);
}

static fxb_code oom(Fxb__V1__RejectedRecord *rej, fxb_err *err)
{
    if (rej != NULL)
        rej->field = rej->reason = rej->message = (char *)"";
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                       "out of memory checking a record");
}

/* Finds and checks the attribute a value or a clear names: known for the
 * subject type, not derived, fed by dept (NULL: any), not repeated. */
static fxb_code check_attr(const fxb_schema *schema, fxb_subject_type type, const char *dept,
                           const char *name, const char *field, bool *seen, const fxb_attr **out,
                           Fxb__V1__RejectedRecord *rej, fxb_arena *a, fxb_err *err)
{
    const fxb_attr *attr = fxb_schema_find(schema, type, name);
    char msg[160];
    if (attr == NULL) {
        snprintf(msg, sizeof msg, "no %s attribute of that name in the schema", type_text(type));
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "ATTRIBUTE_UNKNOWN", msg);
    }
    if (attr->derived) {
        snprintf(msg, sizeof msg, "%s is derived and cannot be fed", attr->name);
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "ATTRIBUTE_DERIVED", msg);
    }
    if (dept != NULL && strcmp(attr->source, dept) != 0) {
        snprintf(msg, sizeof msg, "%s is fed by %s, not by the caller's department", attr->name,
                 attr->source);
        return reject(rej, a, err, FXB_PERMISSION_DENIED, field, "SOURCE_MISMATCH", msg);
    }
    size_t k = (size_t)(attr - schema->attrs);
    if (seen[k]) {
        snprintf(msg, sizeof msg, "%s is named more than once in the record", attr->name);
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "ATTRIBUTE_REPEATED", msg);
    }
    seen[k] = true;
    *out = attr;
    return FXB_OK;
}

/* The stored text of value v for attr, or a rejection. */
static fxb_code stored_text(const fxb_attr *attr, const Fxb__V1__AttributeValue *v, size_t i,
                            const char **out, size_t *out_len, Fxb__V1__RejectedRecord *rej,
                            fxb_arena *a, fxb_err *err)
{
    char field[96], msg[160];
    if (v->value_case == FXB__V1__ATTRIBUTE_VALUE__VALUE__NOT_SET) {
        snprintf(field, sizeof field, "values[%zu]", i);
        snprintf(msg, sizeof msg, "%s has no value (to remove it, name it in clear)", attr->name);
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "VALUE_MISSING", msg);
    }
    snprintf(field, sizeof field, "values[%zu].%s", i, case_name(v->value_case));
    if (v->value_case != case_of(attr->type)) {
        static const char *const want[] = {"",
                                           "int_value",
                                           "bool_value",
                                           "text_value (enum)",
                                           "text_value (date YYYY-MM-DD)",
                                           "set_value"};
        snprintf(msg, sizeof msg, "%s takes %s", attr->name, want[attr->type]);
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "TYPE_MISMATCH", msg);
    }
    char *text = NULL;
    switch (attr->type) {
    case FXB_ATTR_INT:
        if (v->int_value < attr->min || v->int_value > attr->max) {
            snprintf(msg, sizeof msg, "%s must be within %" PRId64 "..%" PRId64, attr->name,
                     attr->min, attr->max);
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "OUT_OF_RANGE", msg);
        }
        text = fxb_arena_printf(a, "%" PRId64, v->int_value);
        break;
    case FXB_ATTR_BOOL:
        text = fxb_arena_strdup(a, v->bool_value ? "1" : "0");
        break;
    case FXB_ATTR_ENUM:
        if (fxb_schema_enum_index(attr, v->text_value) < 0) {
            snprintf(msg, sizeof msg, "not one of the %zu values of %s in the schema",
                     attr->n_values, attr->name);
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "ENUM_VALUE_UNKNOWN", msg);
        }
        text = fxb_arena_strdup(a, v->text_value);
        break;
    case FXB_ATTR_DATE: {
        int64_t d = parse_date(v->text_value);
        if (d == 0) {
            snprintf(msg, sizeof msg, "%s must be a real date written YYYY-MM-DD", attr->name);
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "DATE_INVALID", msg);
        }
        text = fxb_arena_printf(a, "%08" PRId64, d);
        break;
    }
    case FXB_ATTR_SET: {
        const Fxb__V1__StringSet *set = v->set_value;
        size_t n = set != NULL ? set->n_members : 0;
        if (n > FXB_SET_MEMBERS_MAX) {
            snprintf(msg, sizeof msg, "%s holds at most %d members", attr->name,
                     FXB_SET_MEMBERS_MAX);
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "TOO_MANY_MEMBERS", msg);
        }
        const char **m = fxb_arena_calloc(a, n ? n : 1, sizeof *m);
        if (m == NULL)
            return oom(rej, err);
        size_t total = 0;
        for (size_t k = 0; k < n; k++) {
            long chars = text_chars(set->members[k]);
            if (chars < 1 || chars > FXB_ATTR_TEXT_MAX) {
                snprintf(field, sizeof field, "values[%zu].set_value.members[%zu]", i, k);
                snprintf(msg, sizeof msg,
                         "a member must be 1..%d characters of UTF-8 without control characters",
                         FXB_ATTR_TEXT_MAX);
                return reject(rej, a, err, FXB_INVALID_ARGUMENT, field, "MEMBER_INVALID", msg);
            }
            m[k] = set->members[k];
            total += strlen(m[k]) + 1;
        }
        if (n > 1)
            qsort(m, n, sizeof *m, cmp_str);
        text = fxb_arena_alloc(a, total + 1);
        if (text == NULL)
            return oom(rej, err);
        size_t len = 0;
        for (size_t k = 0; k < n; k++) {
            if (k > 0 && strcmp(m[k], m[k - 1]) == 0)
                continue;
            if (len > 0)
                text[len++] = SET_SEP;
            size_t l = strlen(m[k]);
            memcpy(text + len, m[k], l);
            len += l;
        }
        text[len] = '\0';
        break;
    }
    }
    if (text == NULL)
        return oom(rej, err);
    *out = text;
    *out_len = strlen(text);
    return FXB_OK;
}

/* Validates rec for dept (NULL: admin, any source) and fills *w. A refusal
 * returns INVALID_ARGUMENT or PERMISSION_DENIED with rej's field, reason
 * and message set (in a); any other failure leaves rej->reason "". */
fxb_code fxb_profile_prepare(const fxb_crypto *c, const fxb_schema *schema, const char *dept,
                             const Fxb__V1__ProfileRecord *rec, int64_t now_ms,
                             fxb_profile_write *w, Fxb__V1__RejectedRecord *rej, fxb_arena *a,
                             fxb_err *err)
{
    memset(w, 0, sizeof *w);
    if (rej != NULL)
        rej->field = rej->reason = rej->message = (char *)"";
    fxb_subject_type type;
    const char *subject_field;
    if (rec->subject_type == FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON) {
        type = FXB_SUBJECT_PERSON;
        subject_field = "id_number";
    } else if (rec->subject_type == FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE) {
        type = FXB_SUBJECT_ENTERPRISE;
        subject_field = "credit_code";
    } else {
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, "subject_type", "SUBJECT_TYPE_INVALID",
                      "subject_type must be person or enterprise");
    }
    /* the subject: checked here, turned into its id only once all is valid */
    fxb_idnumber num;
    char code[FXB_USCC_LEN + 1];
    fxb_err e2;
    if (type == FXB_SUBJECT_PERSON) {
        if (rec->subject_case != FXB__V1__PROFILE_RECORD__SUBJECT_ID_NUMBER)
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, subject_field, "ID_NUMBER_REQUIRED",
                          "a person record names its subject by id_number");
        if (fxb_idnumber_check(rec->id_number, fxb_idv_today(now_ms), &num, &e2) != FXB_OK)
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, subject_field, e2.reason,
                          "not a valid resident ID number (GB 11643)");
    } else {
        if (rec->subject_case != FXB__V1__PROFILE_RECORD__SUBJECT_CREDIT_CODE)
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, subject_field, "CREDIT_CODE_REQUIRED",
                          "an enterprise record names its subject by credit_code");
        size_t n = strnlen(rec->credit_code, FXB_USCC_LEN + 1);
        for (size_t i = 0; i < n && i < FXB_USCC_LEN; i++) {
            char ch = rec->credit_code[i];
            code[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
        }
        code[n > FXB_USCC_LEN ? FXB_USCC_LEN : n] = '\0';
        if (n > FXB_USCC_LEN || fxb_uscc_check(code, &e2) != FXB_OK)
            return reject(rej, a, err, FXB_INVALID_ARGUMENT, subject_field,
                          n > FXB_USCC_LEN ? "USCC_FORMAT" : e2.reason,
                          "not a valid unified social credit code (GB 32100)");
    }
    if (rec->n_values > FXB_ATTR_MAX)
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, "values", "TOO_MANY_VALUES",
                      "a record sets at most 64 attributes");
    if (rec->n_clear > FXB_ATTR_MAX)
        return reject(rej, a, err, FXB_INVALID_ARGUMENT, "clear", "TOO_MANY_CLEARS",
                      "a record clears at most 64 attributes");

    bool *seen = fxb_arena_calloc(a, schema->n_attrs ? schema->n_attrs : 1, sizeof *seen);
    size_t nargs = 2 + 3 * rec->n_values + rec->n_clear;
    const char **argv = fxb_arena_calloc(a, 4 + nargs, sizeof *argv);
    size_t *lens = fxb_arena_calloc(a, 4 + nargs, sizeof *lens);
    char *now_txt = fxb_arena_printf(a, "%" PRId64, now_ms);
    char *nset_txt = fxb_arena_printf(a, "%zu", rec->n_values);
    if (seen == NULL || argv == NULL || lens == NULL || now_txt == NULL || nset_txt == NULL)
        return oom(rej, err);
    size_t k = 4;
    argv[k] = now_txt;
    lens[k++] = strlen(now_txt);
    argv[k] = nset_txt;
    lens[k++] = strlen(nset_txt);
    for (size_t i = 0; i < rec->n_values; i++) {
        const Fxb__V1__AttributeValue *v = rec->values[i];
        char field[48];
        snprintf(field, sizeof field, "values[%zu].name", i);
        const fxb_attr *attr;
        fxb_code rc = check_attr(schema, type, dept, v->name, field, seen, &attr, rej, a, err);
        if (rc != FXB_OK)
            return rc;
        rc = stored_text(attr, v, i, &argv[k + 1], &lens[k + 1], rej, a, err);
        if (rc != FXB_OK)
            return rc;
        argv[k] = attr->name;
        lens[k] = strlen(attr->name);
        argv[k + 2] = dept != NULL ? dept : attr->source;
        lens[k + 2] = strlen(argv[k + 2]);
        k += 3;
    }
    for (size_t i = 0; i < rec->n_clear; i++) {
        char field[32];
        snprintf(field, sizeof field, "clear[%zu]", i);
        const fxb_attr *attr;
        fxb_code rc =
            check_attr(schema, type, dept, rec->clear[i], field, seen, &attr, rej, a, err);
        if (rc != FXB_OK)
            return rc;
        argv[k] = attr->name;
        lens[k++] = strlen(attr->name);
    }

    fxb_code rc;
    if (type == FXB_SUBJECT_PERSON) {
        char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
        rc = fxb_crypto_index(c, LABEL_ID_NUMBER, num.id, idx, err);
        if (rc == FXB_OK) {
            w->subject[0] = 'p';
            memcpy(w->subject + 1, idx, SUBJECT_HEX);
            w->subject[FXB_PROFILE_SUBJECT_LEN] = '\0';
        }
        OPENSSL_cleanse(&num, sizeof num);
    } else {
        rc = fxb_enterprise_id(c, code, w->subject, err);
    }
    if (rc != FXB_OK)
        return rc;
    w->type = type;
    w->key = profile_key(a, w->subject);
    if (w->key == NULL)
        return oom(rej, err);
    argv[3] = w->key;
    lens[3] = strlen(w->key);
    w->nargs = nargs;
    w->argv = argv;
    w->argvlen = lens;
    return FXB_OK;
}

/* --- applying ------------------------------------------------------------------ */

static fxb_code unexpected(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                       "%s answered in an unexpected shape", what);
}

static void xadd_argv(const fxb_profile_write *w, char rev[24], const char *argv[12],
                      size_t lens[12])
{
    snprintf(rev, 24, "%" PRId64, w->rev);
    const char *v[12] = {"XADD", KEY_CHANGES, "MAXLEN",   "~",    CHANGES_MAXLEN,
                         "*",    "subject",   w->subject, "type", type_text(w->type),
                         "rev",  rev};
    for (size_t i = 0; i < 12; i++) {
        argv[i] = v[i];
        lens[i] = strlen(v[i]);
    }
}

static fxb_code apply_one(fxb_store *s, fxb_profile_write *w, fxb_err *err)
{
    redisReply *r = fxb_store_eval(s, err, &apply_script, 1, &w->key, (int)w->nargs, w->argv + 4,
                                   w->argvlen + 4);
    if (r == NULL)
        return err->code;
    bool ok = r->type == REDIS_REPLY_INTEGER && r->integer >= 0;
    w->rev = ok ? r->integer : 0;
    freeReplyObject(r);
    if (!ok)
        return unexpected(err, "the profile apply script");
    w->changed = w->rev > 0;
    return FXB_OK;
}

static char apply_sha[41];
static pthread_once_t apply_sha_once = PTHREAD_ONCE_INIT;

static void compute_apply_sha(void)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(apply_script.source, strlen(apply_script.source), md, &n, EVP_sha1(), NULL) !=
            1 ||
        n != 20)
        return;
    for (unsigned i = 0; i < 20; i++)
        snprintf(apply_sha + 2 * i, 3, "%02x", md[i]);
}

/* Applies n prepared records in two pipelined round trips: every apply
 * script, then an XADD to the change feed for each record that changed.
 * A record the script cache lost (NOSCRIPT) is run again by itself. */
fxb_code fxb_profile_apply_batch(fxb_store *s, fxb_profile_write *w, size_t n, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    pthread_once(&apply_sha_once, compute_apply_sha);
    if (apply_sha[0] == '\0')
        return fxb_err_set(err, FXB_INTERNAL, "CRYPTO_FAILED", ZH_BUSY, "cannot hash a script");
    fxb_store_cmd *cmds = calloc(n, sizeof *cmds);
    redisReply **replies = calloc(n, sizeof *replies);
    char(*revs)[24] = calloc(n, sizeof *revs);
    const char **xa = calloc(12 * n, sizeof *xa);
    size_t *xl = calloc(12 * n, sizeof *xl);
    fxb_code rc = FXB_OK;
    if (cmds == NULL || replies == NULL || revs == NULL || xa == NULL || xl == NULL) {
        rc = fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                         "out of memory applying profiles");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        w[i].argv[0] = "EVALSHA";
        w[i].argvlen[0] = 7;
        w[i].argv[1] = apply_sha;
        w[i].argvlen[1] = 40;
        w[i].argv[2] = "1";
        w[i].argvlen[2] = 1;
        cmds[i] = (fxb_store_cmd){
            .argc = (int)(4 + w[i].nargs), .argv = w[i].argv, .argvlen = w[i].argvlen};
    }
    rc = fxb_store_pipeline(s, err, n, cmds, replies);
    if (rc != FXB_OK)
        goto done;
    for (size_t i = 0; i < n && rc == FXB_OK; i++) {
        redisReply *r = replies[i];
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            rc = apply_one(s, &w[i], err);
        } else if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
            w[i].rev = r->integer;
            w[i].changed = r->integer > 0;
        } else {
            rc = unexpected(err, "the profile apply script");
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
    if (rc != FXB_OK)
        goto done;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!w[i].changed)
            continue;
        xadd_argv(&w[i], revs[m], xa + 12 * m, xl + 12 * m);
        cmds[m] = (fxb_store_cmd){.argc = 12, .argv = xa + 12 * m, .argvlen = xl + 12 * m};
        m++;
    }
    if (m > 0) {
        rc = fxb_store_pipeline(s, err, m, cmds, replies);
        for (size_t i = 0; i < m; i++) {
            if (rc == FXB_OK && replies[i]->type == REDIS_REPLY_ERROR)
                rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                                 "XADD to the profile change feed failed");
            if (replies[i] != NULL)
                freeReplyObject(replies[i]);
        }
    }
done:
    free(cmds);
    free(replies);
    free(revs);
    free(xa);
    free(xl);
    return rc;
}

fxb_code fxb_profile_upsert(fxb_store *s, const fxb_crypto *c, const fxb_schema *schema,
                            const char *dept, const Fxb__V1__ProfileRecord *rec, int64_t now_ms,
                            bool *changed, Fxb__V1__RejectedRecord *rej, fxb_arena *a, fxb_err *err)
{
    *changed = false;
    fxb_profile_write w;
    fxb_code rc = fxb_profile_prepare(c, schema, dept, rec, now_ms, &w, rej, a, err);
    if (rc != FXB_OK)
        return rc;
    rc = apply_one(s, &w, err);
    if (rc != FXB_OK || !w.changed)
        return rc;
    char rev[24];
    const char *argv[12];
    size_t lens[12];
    xadd_argv(&w, rev, argv, lens);
    redisReply *r = fxb_store_commandv(s, err, 12, argv, lens);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    *changed = true;
    return FXB_OK;
}

/* --- the schema cache ------------------------------------------------------------ */

/* Every schema handed out and not yet released, the current one holding
 * one extra reference for the cache itself. A reload replaces the current
 * one; the old one is freed when its last holder releases it. */
typedef struct cached {
    fxb_schema *schema;
    unsigned refs;
    struct cached *next;
} cached;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cached *cache_current;
static cached *cache_live;

/* Drops one reference (cache_mu held); frees the schema at zero. */
static void unref_locked(cached *e)
{
    if (--e->refs > 0)
        return;
    for (cached **p = &cache_live; *p != NULL; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            break;
        }
    fxb_schema_free(e->schema);
    free(e);
}

static fxb_code schema_missing(fxb_err *err)
{
    return fxb_err_set(err, FXB_NOT_FOUND, "SCHEMA_MISSING", "属性目录尚未导入",
                       "no profile schema was imported (fxb-admin profile schema import)");
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

fxb_code fxb_profile_schema_acquire(fxb_store *s, const fxb_schema **out, fxb_err *err)
{
    *out = NULL;
    redisReply *r = fxb_store_command(s, err, "GET " KEY_SCHEMA_REV);
    if (r == NULL)
        return err->code;
    int64_t rev = 0;
    bool have = r->type == REDIS_REPLY_STRING && parse_i64(r->str, &rev);
    freeReplyObject(r);
    if (!have)
        return schema_missing(err);
    pthread_mutex_lock(&cache_mu);
    if (cache_current != NULL && cache_current->schema->rev == rev) {
        cache_current->refs++;
        *out = cache_current->schema;
        pthread_mutex_unlock(&cache_mu);
        return FXB_OK;
    }
    pthread_mutex_unlock(&cache_mu);

    r = fxb_store_command(s, err, "MGET " KEY_SCHEMA " " KEY_SCHEMA_REV);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return unexpected(err, "MGET");
    }
    if (r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        !parse_i64(r->element[1]->str, &rev)) {
        freeReplyObject(r);
        return schema_missing(err);
    }
    fxb_schema *schema;
    char errs[SCHEMA_ERRS_CAP];
    fxb_code rc =
        fxb_schema_parse(r->element[0]->str, r->element[0]->len, &schema, errs, sizeof errs, err);
    freeReplyObject(r);
    if (rc != FXB_OK)
        return fxb_err_set(err, FXB_INTERNAL, "SCHEMA_STORED_INVALID", ZH_BUSY,
                           "the stored profile schema does not parse: %s", errs);
    schema->rev = rev;
    cached *e = calloc(1, sizeof *e);
    if (e == NULL) {
        fxb_schema_free(schema);
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                           "out of memory caching the schema");
    }
    e->schema = schema;
    e->refs = 2; /* the cache and the caller */
    pthread_mutex_lock(&cache_mu);
    e->next = cache_live;
    cache_live = e;
    cached *old = cache_current;
    cache_current = e;
    if (old != NULL)
        unref_locked(old);
    pthread_mutex_unlock(&cache_mu);
    *out = schema;
    return FXB_OK;
}

void fxb_profile_schema_release(const fxb_schema *schema)
{
    if (schema == NULL)
        return;
    pthread_mutex_lock(&cache_mu);
    for (cached *e = cache_live; e != NULL; e = e->next)
        if (e->schema == schema) {
            unref_locked(e);
            break;
        }
    pthread_mutex_unlock(&cache_mu);
}

fxb_code fxb_profile_schema_store(fxb_store *s, const char *json, size_t len, fxb_err *err)
{
    const char *keys[] = {KEY_SCHEMA, KEY_SCHEMA_REV};
    const char *args[] = {json};
    redisReply *r = fxb_store_eval(s, err, &schema_script, 2, keys, 1, args, &len);
    if (r == NULL)
        return err->code;
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[1]->type == REDIS_REPLY_INTEGER;
    freeReplyObject(r);
    return ok ? FXB_OK : unexpected(err, "the schema store script");
}

/* --- ProfileService ------------------------------------------------------------------ */

static fxb_next finish_err(fxb_ctx *ctx, const fxb_err *err)
{
    fxb_ctx_fail_err(ctx, err);
    return FXB_NEXT_FINISH;
}

typedef struct upsert_state {
    const fxb_schema *schema;
    const char *dept; /* NULL: admin */
    fxb_arena scratch;
    bool scratch_ready;
    uint64_t received, applied, unchanged, rejected;
    Fxb__V1__RejectedRecord **rejections; /* FXB_PROFILE_REJECTIONS_MAX */
    size_t n_rejections;
} upsert_state;

static fxb_next upsert_start(fxb_ctx *ctx, const ProtobufCMessage *req)
{
    (void)req;
    fxb_arena *a = fxb_ctx_arena(ctx);
    upsert_state *st = fxb_arena_calloc(a, 1, sizeof *st);
    if (st != NULL)
        st->rejections = fxb_arena_calloc(a, FXB_PROFILE_REJECTIONS_MAX, sizeof *st->rejections);
    if (st == NULL || st->rejections == NULL) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
        return FXB_NEXT_FINISH;
    }
    fxb_ctx_set_user(ctx, st);
    const fxb_caller *c = fxb_ctx_caller(ctx);
    if ((c->roles & FXB_ROLE_ADMIN) == 0) {
        if (c->dept[0] == '\0') {
            fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, "DEPARTMENT_MISSING", "数据报送账号未关联部门",
                         "a data-feed account without a department feeds nothing");
            return FXB_NEXT_FINISH;
        }
        st->dept = c->dept;
    }
    fxb_err err;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &st->schema, &err) != FXB_OK)
        return finish_err(ctx, &err);
    fxb_arena_init(&st->scratch, RECORD_ARENA);
    st->scratch_ready = true;
    return FXB_NEXT_CONTINUE;
}

static fxb_next upsert_message(fxb_ctx *ctx, const ProtobufCMessage *msg)
{
    upsert_state *st = fxb_ctx_user(ctx);
    const Fxb__V1__ProfileRecord *rec = (const Fxb__V1__ProfileRecord *)msg;
    st->received++;
    fxb_arena_reset(&st->scratch);
    Fxb__V1__RejectedRecord rej = FXB__V1__REJECTED_RECORD__INIT;
    bool changed;
    fxb_err err;
    fxb_code rc = fxb_profile_upsert(fxb_ctx_store(ctx), deps.crypto, st->schema, st->dept, rec,
                                     fxb_wall_ms(), &changed, &rej, &st->scratch, &err);
    if (rc == FXB_OK) {
        st->applied++;
        if (!changed)
            st->unchanged++;
        return FXB_NEXT_CONTINUE;
    }
    if (rej.reason == NULL || rej.reason[0] == '\0')
        return finish_err(ctx, &err); /* the store, not the record */
    st->rejected++;
    if (st->n_rejections < FXB_PROFILE_REJECTIONS_MAX) {
        fxb_arena *a = fxb_ctx_arena(ctx);
        Fxb__V1__RejectedRecord *r = fxb_arena_alloc(a, sizeof *r);
        if (r == NULL) {
            fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
            return FXB_NEXT_FINISH;
        }
        *r = rej;
        r->position = st->received;
        r->field = fxb_arena_strdup(a, rej.field);
        r->reason = fxb_arena_strdup(a, rej.reason);
        r->message = fxb_arena_strdup(a, rej.message);
        if (r->field == NULL || r->reason == NULL || r->message == NULL) {
            fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
            return FXB_NEXT_FINISH;
        }
        st->rejections[st->n_rejections++] = r;
    }
    return FXB_NEXT_CONTINUE;
}

static fxb_next upsert_half_close(fxb_ctx *ctx, ProtobufCMessage *resp_msg)
{
    upsert_state *st = fxb_ctx_user(ctx);
    Fxb__V1__UpsertSummary *resp = (Fxb__V1__UpsertSummary *)resp_msg;
    resp->received = st->received;
    resp->applied = st->applied;
    resp->unchanged = st->unchanged;
    resp->rejected = st->rejected;
    resp->n_rejections = st->n_rejections;
    resp->rejections = st->rejections;
    return FXB_NEXT_FINISH;
}

static void upsert_end(fxb_ctx *ctx, bool cancelled)
{
    (void)cancelled;
    upsert_state *st = fxb_ctx_user(ctx);
    if (st == NULL)
        return;
    fxb_profile_schema_release(st->schema);
    st->schema = NULL;
    if (st->scratch_ready)
        fxb_arena_free(&st->scratch);
    st->scratch_ready = false;
}

/* GetMyProfile: the subject the caller may read. */
static fxb_code my_subject(fxb_ctx *ctx, const char *eid, char subject[FXB_PROFILE_SUBJECT_LEN + 1])
{
    const fxb_caller *c = fxb_ctx_caller(ctx);
    fxb_err err;
    if (eid == NULL || eid[0] == '\0') {
        if (fxb_profile_person_of_account(fxb_ctx_store(ctx), c->account_id, subject, &err) !=
            FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        return FXB_OK;
    }
    if (!subject_valid(eid, 'e'))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "ENTERPRISE_ID_INVALID", "企业标识无效",
                            "enterprise_id must be \"e\" followed by %d lower-case hex digits",
                            FXB_ENTERPRISE_ID_HEX);
    const char *ekey = fxb_key_owned(fxb_ctx_arena(ctx), "e", eid, "enterprise");
    if (ekey == NULL)
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "HGET %s rep_account", ekey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool rep = r->type == REDIS_REPLY_STRING && strcmp(r->str, c->account_id) == 0;
    freeReplyObject(r);
    if (!rep)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_ENTERPRISE_NOT_LEGAL_REP,
                            "您不是该企业已绑定的法定代表人，无法查看其档案",
                            "the caller is not the bound legal representative of this "
                            "enterprise");
    memcpy(subject, eid, FXB_PROFILE_SUBJECT_LEN + 1);
    return FXB_OK;
}

static const redisReply *hash_field(const redisReply *kv, const char *name)
{
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING &&
            kv->element[i + 1]->type == REDIS_REPLY_STRING &&
            strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1];
    return NULL;
}

/* "<source> <ms>" into the entry. */
static bool provenance(fxb_arena *a, const redisReply *kv, const char *name,
                       Fxb__V1__ProfileEntry *e)
{
    char at[FXB_ATTR_NAME_MAX + 2];
    snprintf(at, sizeof at, "@%s", name);
    const redisReply *p = hash_field(kv, at);
    if (p == NULL)
        return true;
    const char *sp = strchr(p->str, ' ');
    if (sp == NULL)
        return true;
    e->source = fxb_arena_strndup(a, p->str, (size_t)(sp - p->str));
    e->updated_at_ms = strtoll(sp + 1, NULL, 10);
    return e->source != NULL;
}

/* The stored text of attr decoded into v; false on a stored value that
 * does not fit the schema (after a schema change) or out of memory. */
static bool decode_value(fxb_arena *a, const fxb_attr *attr, const char *text,
                         Fxb__V1__AttributeValue *v)
{
    v->name = fxb_arena_strdup(a, attr->name);
    if (v->name == NULL)
        return false;
    int64_t i;
    switch (attr->type) {
    case FXB_ATTR_INT:
        if (!parse_i64(text, &i))
            return false;
        v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE;
        v->int_value = i;
        return true;
    case FXB_ATTR_BOOL:
        v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_BOOL_VALUE;
        v->bool_value = strcmp(text, "1") == 0;
        return true;
    case FXB_ATTR_ENUM:
        v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE;
        v->text_value = fxb_arena_strdup(a, text);
        return v->text_value != NULL;
    case FXB_ATTR_DATE:
        if (!parse_i64(text, &i) || i < 10000101 || i > 99991231)
            return false;
        v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE;
        v->text_value = fxb_arena_printf(a, "%04" PRId64 "-%02" PRId64 "-%02" PRId64, i / 10000,
                                         i / 100 % 100, i % 100);
        return v->text_value != NULL;
    case FXB_ATTR_SET: {
        Fxb__V1__StringSet *set = fxb_arena_alloc(a, sizeof *set);
        if (set == NULL)
            return false;
        *set = (Fxb__V1__StringSet)FXB__V1__STRING_SET__INIT;
        size_t n = text[0] != '\0' ? 1 : 0;
        for (const char *p = text; *p; p++)
            n += *p == SET_SEP;
        set->members = fxb_arena_calloc(a, n ? n : 1, sizeof *set->members);
        if (set->members == NULL)
            return false;
        const char *p = text;
        for (size_t k = 0; k < n; k++) {
            const char *end = strchr(p, SET_SEP);
            size_t len = end ? (size_t)(end - p) : strlen(p);
            set->members[k] = fxb_arena_strndup(a, p, len);
            if (set->members[k] == NULL)
                return false;
            p += len + 1;
        }
        set->n_members = n;
        v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_SET_VALUE;
        v->set_value = set;
        return true;
    }
    }
    return false;
}

static fxb_code get_my_profile(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                               ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetMyProfileRequest *req = (const Fxb__V1__GetMyProfileRequest *)req_msg;
    Fxb__V1__Profile *resp = (Fxb__V1__Profile *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    char subject[FXB_PROFILE_SUBJECT_LEN + 1];
    fxb_code rc = my_subject(ctx, req->enterprise_id, subject);
    if (rc != FXB_OK)
        return rc;
    fxb_subject_type type = subject[0] == 'p' ? FXB_SUBJECT_PERSON : FXB_SUBJECT_ENTERPRISE;
    const char *key = profile_key(a, subject);
    resp->subject_id = fxb_arena_strdup(a, subject);
    if (key == NULL || resp->subject_id == NULL)
        return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    resp->subject_type = type == FXB_SUBJECT_PERSON
                             ? FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON
                             : FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    fxb_err err;
    const fxb_schema *schema;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &schema, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    redisReply *kv = fxb_store_command(fxb_ctx_store(ctx), &err, "HGETALL %s", key);
    if (kv == NULL) {
        fxb_profile_schema_release(schema);
        return fxb_ctx_fail_err(ctx, &err);
    }
    rc = FXB_OK;
    Fxb__V1__ProfileEntry **list = fxb_arena_calloc(a, schema->n_attrs + 1, sizeof *list);
    if (kv->type != REDIS_REPLY_ARRAY || list == NULL) {
        rc = fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                          "HGETALL answered in an unexpected shape");
        goto out;
    }
    const redisReply *updated = hash_field(kv, "_updated_at_ms");
    if (updated != NULL)
        resp->updated_at_ms = strtoll(updated->str, NULL, 10);
    int64_t today = fxb_idv_today(fxb_wall_ms());
    size_t n = 0;
    for (size_t i = 0; i < schema->n_attrs; i++) {
        const fxb_attr *attr = &schema->attrs[i];
        if (attr->subject != type)
            continue;
        Fxb__V1__ProfileEntry *e = fxb_arena_alloc(a, sizeof *e);
        Fxb__V1__AttributeValue *v = fxb_arena_alloc(a, sizeof *v);
        if (e == NULL || v == NULL) {
            rc = fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                              "out of memory");
            goto out;
        }
        *e = (Fxb__V1__ProfileEntry)FXB__V1__PROFILE_ENTRY__INIT;
        *v = (Fxb__V1__AttributeValue)FXB__V1__ATTRIBUTE_VALUE__INIT;
        const char *from = attr->derived ? "birth_date" : attr->name;
        const redisReply *stored = hash_field(kv, from);
        if (stored == NULL)
            continue;
        if (attr->derived) {
            int64_t birth;
            if (!parse_i64(stored->str, &birth))
                continue;
            int age = fxb_age_on(birth, today);
            if (age < 0)
                continue;
            v->name = fxb_arena_strdup(a, attr->name);
            if (v->name == NULL)
                continue;
            v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE;
            v->int_value = age;
        } else if (!decode_value(a, attr, stored->str, v)) {
            continue;
        }
        if (!provenance(a, kv, from, e)) {
            rc = fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                              "out of memory");
            goto out;
        }
        e->value = v;
        list[n++] = e;
    }
    resp->entries = list;
    resp->n_entries = n;
out:
    freeReplyObject(kv);
    fxb_profile_schema_release(schema);
    return rc;
}

static const char *const type_names[] = {"", "int", "bool", "enum", "date", "set"};

static fxb_code get_schema(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    (void)req_msg;
    Fxb__V1__Schema *resp = (Fxb__V1__Schema *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_err err;
    const fxb_schema *schema;
    if (fxb_profile_schema_acquire(fxb_ctx_store(ctx), &schema, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    size_t n = schema->n_attrs;
    Fxb__V1__SchemaAttribute **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    Fxb__V1__SchemaAttribute *items = fxb_arena_calloc(a, n ? n : 1, sizeof *items);
    bool ok = list != NULL && items != NULL;
    /* the response is packed after the handler returns: copy what the
     * schema (released below) holds */
    for (size_t i = 0; i < n && ok; i++) {
        const fxb_attr *at = &schema->attrs[i];
        Fxb__V1__SchemaAttribute *x = &items[i];
        *x = (Fxb__V1__SchemaAttribute)FXB__V1__SCHEMA_ATTRIBUTE__INIT;
        x->name = fxb_arena_strdup(a, at->name);
        x->subject_type = at->subject == FXB_SUBJECT_PERSON
                              ? FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON
                              : FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
        x->type = (char *)type_names[at->type];
        x->min = at->type == FXB_ATTR_INT ? at->min : 0;
        x->max = at->type == FXB_ATTR_INT ? at->max : 0;
        x->source = fxb_arena_strdup(a, at->source);
        x->description = fxb_arena_strdup(a, at->description ? at->description : "");
        x->derived = at->derived;
        ok = x->name != NULL && x->source != NULL && x->description != NULL;
        if (ok && at->n_values > 0) {
            x->values = fxb_arena_calloc(a, at->n_values, sizeof *x->values);
            ok = x->values != NULL;
            for (size_t k = 0; ok && k < at->n_values; k++)
                ok = (x->values[k] = fxb_arena_strdup(a, at->values[k])) != NULL;
            x->n_values = at->n_values;
        }
        list[i] = x;
    }
    resp->rev = schema->rev;
    fxb_profile_schema_release(schema);
    if (!ok)
        return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    resp->attributes = list;
    resp->n_attributes = n;
    return FXB_OK;
}

static const fxb_stream_ops upsert_ops = {
    .on_start = upsert_start,
    .on_message = upsert_message,
    .on_half_close = upsert_half_close,
    .on_end = upsert_end,
};

static const fxb_method methods[] = {
    {.path = "/fxb.v1.ProfileService/UpsertProfiles",
     .request = &fxb__v1__profile_record__descriptor,
     .response = &fxb__v1__upsert_summary__descriptor,
     .kind = FXB_RPC_CLIENT_STREAMING,
     .stream = &upsert_ops,
     .access = {.kind = FXB_ACCESS_SIGNED_IN, .roles = FXB_ROLE_DATA_FEED | FXB_ROLE_ADMIN},
     .limits = {.max_request_bytes = 64 * 1024, .max_messages = FXB_PROFILE_STREAM_MAX}},
    {.path = "/fxb.v1.ProfileService/GetMyProfile",
     .request = &fxb__v1__get_my_profile_request__descriptor,
     .response = &fxb__v1__profile__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = get_my_profile,
     .access = {.kind = FXB_ACCESS_SIGNED_IN},
     .limits = {.max_request_bytes = 256}},
    {.path = "/fxb.v1.ProfileService/GetSchema",
     .request = &fxb__v1__get_schema_request__descriptor,
     .response = &fxb__v1__schema__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = get_schema,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 64}},
};

const fxb_service fxb_profile_service = {
    .name = "fxb.v1.ProfileService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
