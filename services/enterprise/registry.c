/* The dev enterprise registry: records imported from a file, the legal
 * representative kept only as a blind index (see registry.h). */
#include "services/enterprise/registry.h"

#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "auth/idnumber.h"

#define KEY_PREFIX "fxb:entreg:dev:"
#define ZH_BUSY    "企业登记信息核验服务暂不可用，请稍后重试"

bool fxb_entreg_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strnlen(name, FXB_ENTREG_NAME_MAX + 1);
    if (n == 0 || n > FXB_ENTREG_NAME_MAX || name[0] == ' ' || name[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    /* fxb_mask_name validates the UTF-8 */
    char masked[FXB_ENTREG_NAME_MAX + 1];
    return fxb_mask_name(name, masked, sizeof masked);
}

static bool index_valid(const char *s, size_t len)
{
    if (len != FXB_CRYPTO_INDEX_HEX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static fxb_code dev_lookup(const void *self, fxb_store *s, const char *code, fxb_entreg_record *out,
                           fxb_err *err)
{
    (void)self;
    memset(out, 0, sizeof *out);
    if (fxb_uscc_check(code, err) != FXB_OK)
        return err->code;
    redisReply *r = fxb_store_command(s, err, "HMGET " KEY_PREFIX "%s name rep_idx", code);
    if (r == NULL)
        return err->code;
    bool found = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 r->element[0]->type == REDIS_REPLY_STRING &&
                 r->element[1]->type == REDIS_REPLY_STRING;
    bool ok = found && r->element[0]->len <= FXB_ENTREG_NAME_MAX &&
              index_valid(r->element[1]->str, r->element[1]->len);
    if (ok) {
        snprintf(out->name, sizeof out->name, "%s", r->element[0]->str);
        snprintf(out->rep_idx, sizeof out->rep_idx, "%s", r->element[1]->str);
    }
    freeReplyObject(r);
    if (!found)
        return fxb_err_set(err, FXB_NOT_FOUND, FXB_ENTREG_UNKNOWN,
                           "企业登记信息中未找到该统一社会信用代码，请核对后重试",
                           "the enterprise registry holds no enterprise with this credit code");
    if (!ok)
        return fxb_err_set(err, FXB_DATA_LOSS, "ENTREG_CORRUPT", ZH_BUSY,
                           "a dev enterprise registry record is malformed");
    return FXB_OK;
}

fxb_entreg fxb_entreg_dev(void)
{
    fxb_entreg r = {.lookup = dev_lookup, .self = NULL};
    return r;
}

/* --- import --------------------------------------------------------------- */

/* Splits one line into its three fields (copied into the buffers, each one
 * byte longer than valid so that an over-long field stays detectable);
 * false when it is neither a CSV line of three fields nor a JSON object
 * with the three strings. */
static bool parse_line(char *line, char code[FXB_USCC_LEN + 2], char name[FXB_ENTREG_NAME_MAX + 2],
                       char id[FXB_IDNUMBER_LEN + 2])
{
    const char *f[3] = {NULL, NULL, NULL};
    json_t *j = NULL;
    if (line[0] == '{') {
        j = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            return false;
        }
        f[0] = json_string_value(json_object_get(j, "credit_code"));
        f[1] = json_string_value(json_object_get(j, "name"));
        f[2] = json_string_value(json_object_get(j, "legal_rep_id_number"));
    } else {
        char *c1 = strchr(line, ',');
        char *c2 = strrchr(line, ',');
        if (c1 == NULL || c2 == c1)
            return false;
        *c1 = *c2 = '\0';
        f[0] = line;
        f[1] = c1 + 1;
        f[2] = c2 + 1;
    }
    bool ok = f[0] && f[1] && f[2] && strlen(f[0]) <= FXB_USCC_LEN &&
              strlen(f[1]) <= FXB_ENTREG_NAME_MAX && strlen(f[2]) <= FXB_IDNUMBER_LEN;
    if (ok) {
        snprintf(code, FXB_USCC_LEN + 2, "%s", f[0]);
        snprintf(name, FXB_ENTREG_NAME_MAX + 2, "%s", f[1]);
        snprintf(id, FXB_IDNUMBER_LEN + 2, "%s", f[2]);
    }
    json_decref(j);
    return ok;
}

static void upper_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

/* Writes one valid record. */
static fxb_code import_one(fxb_store *s, const fxb_crypto *c, const char *code, const char *name,
                           const char *id, fxb_err *err)
{
    char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    fxb_code rc = fxb_crypto_index(c, FXB_ENTREG_ID_LABEL, id, idx, err);
    if (rc != FXB_OK)
        return rc;
    redisReply *r =
        fxb_store_command(s, err, "HSET " KEY_PREFIX "%s name %s rep_idx %s", code, name, idx);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}

fxb_code fxb_entreg_dev_import(fxb_store *s, const fxb_crypto *c, FILE *in, int64_t today_yyyymmdd,
                               FILE *errs, size_t *imported, size_t *bad, fxb_err *err)
{
    *imported = *bad = 0;
    char line[FXB_ENTREG_LINE_MAX + 2];
    size_t lineno = 0;
    fxb_code rc = FXB_OK;
    while (rc == FXB_OK && fgets(line, sizeof line, in) != NULL) {
        lineno++;
        size_t n = strlen(line);
        bool whole = n > 0 && line[n - 1] == '\n';
        if (!whole && !feof(in)) {
            /* over-long: skip the rest of it */
            int ch;
            while ((ch = fgetc(in)) != EOF && ch != '\n')
                ;
            fprintf(errs, "line %zu: longer than %d bytes\n", lineno, FXB_ENTREG_LINE_MAX);
            (*bad)++;
            OPENSSL_cleanse(line, sizeof line);
            continue;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char code[FXB_USCC_LEN + 2], name[FXB_ENTREG_NAME_MAX + 2], id[FXB_IDNUMBER_LEN + 2];
        fxb_idnumber num;
        fxb_err line_err;
        const char *what = NULL;
        memset(&num, 0, sizeof num);
        if (!parse_line(line, code, name, id)) {
            what = "not `credit_code,name,legal_rep_id_number` nor a JSON object with those "
                   "strings";
        } else {
            upper_ascii(code);
            if (fxb_uscc_check(code, &line_err) != FXB_OK)
                what = line_err.reason;
            else if (!fxb_entreg_name_valid(name))
                what = "invalid name";
            else if (fxb_idnumber_check(id, today_yyyymmdd, &num, &line_err) != FXB_OK)
                what = line_err.reason;
        }
        if (what != NULL) {
            fprintf(errs, "line %zu: %s\n", lineno, what);
            (*bad)++;
        } else {
            rc = import_one(s, c, code, name, num.id, err);
            if (rc == FXB_OK)
                (*imported)++;
        }
        OPENSSL_cleanse(id, sizeof id);
        OPENSSL_cleanse(&num, sizeof num);
        OPENSSL_cleanse(line, sizeof line);
    }
    return rc;
}
