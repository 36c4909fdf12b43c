/* What the integration tests share: the Redis they run against. */
#ifndef FXB_TEST_FIXTURE_H
#define FXB_TEST_FIXTURE_H

#include <stddef.h>

#include "store/store.h"

/* FXB_TEST_REDIS_URL (tests/run.sh starts a throwaway redis-server and sets
 * it) with its database replaced by db, into out. Returns 0, or -1 after
 * saying why on stderr (unset, unparsable, or out too small). */
int fxb_test_redis_url(int db, char *out, size_t cap);

/* A store on url, reachable, with its database emptied (FLUSHDB): each
 * test starts from nothing. NULL after saying why on stderr. */
fxb_store *fxb_test_store_open(const char *url);

#endif
