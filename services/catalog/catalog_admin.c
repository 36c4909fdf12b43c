/* fxb-admin catalog: `import [FILE]` loads the catalogue from JSON (the
 * embedded seed data/catalog/xinxiang.json without FILE; "-" reads stdin)
 * and `show CODE` prints an item with its current guide version. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/admin_cmds.h"
#include "server/arena.h"
#include "server/handler.h"
#include "services/catalog/catalog.h"
#include "services/catalog/catalog_import.h"
#include "store/datafile.h"

#define SEED_NAME "catalog/xinxiang.json"

/* The whole of in (at most FXB_CATALOG_FILE_MAX bytes) in a malloc'd
 * buffer; NULL with errno set on failure (EFBIG when too large). */
static char *read_all(FILE *in, size_t *len)
{
    size_t cap = 64 * 1024, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, in);
        n += got;
        if (got == 0) {
            if (ferror(in)) {
                free(buf);
                return NULL;
            }
            *len = n;
            return buf;
        }
        if (n == cap) {
            if (cap >= FXB_CATALOG_FILE_MAX + (size_t)1) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (grown == NULL)
                free(buf);
            buf = grown;
        }
    }
    return NULL;
}

static int cmd_import(const fxb_store_options *so, const char *path)
{
    const char *json;
    size_t len;
    char *owned = NULL;
    const char *what = path;
    if (path == NULL) {
        const fxb_datafile *f = fxb_datafile_find(SEED_NAME);
        if (f == NULL) {
            fprintf(stderr, "fxb-admin: catalog: no embedded %s in this build\n", SEED_NAME);
            return 1;
        }
        json = f->bytes;
        len = f->len;
        what = "data/" SEED_NAME " (embedded)";
    } else {
        FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
        if (in == NULL) {
            fprintf(stderr, "fxb-admin: cannot open %s: %s\n", path, strerror(errno));
            return 1;
        }
        owned = read_all(in, &len);
        int saved = errno;
        if (in != stdin)
            fclose(in);
        if (owned == NULL) {
            fprintf(stderr, "fxb-admin: cannot read %s: %s\n", path,
                    saved == EFBIG ? "larger than the catalogue limit" : strerror(saved));
            return 1;
        }
        json = owned;
    }
    fxb_err err;
    fxb_store *st = fxb_store_new(so, &err);
    if (st == NULL) {
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
        free(owned);
        return 2;
    }
    fxb_catalog_import_stats stats;
    fxb_code rc = fxb_catalog_import(st, json, len, fxb_wall_ms(), stdout, stderr, &stats, &err);
    if (rc != FXB_OK) {
        if (stats.errors > 0)
            fprintf(stderr, "fxb-admin: catalog: %s: %zu errors; nothing was imported\n", what,
                    stats.errors);
        else
            fprintf(stderr, "fxb-admin: catalog: %s\n", err.message);
    }
    fxb_store_free(st);
    free(owned);
    return rc == FXB_OK ? 0 : 1;
}

static int cmd_show(const fxb_store_options *so, const char *code)
{
    fxb_err err;
    fxb_store *st = fxb_store_new(so, &err);
    if (st == NULL) {
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
        return 2;
    }
    fxb_arena a;
    fxb_arena_init(&a, 0);
    Fxb__V1__ServiceItem *it;
    int rc = 0;
    if (fxb_catalog_get(st, &a, code, 0, &it, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: catalog: %s\n", err.message);
        rc = 1;
    } else {
        const Fxb__V1__Guide *g = it->guide;
        const char *level = fxb_catalog_level_name(it->level);
        printf("code        %s\n", it->code);
        printf("name        %s\n", it->name);
        printf("department  %s (%s)\n", it->department, it->department_name);
        printf("level       %s\n", level ? level : "-");
        printf("category    %s (%s)\n", it->category, it->category_name);
        printf("version     %u\n", it->current_version);
        printf("materials   %zu\n", g->n_materials);
        if (g->immediate)
            printf("time limit  immediate\n");
        else
            printf("time limit  %u working days (legal %u)\n", g->time_limit_working_days,
                   g->legal_time_limit_working_days);
    }
    fxb_arena_free(&a);
    fxb_store_free(st);
    return rc;
}

int fxb_admin_catalog(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                      int i)
{
    (void)cfg;
    if (i < argc && strcmp(argv[i], "import") == 0 && argc - i <= 2)
        return cmd_import(so, i + 1 < argc ? argv[i + 1] : NULL);
    if (i < argc && strcmp(argv[i], "show") == 0 && argc - i == 2)
        return cmd_show(so, argv[i + 1]);
    fprintf(stderr, "fxb-admin: catalog import [FILE] | catalog show CODE\n");
    return 2;
}
