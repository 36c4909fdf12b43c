/* The dev population registry: records imported from a file, kept only as
 * blind indexes and sealed values (see registry.h). */
#include "services/identity/registry.h"

#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "auth/idnumber.h"

#define KEY_PREFIX    "fxb:registry:dev:"
#define LABEL_ID      "registry_id"   /* index of the ID number: the key */
#define LABEL_MATCH   "registry_name" /* index of ID number + name */
#define LABEL_DIST    "registry_district"
#define ZH_MISMATCH   "姓名与身份证号码不匹配，请核对后重试"
#define ZH_REG_BUSY   "人口信息核验服务暂不可用，请稍后重试"
#define KEY_MAX       (sizeof KEY_PREFIX + FXB_CRYPTO_INDEX_HEX_LEN)
#define MATCH_VAL_MAX (FXB_IDNUMBER_LEN + 1 + FXB_REGISTRY_NAME_MAX + 1)

bool fxb_registry_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strnlen(name, FXB_REGISTRY_NAME_MAX + 1);
    if (n == 0 || n > FXB_REGISTRY_NAME_MAX || name[0] == ' ' || name[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    char masked[FXB_REGISTRY_NAME_MAX + 1];
    bool ok = fxb_mask_name(name, masked, sizeof masked);
    OPENSSL_cleanse(masked, sizeof masked);
    return ok;
}

/* The record key and the match index of (name, id). */
static fxb_code record_indexes(const fxb_crypto *c, const char *name, const char *id,
                               char key[KEY_MAX], char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1],
                               char match[FXB_CRYPTO_INDEX_HEX_LEN + 1], fxb_err *err)
{
    char val[MATCH_VAL_MAX + 1];
    snprintf(val, sizeof val, "%s\x1f%s", id, name);
    fxb_code rc = fxb_crypto_index(c, LABEL_ID, id, idx, err);
    if (rc == FXB_OK)
        rc = fxb_crypto_index(c, LABEL_MATCH, val, match, err);
    OPENSSL_cleanse(val, sizeof val);
    if (rc == FXB_OK)
        snprintf(key, KEY_MAX, KEY_PREFIX "%s", idx);
    return rc;
}

static fxb_code dev_check(const void *self, fxb_store *s, const char *name, const char *id,
                          char district[FXB_REGISTRY_DISTRICT_LEN + 1], fxb_err *err)
{
    const fxb_crypto *c = self;
    district[0] = '\0';
    char key[KEY_MAX], idx[FXB_CRYPTO_INDEX_HEX_LEN + 1], match[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    fxb_code rc = record_indexes(c, name, id, key, idx, match, err);
    if (rc != FXB_OK)
        return rc;
    redisReply *r = fxb_store_command(s, err, "HMGET %s match district_enc", key);
    if (r == NULL)
        return err->code;
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              r->element[0]->len == FXB_CRYPTO_INDEX_HEX_LEN &&
              CRYPTO_memcmp(r->element[0]->str, match, FXB_CRYPTO_INDEX_HEX_LEN) == 0 &&
              r->element[1]->type == REDIS_REPLY_STRING &&
              r->element[1]->len <= FXB_CRYPTO_SEALED_MAX;
    char sealed[FXB_CRYPTO_SEALED_MAX + 1];
    if (ok)
        snprintf(sealed, sizeof sealed, "%.*s", (int)r->element[1]->len, r->element[1]->str);
    freeReplyObject(r);
    if (!ok)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_REGISTRY_MISMATCH, ZH_MISMATCH,
                           "the population registry holds no person with this name and "
                           "ID number");
    /* a tiny arena: the district is six bytes */
    fxb_arena a;
    fxb_arena_init(&a, 4096);
    uint8_t *pt = NULL;
    size_t len = 0;
    rc = fxb_crypto_open(c, LABEL_DIST, idx, sealed, &a, &pt, &len, err);
    if (rc == FXB_OK && len == FXB_REGISTRY_DISTRICT_LEN)
        memcpy(district, pt, FXB_REGISTRY_DISTRICT_LEN + 1);
    else if (rc == FXB_OK)
        rc = fxb_err_set(err, FXB_DATA_LOSS, "REGISTRY_CORRUPT", ZH_REG_BUSY,
                         "a dev registry record holds a malformed district");
    fxb_arena_free(&a);
    return rc;
}

fxb_registry fxb_registry_dev(const fxb_crypto *c)
{
    fxb_registry r = {.check = dev_check, .self = c};
    return r;
}

/* --- import --------------------------------------------------------------- */

