/* Profiles (proto/fxb/v1/profile.proto): what departments share about
 * people and enterprises, stored typed by the schema, and the change feed
 * the matching engine follows.
 *
 * Subjects: a person is "p" + the first 24 hex digits of the blind index of
 * the ID number (the identity service's label, so an account's verified
 * identity leads to its person subject); an enterprise "e" + 24 hex, as
 * fxb_enterprise_id derives it.
 *
 * Keys:
 *   {p:<pid>}:profile / {e:<eid>}:profile   hash: attribute name -> stored
 *       text (int: decimal; bool: "1"/"0"; enum: the value; date:
 *       yyyymmdd; set: members joined by U+001F, sorted, distinct), and per
 *       attribute "@<name>" -> "<source dept> <updated_at_ms>"; "_rev"
 *       (counter), "_updated_at_ms"
 *   fxb:profile:changes   stream of changed subjects: subject, type ("person"
 *       / "enterprise"), rev; capped (MAXLEN ~ 1,000,000)
 *   fxb:profile:schema, fxb:profile:schema:rev   (schema.h)
 */
#ifndef FXB_BENEFIT_PROFILE_H
#define FXB_BENEFIT_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fxb/v1/profile.pb-c.h"
#include "server/handler.h"
#include "services/benefit/schema.h"
#include "store/crypto.h"
#include "store/store.h"

#define FXB_PROFILE_SUBJECT_LEN    25 /* "p" / "e" + 24 hex */
#define FXB_PROFILE_STREAM_MAX     100000
#define FXB_PROFILE_REJECTIONS_MAX 100

/* The person subject of an ID number (validated first: INVALID_ARGUMENT
 * with the idnumber module's reasons). */
fxb_code fxb_profile_person_id(const fxb_crypto *c, const char *id_number,
                               char out[FXB_PROFILE_SUBJECT_LEN + 1], fxb_err *err);

/* The person subject of an account's verified identity; NOT_FOUND
 * IDENTITY_NOT_VERIFIED when it has none. */
fxb_code fxb_profile_person_of_account(fxb_store *s, const char *account_id,
                                       char out[FXB_PROFILE_SUBJECT_LEN + 1], fxb_err *err);

/* Validates one record against the schema for a feeding department (NULL
 * = admin: any source) and applies it atomically (one Lua script on the
 * subject's profile, then one XADD to the change feed when something
 * changed). On a refusal nothing is written and *rej names the field and
 * the reason. *changed tells whether stored values changed. */
fxb_code fxb_profile_upsert(fxb_store *s, const fxb_crypto *c, const fxb_schema *schema,
                            const char *dept, const Fxb__V1__ProfileRecord *rec, int64_t now_ms,
                            bool *changed, Fxb__V1__RejectedRecord *rej, fxb_arena *a,
                            fxb_err *err);

/* One record ready to apply: the subject, its profile key and the apply
 * script's arguments. argv has four leading slots (EVALSHA, sha, 1, key)
 * so that a pipeline can send it as is. */
typedef struct fxb_profile_write {
    char subject[FXB_PROFILE_SUBJECT_LEN + 1];
    fxb_subject_type type;
    const char *key;
    size_t nargs;
    const char **argv; /* 4 + nargs */
    size_t *argvlen;
    bool changed; /* set by apply */
    int64_t rev;
} fxb_profile_write;

fxb_code fxb_profile_prepare(const fxb_crypto *c, const fxb_schema *schema, const char *dept,
                             const Fxb__V1__ProfileRecord *rec, int64_t now_ms,
                             fxb_profile_write *w, Fxb__V1__RejectedRecord *rej, fxb_arena *a,
                             fxb_err *err);
fxb_code fxb_profile_apply_batch(fxb_store *s, fxb_profile_write *w, size_t n, fxb_err *err);

/* The schema as currently stored (loaded and cached per process, reloaded
 * when fxb:profile:schema:rev changes). The returned schema stays valid
 * until fxb_profile_schema_release. NOT_FOUND SCHEMA_MISSING when none was
 * imported. */
fxb_code fxb_profile_schema_acquire(fxb_store *s, const fxb_schema **out, fxb_err *err);
void fxb_profile_schema_release(const fxb_schema *schema);

/* Stores schema JSON after fxb_schema_parse accepted it (fxb-admin). */
fxb_code fxb_profile_schema_store(fxb_store *s, const char *json, size_t len, fxb_err *err);

typedef struct fxb_profile_deps {
    const fxb_crypto *crypto;
} fxb_profile_deps;

void fxb_profile_service_init(const fxb_profile_deps *deps);

extern const fxb_service fxb_profile_service;

#endif
