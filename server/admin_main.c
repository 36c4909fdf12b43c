/* fxb-admin: operator commands against the store, configured exactly like
 * fxb-server (FXB_* variables, --config FILE). Exit codes: 0 done, 1 the
 * command failed, 2 bad usage or configuration. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "auth/account.h"
#include "auth/keys.h"
#include "auth/phone.h"
#include "auth/secret.h"
#include "server/handler.h"
#include "services/enterprise/registry.h"
#include "services/identity/identity.h"
#include "services/identity/registry.h"
#include "store/crypto.h"
#include "store/demo.h"
#include "server/admin_cmds.h"
#include "store/migrate.h"
#include "store/rekey.h"
#include "store/store.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: fxb-admin [--config FILE] COMMAND\n\n"
                 "commands:\n"
                 "  migrate            apply pending data migrations\n"
                 "  migrate --status   show the applied and the known schema versions\n"
                 "  demo-load          load demo data (development stores only)\n"
                 "  keys init          create the missing key files under FXB_DATA_DIR/keys\n"
                 "                     (token signing key, data keys, server secret)\n"
                 "  keys rotate-jwt    add a token signing key and make it the active one\n"
                 "  keys rotate-data   add a data encryption key and make it the active one\n"
                 "  rekey [--batch N]  re-encrypt every sealed field under the active data key\n"
                 "                     (N keys per SCAN, default 500); prints counts only\n"
                 "  staff --phone P --role officer|admin|data-feed [--dept CODE]\n"
                 "                     give the account of phone P a staff role\n"
                 "  registry import FILE\n"
                 "                     import the dev population registry (development only):\n"
                 "                     lines `name,id_number,district` or NDJSON objects\n"
                 "  enterprise-registry import FILE\n"
                 "                     import the dev enterprise registry (development only):\n"
                 "                     lines `credit_code,name,legal_rep_id_number` or NDJSON\n"
                 "  catalog import [FILE]\n"
                 "                     load service items, guides and bundles from JSON (default:\n"
                 "                     the embedded seed data/catalog/xinxiang.json); a changed\n"
                 "                     guide becomes a new version\n"
                 "  catalog show CODE  print an item and its current guide version\n"
                 "  calendar import [FILE]\n"
                 "                     load working-day calendars from JSON (default: the\n"
                 "                     embedded seed data/calendar/cn.json, 2024-2026)\n"
                 "  calendar show YEAR print a year's holidays and make-up working days\n"
                 "  calendar set YYYYMMDD holiday|workday|normal [NAME]\n"
                 "                     change one day of a year's calendar\n"
                 "  licence issue --phone P --type T --name NAME --number N --issuer ISSUER\n"
                 "                [--valid-until YYYYMMDD]\n"
                 "                     put an electronic licence in a wallet (development only:\n"
                 "                     stands for the licence platform)\n"
                 "  green set --phone P --kind soldier|disabled [--off]\n"
                 "                     record (or clear) a person's green-channel status as the\n"
                 "                     department reports it (appointments, art. 27)\n"
                 "  profile schema import [FILE]\n"
                 "                     replace the profile attribute schema (default: the\n"
                 "                     embedded seed data/benefit/schema.json)\n"
                 "  profile import FILE [--format ndjson|csv] [--dept CODE] [--progress]\n"
                 "                     feed profiles as a department (admin when no --dept);\n"
                 "                     bad rows are reported (row, field, why) and skipped\n"
                 "  version            print the version\n\n");
    fxb_config_print_help(out);
}

static int cmd_migrate(fxb_store *st, bool status_only)
{
    fxb_err err;
    int applied = 0;
    if (fxb_migrate_applied(st, &applied, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: %s\n", err.message);
        return 1;
    }
    int latest = fxb_migrate_latest();
    if (status_only) {
        printf("applied schema version: %d\nknown schema version:   %d\n", applied, latest);
        for (size_t i = 0; i < fxb_migrations_count; i++)
            printf("  %04d %-40s %s\n", fxb_migrations[i].version, fxb_migrations[i].name,
                   fxb_migrations[i].version <= applied ? "applied" : "pending");
        if (applied > latest)
            printf("the store is AHEAD of this build: upgrade fxb-admin/fxb-server\n");
        return 0;
    }
    if (fxb_migrate_apply(st, stdout, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: %s\n", err.message);
        return 1;
    }
    printf("schema at version %d\n", fxb_migrate_latest());
    return 0;
}

/* A development registry and how to import it. */
typedef fxb_code (*import_fn)(fxb_store *s, const fxb_crypto *c, FILE *in, int64_t today,
                              FILE *report, size_t *imported, size_t *bad, fxb_err *err);