static bool district_valid(const char *d)
{
    if (strlen(d) != FXB_REGISTRY_DISTRICT_LEN)
        return false;
    for (size_t i = 0; i < FXB_REGISTRY_DISTRICT_LEN; i++)
        if (d[i] < '0' || d[i] > '9')
            return false;
    return true;
}

/* Splits one line into its three fields (copied into the buffers); false
 * when it is neither a CSV line of three fields nor a JSON object with the
 * three strings. */
static bool parse_line(char *line, char name[FXB_REGISTRY_NAME_MAX + 1],
                       char id[FXB_IDNUMBER_LEN + 2], char dist[FXB_REGISTRY_DISTRICT_LEN + 2])
{
    const char *f[3] = {NULL, NULL, NULL};
    json_t *j = NULL;
    if (line[0] == '{') {
        j = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            return false;
        }
        f[0] = json_string_value(json_object_get(j, "name"));
        f[1] = json_string_value(json_object_get(j, "id_number"));
        f[2] = json_string_value(json_object_get(j, "district"));
    } else {
        char *c1 = strchr(line, ',');
        char *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (c2 == NULL || strchr(c2 + 1, ',') != NULL)
            return false;
        *c1 = *c2 = '\0';
        f[0] = line;
        f[1] = c1 + 1;
        f[2] = c2 + 1;
    }
    bool ok = f[0] && f[1] && f[2] && strlen(f[0]) <= FXB_REGISTRY_NAME_MAX &&
              strlen(f[1]) <= FXB_IDNUMBER_LEN && strlen(f[2]) <= FXB_REGISTRY_DISTRICT_LEN;
    if (ok) {
        snprintf(name, FXB_REGISTRY_NAME_MAX + 1, "%s", f[0]);
        snprintf(id, FXB_IDNUMBER_LEN + 2, "%s", f[1]);
        snprintf(dist, FXB_REGISTRY_DISTRICT_LEN + 2, "%s", f[2]);
    }
    json_decref(j);
    return ok;
}

/* Writes one valid record. */
static fxb_code import_one(fxb_store *s, const fxb_crypto *c, const char *name, const char *id,
                           const char *dist, fxb_err *err)
{
    char key[KEY_MAX], idx[FXB_CRYPTO_INDEX_HEX_LEN + 1], match[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    fxb_code rc = record_indexes(c, name, id, key, idx, match, err);
    if (rc != FXB_OK)
        return rc;
    fxb_arena a;
    fxb_arena_init(&a, 4096);
    char *sealed = NULL;
    rc = fxb_crypto_seal(c, LABEL_DIST, idx, (const uint8_t *)dist, FXB_REGISTRY_DISTRICT_LEN, &a,
                         &sealed, err);
    if (rc == FXB_OK) {
        redisReply *r =
            fxb_store_command(s, err, "HSET %s match %s district_enc %s", key, match, sealed);
        if (r == NULL)
            rc = err->code;
        else
            freeReplyObject(r);
    }
    fxb_arena_free(&a);
    return rc;
}

fxb_code fxb_registry_dev_import(fxb_store *s, const fxb_crypto *c, FILE *in,
                                 int64_t today_yyyymmdd, FILE *errs, size_t *imported, size_t *bad,
                                 fxb_err *err)
{
    *imported = *bad = 0;
    char line[FXB_REGISTRY_LINE_MAX + 2];
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
            fprintf(errs, "line %zu: longer than %d bytes\n", lineno, FXB_REGISTRY_LINE_MAX);
            (*bad)++;
            continue;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char name[FXB_REGISTRY_NAME_MAX + 1], id[FXB_IDNUMBER_LEN + 2];
        char dist[FXB_REGISTRY_DISTRICT_LEN + 2];
        fxb_idnumber num;
        fxb_err line_err;
        const char *what = NULL;
        if (!parse_line(line, name, id, dist))
            what = "not `name,id_number,district` nor a JSON object with those strings";
        else if (!fxb_registry_name_valid(name))
            what = "invalid name";
        else if (fxb_idnumber_check(id, today_yyyymmdd, &num, &line_err) != FXB_OK)
            what = line_err.reason;
        else if (!district_valid(dist))
            what = "district is not six digits";
        if (what != NULL) {
            fprintf(errs, "line %zu: %s\n", lineno, what);
            (*bad)++;
        } else {
            rc = import_one(s, c, name, num.id, dist, err);
            if (rc == FXB_OK)
                (*imported)++;
        }
        OPENSSL_cleanse(name, sizeof name);
        OPENSSL_cleanse(id, sizeof id);
        OPENSSL_cleanse(&num, sizeof num);
        OPENSSL_cleanse(line, sizeof line);
    }
    return rc;
}
