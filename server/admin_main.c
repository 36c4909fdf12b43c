/* fxb-admin: operator commands against the store, configured exactly like
 * fxb-server (FXB_* variables, --config FILE). Exit codes: 0 done, 1 the
 * command failed, 2 bad usage or configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "store/demo.h"
#include "store/migrate.h"
#include "store/store.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: fxb-admin [--config FILE] COMMAND\n\n"
                 "commands:\n"
                 "  migrate            apply pending data migrations\n"
                 "  migrate --status   show the applied and the known schema versions\n"
                 "  demo-load          load demo data (development stores only)\n"
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
