/* Integration test fixture (fixture.h). */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

int fxb_test_redis_url(int db, char *out, size_t cap)
{
    const char *base = getenv("FXB_TEST_REDIS_URL");
    if (base == NULL || base[0] == '\0') {
        fprintf(stderr, "FXB_TEST_REDIS_URL is not set (tests/run.sh sets it)\n");
        return -1;
    }
    fxb_store_url u;
    fxb_err err;
    if (fxb_store_url_parse(base, &u, &err) != FXB_OK) {
        fprintf(stderr, "FXB_TEST_REDIS_URL: %s\n", err.message);
        return -1;
    }
    int n;
    if (u.is_unix)
        n = snprintf(out, cap, "unix://%s?db=%d", u.host, db);
    else if (strchr(u.host, ':') != NULL)
        n = snprintf(out, cap, "redis://[%s]:%d/%d", u.host, u.port, db);
    else
        n = snprintf(out, cap, "redis://%s:%d/%d", u.host, u.port, db);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "FXB_TEST_REDIS_URL is too long\n");
        return -1;
    }
    return 0;
}

fxb_store *fxb_test_store_open(const char *url)
{
    fxb_store_options opt = {.url = url};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    if (s == NULL || !fxb_store_ping(s)) {
        fprintf(stderr, "cannot reach %s\n", url);
        fxb_store_free(s);
        return NULL;
    }
    redisReply *r = fxb_store_command(s, &err, "FLUSHDB");
    if (r == NULL) {
        fprintf(stderr, "FLUSHDB on %s: %s\n", url, err.message);
        fxb_store_free(s);
        return NULL;
    }
    freeReplyObject(r);
    return s;
}