typedef struct dev_registry {
    const char *command;   /* "registry" */
    const char *what;      /* "registry records" */
    const char *prod_note; /* what stands in its place in production */
    import_fn import;
} dev_registry;

static const dev_registry population_registry = {
    "registry", "registry records",
    "the population registry is the national verification service there", fxb_registry_dev_import};
static const dev_registry enterprise_registry = {
    "enterprise-registry", "enterprise registry records",
    "the enterprise registry is the market regulation service there", fxb_entreg_dev_import};

/* <command> import FILE ("-" = stdin): loads a development registry. */
static int cmd_registry(const dev_registry *reg, const fxb_config *cfg, const fxb_store_options *so,
                        int argc, char **argv, int i)
{
    if (i + 2 != argc || strcmp(argv[i], "import") != 0) {
        fprintf(stderr, "fxb-admin: %s import FILE\n", reg->command);
        return 2;
    }
    if (cfg->env == FXB_ENV_PRODUCTION) {
        fprintf(stderr, "fxb-admin: %s import refused: FXB_ENV is production (%s)\n", reg->command,
                reg->prod_note);
        return 2;
    }
    const char *path = argv[i + 1];
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "fxb-admin: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    fxb_err err;
    char ddir[FXB_CONFIG_STR_MAX + 32];
    snprintf(ddir, sizeof ddir, "%s/%s", cfg->data_dir, FXB_CRYPTO_KEY_SUBDIR);
    fxb_crypto *c = fxb_crypto_load(ddir, false, &err);
    fxb_store *st = c ? fxb_store_new(so, &err) : NULL;
    int rc = 1;
    size_t imported = 0, bad = 0;
    if (st != NULL && reg->import(st, c, in, fxb_idv_today(fxb_wall_ms()), stderr, &imported, &bad,
                                  &err) == FXB_OK) {
        printf("imported %zu %s, %zu bad lines\n", imported, reg->what, bad);
        rc = bad == 0 ? 0 : 1;
    } else {
        fprintf(stderr, "fxb-admin: %s\n", err.message);
    }
    fxb_store_free(st);
    fxb_crypto_free(c);
    if (in != stdin)
        fclose(in);
    return rc;
}

static int cmd_keys(const fxb_config *cfg, const char *what)
{
    fxb_err err;
    char jdir[FXB_KEYRING_PATH_MAX], ddir[FXB_CONFIG_STR_MAX + 32];
    snprintf(ddir, sizeof ddir, "%s/%s", cfg->data_dir, FXB_CRYPTO_KEY_SUBDIR);
    if (fxb_keyring_path(cfg->data_dir, jdir, sizeof jdir, &err) != FXB_OK)
        goto fail;
    if (strcmp(what, "init") == 0) {
        fxb_keyring *ring = fxb_keyring_load(jdir, &err);
        if (ring == NULL && err.code != FXB_NOT_FOUND)
            goto fail; /* a broken key file is for a human to look at */
        if (ring == NULL) {
            char kid[FXB_KEY_KID_MAX + 1];
            if (fxb_keyring_generate(jdir, kid, &err) != FXB_OK)
                goto fail;
            printf("created token signing key %s\n", kid);
        }
        fxb_keyring_free(ring);
        fxb_crypto *c = fxb_crypto_load(ddir, true, &err);
        if (c == NULL)
            goto fail;
        printf("data keys ready (active %s)\n", fxb_crypto_active_kid(c));
        fxb_crypto_free(c);
        uint8_t secret[FXB_SECRET_LEN];
        if (fxb_secret_load_or_create(cfg->data_dir, secret, true, &err) != FXB_OK)
            goto fail;
        memset(secret, 0, sizeof secret);
        printf("server secret ready\n");
        return 0;
    }
    char kid[64];
    if (strcmp(what, "rotate-jwt") == 0) {
        if (fxb_keyring_generate(jdir, kid, &err) != FXB_OK)
            goto fail;
        printf("token signing key %s is now active; restart the servers. Delete a retired\n"
               "key once every token it signed has expired (15 min 30 s); at most 16 keys.\n",
               kid);
        return 0;
    }
    if (strcmp(what, "rotate-data") == 0) {
        if (fxb_crypto_generate_key(ddir, kid, &err) != FXB_OK)
            goto fail;
        printf("data key %s is now active; copy it to every server, then restart them\n", kid);
        return 0;
    }
    fprintf(stderr, "fxb-admin: keys: unknown action \"%s\"\n", what);
    return 2;
fail:
    fprintf(stderr, "fxb-admin: %s\n", err.message);
    return 1;
}

