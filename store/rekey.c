/* fxb_rekey_run: SCAN each kind of hash that holds sealed fields, open
 * with the kid a value names, seal with the active kid, and write back
 * only if the stored value is still the one opened (a server may have
 * rewritten it meanwhile: its value is newer, and already under some
 * loaded key). The field table below is the list of every sealed field;
 * a new fxb_crypto_seal caller adds its row here. */
#include "store/rekey.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "server/arena.h"
#include "store/keys.h"

/* A sealed hash field: the keys it lives in (prefix + owner + suffix),
 * the AAD label, and where the owner id comes from (the key). A suffix
 * ending in '*' stands for its text followed by one more id (keys such as
 * {u:<owner>}:material:<mid>, one per record). */
typedef struct sealed_field {
    const char *match; /* SCAN MATCH pattern */
    const char *prefix;
    const char *suffix;
    const char *field;
    const char *label; /* as the sealing module uses it */
} sealed_field;

static const sealed_field fields[] = {
    /* auth/account.c */
    {"{u:*}:account", "{u:", "}:account", "phone_enc", "phone"},
    /* services/accessibility/accessibility.c */
    {"{u:*}:a11y", "{u:", "}:a11y", "relative_enc", "relative_phone"},
    {"{u:*}:a11y", "{u:", "}:a11y", "relative_pending_enc", "relative_pending"},
    /* services/identity/identity.c */
    {"{u:*}:identity", "{u:", "}:identity", "id_enc", "id_number"},
    {"{u:*}:identity", "{u:", "}:identity", "name_enc", "real_name"},
    /* services/material/material.c: licence numbers, one hash per material */
    {"{u:*}:material:*", "{u:", "}:material:*", "number_enc", "licence"},
    {"{e:*}:material:*", "{e:", "}:material:*", "number_enc", "licence"},
    /* services/benefit/benefit.c: payout accounts, owner the profile
     * subject ("p..." / "e...") */
    {"{p:*}:payout", "{p:", "}:payout", "account_enc", "payout_account"},
    {"{p:*}:payout", "{p:", "}:payout", "name_enc", "payout_name"},
    {"{e:*}:payout", "{e:", "}:payout", "account_enc", "payout_account"},
    {"{e:*}:payout", "{e:", "}:payout", "name_enc", "payout_name"},
    /* services/identity/registry.c: owner is the record's blind index */
    {"fxb:registry:dev:*", "fxb:registry:dev:", "", "district_enc", "registry_district"},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

#define ARENA_LIMIT (4 * FXB_CRYPTO_SEALED_MAX + 64 * 1024)

/* KEYS[1] the hash; ARGV: field, the value opened, the new value. */
static fxb_script cas_script =
    FXB_SCRIPT("rekey_cas", "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then\n"
                            "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])\n"
                            "  return 1\n"
                            "end\n"
                            "return 0\n");

/* The owner id of key for field f into owner (cap bytes), or false when key
 * is not exactly prefix + valid owner + suffix (SCAN's glob is looser). */
static bool owner_of(const sealed_field *f, const char *key, char *owner, size_t cap)
{
    size_t n = strlen(key), pn = strlen(f->prefix), sn = strlen(f->suffix);
    if (sn > 0 && f->suffix[sn - 1] == '*') {
        /* prefix + owner + suffix text + record id */
        const char *mark = strncmp(key, f->prefix, pn) == 0 ? strchr(key + pn, '}') : NULL;
        if (mark == NULL || strncmp(mark, f->suffix, sn - 1) != 0 ||
            !fxb_key_id_valid(mark + sn - 1))
            return false;
        size_t on = (size_t)(mark - key) - pn;
        if (on == 0 || on >= cap || on > FXB_CRYPTO_OWNER_MAX)
            return false;
        memcpy(owner, key + pn, on);
        owner[on] = '\0';
        return fxb_key_id_valid(owner);
    }
    if (n <= pn + sn || strncmp(key, f->prefix, pn) != 0 || strcmp(key + n - sn, f->suffix) != 0)
        return false;
    size_t on = n - pn - sn;
    if (on >= cap || on > FXB_CRYPTO_OWNER_MAX)
        return false;
    memcpy(owner, key + pn, on);
    owner[on] = '\0';
    if (sn > 0)
        return fxb_key_id_valid(owner);
    if (on != FXB_CRYPTO_INDEX_HEX_LEN)
        return false;
    for (size_t i = 0; i < on; i++)
        if (!((owner[i] >= '0' && owner[i] <= '9') || (owner[i] >= 'a' && owner[i] <= 'f')))
            return false;
    return true;
}

static bool active_prefix(const fxb_crypto *c, const char *sealed)
{
    const char *kid = fxb_crypto_active_kid(c);
    size_t kn = strlen(kid);
    return strncmp(sealed, "v1.", 3) == 0 && strncmp(sealed + 3, kid, kn) == 0 &&
           sealed[3 + kn] == '.';
}

static void report(FILE *diag, const char *key, const char *field, const fxb_err *e)
{
    if (diag != NULL)
        fprintf(diag, "rekey: %s %s: %s (%s)\n", key, field, e->reason, e->message);
}

/* Re-seals one value; store errors stop the run (returned), anything else
 * is counted. */
static fxb_code rekey_value(fxb_store *st, const fxb_crypto *c, const sealed_field *f,
                            const char *key, const char *owner, const char *sealed, FILE *diag,
                            fxb_rekey_counts *counts, fxb_err *err)
{
    if (!fxb_crypto_needs_rekey(c, sealed)) {
        if (active_prefix(c, sealed)) {
            counts->current++;
        } else {
            fxb_err e;
            fxb_err_set(&e, FXB_DATA_LOSS, FXB_CRYPTO_SEALED_MALFORMED, "", "not a sealed value");
            report(diag, key, f->field, &e);
            counts->failed++;
        }
        return FXB_OK;
    }
    fxb_arena a;
    fxb_arena_init(&a, ARENA_LIMIT);
    uint8_t *pt = NULL;
    size_t len = 0;
    char *fresh = NULL;
    fxb_err e;
    fxb_code rc = FXB_OK;
    if (fxb_crypto_open(c, f->label, owner, sealed, &a, &pt, &len, &e) != FXB_OK ||
        fxb_crypto_seal(c, f->label, owner, pt, len, &a, &fresh, &e) != FXB_OK) {
        report(diag, key, f->field, &e);
        counts->failed++;
    } else {
        const char *args[] = {f->field, sealed, fresh};
        redisReply *r = fxb_store_eval(st, err, &cas_script, 1, &key, 3, args, NULL);
        if (r == NULL) {
            rc = err->code;
        } else {
            if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
                counts->rekeyed++;
            else
                counts->raced++;
            freeReplyObject(r);
        }
    }
    if (pt != NULL)
        OPENSSL_cleanse(pt, len);
    fxb_arena_free(&a);
    return rc;
}

/* Every field of one hash that rows [first, last) of the table describe. */
static fxb_code rekey_hash(fxb_store *st, const fxb_crypto *c, size_t first, size_t last,
                           const char *key, FILE *diag, fxb_rekey_counts *counts, fxb_err *err)
{
    char owner[FXB_CRYPTO_OWNER_MAX + 1];
    if (!owner_of(&fields[first], key, owner, sizeof owner))
        return FXB_OK;
    counts->keys++;
    for (size_t i = first; i < last; i++) {
        redisReply *r = fxb_store_command(st, err, "HGET %s %s", key, fields[i].field);
        if (r == NULL)
            return err->code;
        fxb_code rc = FXB_OK;
        if (r->type == REDIS_REPLY_STRING)
            rc = rekey_value(st, c, &fields[i], key, owner, r->str, diag, counts, err);
        freeReplyObject(r);
        if (rc != FXB_OK)
            return rc;
    }
    return FXB_OK;
}

fxb_code fxb_rekey_run(fxb_store *st, const fxb_crypto *c, size_t batch, FILE *diag,
                       fxb_rekey_counts *counts, fxb_err *err)
{
    memset(counts, 0, sizeof *counts);
    if (st == NULL || c == NULL || batch == 0 || batch > FXB_REKEY_BATCH_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "REKEY_BAD_ARGUMENT", "",
                           "fxb_rekey_run: missing store or key set, or batch outside 1..%d",
                           FXB_REKEY_BATCH_MAX);
    /* rows sharing a pattern are adjacent: one scan per pattern */
    for (size_t first = 0; first < N_FIELDS;) {
        size_t last = first + 1;
        while (last < N_FIELDS && strcmp(fields[last].match, fields[first].match) == 0)
            last++;
        char cursor[32] = "0", count[24];
        snprintf(count, sizeof count, "%zu", batch); /* hiredis knows no %zu */
        do {
            redisReply *r = fxb_store_command(st, err, "SCAN %s MATCH %s COUNT %s TYPE hash",
                                              cursor, fields[first].match, count);
            if (r == NULL)
                return err->code;
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
                r->element[1]->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(r);
                return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "",
                                   "SCAN answered in an unexpected shape");
            }
            memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
            fxb_code rc = FXB_OK;
            for (size_t k = 0; k < r->element[1]->elements && rc == FXB_OK; k++) {
                const redisReply *key = r->element[1]->element[k];
                if (key->type == REDIS_REPLY_STRING && strlen(key->str) == key->len)
                    rc = rekey_hash(st, c, first, last, key->str, diag, counts, err);
            }
            freeReplyObject(r);
            if (rc != FXB_OK)
                return rc;
        } while (strcmp(cursor, "0") != 0);
        first = last;
    }
    return FXB_OK;
}
