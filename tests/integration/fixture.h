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

/* A private redis-server (its own free port and temporary directory, no
 * persistence), for tests whose subject is process-wide state of a Redis
 * (the benefit engine's leader lease, full scans of every profile) and so
 * cannot share a database with tests running beside them. Writes its URL
 * (database 0) to url. Returns 0, or -1 after saying why on stderr.
 * fxb_test_private_redis_stop kills it and removes the directory (also
 * registered with atexit, so a failing test leaves nothing behind). */
int fxb_test_private_redis_start(char *url, size_t cap);
void fxb_test_private_redis_stop(void);

/* cmocka group fixtures for a test file whose every test uses the private
 * redis-server: start it (its URL then in fxb_test_private_url) and stop
 * it. */
int fxb_test_private_group_setup(void **state);
int fxb_test_private_group_teardown(void **state);
const char *fxb_test_private_url(void);

/* A reply's number (an integer, or a string of digits), then frees it; -1
 * for NULL or any other type. */
long long fxb_test_reply_number(redisReply *r);

#endif
