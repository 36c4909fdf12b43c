/* Schema migrations. Each migration runs inside one script together with
 * the check of the version it starts from and the bump to its own version,
 * so no other client interleaves and two concurrent `fxb-admin migrate` runs
 * cannot apply the same step twice. Redis does not roll back a script that
 * fails half-way, which is why every migration must be idempotent: the
 * version is bumped only at the end, and a rerun repeats the whole step. */
#include "store/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/keys.h"

#define ZH_MAINTENANCE "系统维护中，请稍后重试"

/* Wraps a migration body. KEYS[1] = version key, ARGV[1] = version the
 * store must be at, ARGV[2] = version after this step. Returns 1 when
 * applied, 0 when another run already applied it. The head is one line with
 * no newline so that line numbers in Redis errors match the .lua file. */
static const char wrap_head[] =
    "local cur = redis.call('GET', KEYS[1]) "
    "if cur then cur = tonumber(cur) else cur = 0 end "
    "if cur == tonumber(ARGV[2]) then return 0 end "
    "if cur ~= tonumber(ARGV[1]) then "
    "return redis.error_reply('FXB 10 SCHEMA_CHANGED store schema moved to version ' .. "
    "tostring(cur) .. ' during the migration; run `fxb-admin migrate` again') "
    "end "
    "local function fxb_migration_body() ";
static const char wrap_tail[] = "\nend\n"
                                "fxb_migration_body()\n"
                                "redis.call('SET', KEYS[1], ARGV[2])\n"
                                "return 1\n";

int fxb_migrate_latest(void)
{
    int latest = 0;
    for (size_t i = 0; i < fxb_migrations_count; i++)
        if (fxb_migrations[i].version > latest)
            latest = fxb_migrations[i].version;
    return latest;
}

fxb_code fxb_migrate_applied(fxb_store *s, int *version, fxb_err *err)
{
    redisReply *r = fxb_store_command(s, err, "GET %s", FXB_KEY_SCHEMA_VERSION);
    if (r == NULL)
        return err ? err->code : FXB_UNAVAILABLE;
    fxb_code rc = FXB_OK;
    if (r->type == REDIS_REPLY_NIL) {
        *version = 0;
    } else {
        /* Digits only: strtol alone would take " 1" or "+1". */
        bool digits = r->type == REDIS_REPLY_STRING && r->len > 0 && r->len <= 9 &&
                      strspn(r->str, "0123456789") == r->len;
        long v = digits ? strtol(r->str, NULL, 10) : -1;
        if (v < 0)
            rc = fxb_err_set(err, FXB_FAILED_PRECONDITION, "SCHEMA_VERSION_INVALID", ZH_MAINTENANCE,
                             "store key %s does not hold a schema version", FXB_KEY_SCHEMA_VERSION);
        else
            *version = (int)v;
    }
    freeReplyObject(r);
    return rc;
}

static fxb_code ahead(fxb_err *err, int applied, int latest)
{
    return fxb_err_set(err, FXB_FAILED_PRECONDITION, "SCHEMA_AHEAD", ZH_MAINTENANCE,
                       "store schema is at version %d but this server only knows up to %d: "
                       "upgrade fxb-server",
                       applied, latest);
}

/* Applies one migration on top of version from. */
static fxb_code apply_one(fxb_store *s, const fxb_migration *m, int from, bool *applied,
                          fxb_err *err)
{
    size_t len = sizeof wrap_head - 1 + strlen(m->source) + sizeof wrap_tail;
    char *src = malloc(len);
    if (src == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_MAINTENANCE,
                           "out of memory preparing migration %s", m->name);
    snprintf(src, len, "%s%s%s", wrap_head, m->source, wrap_tail);

    fxb_script script = FXB_SCRIPT(m->name, src);
    const char *keys[] = {FXB_KEY_SCHEMA_VERSION};
    char from_txt[16], to_txt[16];
    snprintf(from_txt, sizeof from_txt, "%d", from);
    snprintf(to_txt, sizeof to_txt, "%d", m->version);
    const char *args[] = {from_txt, to_txt};
    redisReply *r = fxb_store_eval(s, err, &script, 1, keys, 2, args, NULL);
    free(src);
    if (r == NULL)
        return err ? err->code : FXB_INTERNAL;
    *applied = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return FXB_OK;
}

fxb_code fxb_migrate_apply(fxb_store *s, FILE *out, fxb_err *err)
{
    int current;
    fxb_code rc = fxb_migrate_applied(s, &current, err);
    if (rc != FXB_OK)
        return rc;
    int latest = fxb_migrate_latest();
    if (current > latest)
        return ahead(err, current, latest);

    int prev = 0;
    for (size_t i = 0; i < fxb_migrations_count; i++) {
        const fxb_migration *m = &fxb_migrations[i];
        /* The build sorts by file name; a table out of order would apply
         * steps out of order, so refuse rather than guess. */
        if (m->version <= prev)
            return fxb_err_set(err, FXB_INTERNAL, "MIGRATIONS_UNORDERED", ZH_MAINTENANCE,
                               "migration %s: versions must be unique and increasing", m->name);
        prev = m->version;
        if (m->version <= current)
            continue;
        bool applied = false;
        rc = apply_one(s, m, current, &applied, err);
        if (rc != FXB_OK)
            return rc;
        if (out != NULL)
            fprintf(out, "%s %s (schema version %d)\n",
                    applied ? "applied" : "already applied by another run:", m->name, m->version);
        current = m->version;
    }
    return FXB_OK;
}

fxb_code fxb_migrate_check(fxb_store *s, fxb_err *err)
{
    int applied;
    fxb_code rc = fxb_migrate_applied(s, &applied, err);
    if (rc != FXB_OK)
        return rc;
    int latest = fxb_migrate_latest();
    if (applied < latest)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "SCHEMA_BEHIND", ZH_MAINTENANCE,
                           "store schema is at version %d but this server needs %d: "
                           "run `fxb-admin migrate`",
                           applied, latest);
    if (applied > latest)
        return ahead(err, applied, latest);
    return FXB_OK;
}