/* rekey [--batch N]: after `keys rotate-data`, so old keys can retire. The
 * servers need not stop: values are replaced by compare-and-set, and every
 * server must already hold the active key (rotate-data says so). */
static int cmd_rekey(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                     int i)
{
    size_t batch = FXB_REKEY_BATCH_DEFAULT;
    for (; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            errno = 0;
            unsigned long long n = strtoull(argv[++i], &end, 10);
            if (errno != 0 || end == argv[i] || *end != '\0' || n == 0 || n > FXB_REKEY_BATCH_MAX) {
                fprintf(stderr, "fxb-admin: rekey: --batch must be 1..%d\n", FXB_REKEY_BATCH_MAX);
                return 2;
            }
            batch = (size_t)n;
        } else {
            fprintf(stderr, "fxb-admin: rekey: unknown argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    fxb_err err;
    char ddir[FXB_CONFIG_STR_MAX + 32];
    snprintf(ddir, sizeof ddir, "%s/%s", cfg->data_dir, FXB_CRYPTO_KEY_SUBDIR);
    fxb_crypto *c = fxb_crypto_load(ddir, false, &err);
    if (c == NULL) {
        fprintf(stderr, "fxb-admin: %s\n", err.message);
        return 1;
    }
    fxb_store *st = fxb_store_new(so, &err);
    if (st == NULL) {
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
        fxb_crypto_free(c);
        return 2;
    }
    fxb_rekey_counts n;
    fxb_code rc = fxb_rekey_run(st, c, batch, stderr, &n, &err);
    printf("rekey to %s: %zu keys, %zu values re-encrypted, %zu already current, %zu changed "
           "meanwhile (run again), %zu failed\n",
           fxb_crypto_active_kid(c), n.keys, n.rekeyed, n.current, n.raced, n.failed);
    if (rc != FXB_OK)
        fprintf(stderr, "fxb-admin: rekey stopped: %s\n", err.message);
    fxb_store_free(st);
    fxb_crypto_free(c);
    return rc == FXB_OK && n.failed == 0 ? 0 : 1;
}

static int cmd_staff(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                     int i)
{
    const char *phone_in = NULL, *role = NULL, *dept = "";
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--phone") == 0 && i + 1 < argc)
            phone_in = argv[++i];
        else if (strcmp(argv[i], "--role") == 0 && i + 1 < argc)
            role = argv[++i];
        else if (strcmp(argv[i], "--dept") == 0 && i + 1 < argc)
            dept = argv[++i];
        else {
            fprintf(stderr, "fxb-admin: staff: unknown argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    uint32_t roles = 0;
    if (role && strcmp(role, "officer") == 0)
        roles = FXB_ROLE_OFFICER;
    else if (role && strcmp(role, "admin") == 0)
        roles = FXB_ROLE_ADMIN;
    else if (role && strcmp(role, "data-feed") == 0)
        roles = FXB_ROLE_DATA_FEED;
    if (phone_in == NULL || roles == 0) {
        fprintf(stderr, "fxb-admin: staff needs --phone and --role officer|admin|data-feed\n");
        return 2;
    }
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1];
    if (fxb_phone_normalize(phone_in, phone, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: --phone: %s\n", err.message);
        return 2;
    }
    char ddir[FXB_CONFIG_STR_MAX + 32];
    snprintf(ddir, sizeof ddir, "%s/%s", cfg->data_dir, FXB_CRYPTO_KEY_SUBDIR);
    fxb_crypto *c = fxb_crypto_load(ddir, false, &err);
    if (c == NULL) {
        fprintf(stderr, "fxb-admin: %s (run `fxb-admin keys init` first)\n", err.message);
        return 1;
    }
    fxb_store *st = fxb_store_new(so, &err);
    int rc = 1;
    fxb_account acc;
    if (st &&
        fxb_account_grant_role(st, c, phone, roles, dept, fxb_wall_ms(), &acc, &err) == FXB_OK) {
        char masked[FXB_PHONE_LEN + 1];
        fxb_phone_mask(phone, masked);
        printf("account %s (%s): roles %u, department %s\n", acc.id, masked, acc.roles,
               acc.dept[0] ? acc.dept : "-");
        rc = 0;
    } else {
        fprintf(stderr, "fxb-admin: %s\n", err.message);
    }
    fxb_store_free(st);
    fxb_crypto_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("fxb-admin %s\n", FXB_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        } else {
            break;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    if (strcmp(cmd, "version") == 0) {
        printf("fxb-admin %s (schema %d)\n", FXB_VERSION, fxb_migrate_latest());
        return 0;
    }

    fxb_config cfg;
    fxb_err err;
    fxb_err_clear(&err);
    fxb_config_defaults(&cfg);
    if ((file && fxb_config_load_file(&cfg, file, &err) != FXB_OK) ||
        fxb_config_load_env(&cfg, NULL, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: %s\n", err.message);
        return 2;
    }
    fxb_store_options so = {.url = cfg.redis_url,
                            .connect_timeout_ms = cfg.redis_connect_timeout_ms,
                            .command_timeout_ms = cfg.redis_command_timeout_ms};

    if (strcmp(cmd, "migrate") == 0) {
        bool status_only = false;
        for (; i < argc; i++) {
            if (strcmp(argv[i], "--status") == 0) {
                status_only = true;
            } else {
                fprintf(stderr, "fxb-admin: migrate: unknown argument \"%s\"\n", argv[i]);
                return 2;
            }
        }
        fxb_store *st = fxb_store_new(&so, &err);
        if (st == NULL) {
            fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
            return 2;
        }
        int rc = cmd_migrate(st, status_only);
        fxb_store_free(st);
        return rc;
    }
    if (strcmp(cmd, "keys") == 0) {
        if (i + 1 != argc) {
            fprintf(stderr, "fxb-admin: keys init|rotate-jwt|rotate-data\n");
            return 2;
        }
        return cmd_keys(&cfg, argv[i]);
    }
    if (strcmp(cmd, "registry") == 0)
        return cmd_registry(&population_registry, &cfg, &so, argc, argv, i);
    if (strcmp(cmd, "enterprise-registry") == 0)
        return cmd_registry(&enterprise_registry, &cfg, &so, argc, argv, i);
    if (strcmp(cmd, "rekey") == 0)
        return cmd_rekey(&cfg, &so, argc, argv, i);
    if (strcmp(cmd, "staff") == 0)
        return cmd_staff(&cfg, &so, argc, argv, i);
    static const struct {
        const char *name;
        fxb_admin_cmd_fn fn;
    } module_cmds[] = {
        {"catalog", fxb_admin_catalog}, {"calendar", fxb_admin_calendar},
        {"licence", fxb_admin_licence}, {"green", fxb_admin_green},
        {"profile", fxb_admin_profile},
    };
    for (size_t k = 0; k < sizeof module_cmds / sizeof module_cmds[0]; k++)
        if (strcmp(cmd, module_cmds[k].name) == 0)
            return module_cmds[k].fn(&cfg, &so, argc, argv, i);
    if (strcmp(cmd, "demo-load") == 0) {
        if (i < argc) {
            fprintf(stderr, "fxb-admin: demo-load takes no arguments\n");
            return 2;
        }
        if (cfg.env == FXB_ENV_PRODUCTION) {
            fprintf(stderr, "fxb-admin: demo-load refused: FXB_ENV is production\n");
            return 2;
        }
        fxb_store *st = fxb_store_new(&so, &err);
        if (st == NULL) {
            fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
            return 2;
        }
        int rc = 0;
        if (fxb_migrate_check(st, &err) != FXB_OK || fxb_demo_load(st, stdout, &err) != FXB_OK) {
            fprintf(stderr, "fxb-admin: %s\n", err.message);
            rc = 1;
        }
        fxb_store_free(st);
        return rc;
    }
    fprintf(stderr, "fxb-admin: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
