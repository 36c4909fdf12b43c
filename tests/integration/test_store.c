/* fxb_store against real Redis: commands, pipelines, scripts and the error
 * convention on the shared server (db 14, keys under a per-process prefix),
 * and outages (stop, restart, stall, killed connection) on a private
 * redis-server this file starts on a free port. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

/* db 15 belongs to test_migrate, which flushes it; this file never flushes
 * and only touches keys under its prefix. */
#define SHARED_DB 14
/* Generous: CI machines are noisy; the point is "not a hang". */
#define FAIL_FAST_MAX_MS 3000
#define RECOVER_MAX_MS   10000

static char shared_url[FXB_STORE_URL_MAX + 1];
static char prefix[64];

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static const char *key(const char *name)
{
    static char buf[4][128];
    static int next;
    char *k = buf[next++ % 4];
    snprintf(k, sizeof buf[0], "%s%s", prefix, name);
    return k;
}

static fxb_store *open_store(const char *url, int command_timeout_ms, int backoff_min_ms,
                             int backoff_max_ms)
{
    fxb_store_options opt = {.url = url,
                             .connect_timeout_ms = 500,
                             .command_timeout_ms = command_timeout_ms,
                             .backoff_min_ms = backoff_min_ms,
                             .backoff_max_ms = backoff_max_ms};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    if (s == NULL)
        fail_msg("fxb_store_new(%s): %s", url, err.message);
    return s;
}

static fxb_store *open_shared(void)
{
    return open_store(shared_url, 2000, 50, 2000);
}

/* ---- a private redis-server ------------------------------------------- */

typedef struct private_redis {
    pid_t pid;
    int port;
    char dir[64];
    char sock[128];
    char url[FXB_STORE_URL_MAX];
} private_redis;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static bool answers_ping(int port)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c != NULL && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r != NULL)
            freeReplyObject(r);
    }
    if (c != NULL)
        redisFree(c);
    return ok;
}

static void redis_start(private_redis *r)
{
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--dir", r->dir, "--unixsocket", r->sock,
               "--unixsocketperm", "700", (char *)NULL);
        _exit(127);
    }
    long long deadline = now_ms() + RECOVER_MAX_MS;
    while (!answers_ping(r->port)) {
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid)
            fail_msg("redis-server exited at start (is it on PATH?)");
        if (now_ms() > deadline)
            fail_msg("redis-server on port %d did not answer PING", r->port);
        sleep_ms(20);
    }
}

static void redis_stop(private_redis *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGCONT); /* in case a test left it stopped */
    kill(r->pid, SIGTERM);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

static int private_setup(void **state)
{
    private_redis *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    snprintf(r->dir, sizeof r->dir, "/tmp/fxb-test-store-XXXXXX");
    if (mkdtemp(r->dir) == NULL)
        return -1;
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    r->port = free_port();
    snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d/0", r->port);
    redis_start(r);
    *state = r;
    return 0;
}

static int private_teardown(void **state)
{
    private_redis *r = *state;
    redis_stop(r);
    unlink(r->sock);
    rmdir(r->dir);
    free(r);
    return 0;
}

/* Runs PING until it succeeds or RECOVER_MAX_MS pass; returns the wait. */
static long long wait_until_usable(fxb_store *s)
{
    long long start = now_ms();
    while (!fxb_store_ping(s)) {
        if (now_ms() - start > RECOVER_MAX_MS)
            fail_msg("store did not recover within %d ms", RECOVER_MAX_MS);
        sleep_ms(25);
    }
    return now_ms() - start;
}

static void assert_unavailable(const fxb_err *err)
{
    assert_int_equal(err->code, FXB_UNAVAILABLE);
    assert_string_equal(err->reason, "STORE_UNAVAILABLE");
    assert_non_null(strstr(err->message, "the data store is unavailable; retry shortly"));
    assert_string_equal(err->message_zh, "系统繁忙，请稍后重试");
    assert_true(err->retry_after_ms > 0);
}

/* ---- commands on the shared server ------------------------------------ */

static void test_command_returns_a_reply_the_caller_frees(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    assert_true(fxb_store_connected(s));
    redisReply *r = fxb_store_command(s, &err, "SET %s %s", key("a"), "v1");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = fxb_store_command(s, &err, "GET %s", key("a"));
    assert_non_null(r);
    assert_string_equal(r->str, "v1");
    freeReplyObject(r);
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", key("a")));
    fxb_store_free(s);
}

static void test_commandv_is_binary_safe(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    const char value[] = {'a', '\0', 'b', '\r', '\n'};
    const char *set[] = {"SET", key("bin"), value};
    size_t set_len[] = {3, strlen(set[1]), sizeof value};
    redisReply *r = fxb_store_commandv(s, &err, 3, set, set_len);
    assert_non_null(r);
    freeReplyObject(r);
    const char *get[] = {"GET", key("bin")};
    r = fxb_store_commandv(s, &err, 2, get, NULL);
    assert_non_null(r);
    assert_int_equal(r->len, sizeof value);
    assert_memory_equal(r->str, value, sizeof value);
    freeReplyObject(r);
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", key("bin")));
    fxb_store_free(s);
}

static void test_store_selects_the_db_in_the_url(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "CLIENT INFO");
    assert_non_null(r);
    char want[16];
    snprintf(want, sizeof want, " db=%d ", SHARED_DB);
    assert_non_null(strstr(r->str, want));
    freeReplyObject(r);
    fxb_store_free(s);
}

static void test_error_reply_is_internal_store_error_and_counted(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    freeReplyObject(fxb_store_command(s, &err, "SET %s notanumber", key("n")));
    uint64_t before = fxb_store_error_count();
    assert_null(fxb_store_command(s, &err, "INCR %s", key("n")));
    assert_int_equal(err.code, FXB_INTERNAL);
    assert_string_equal(err.reason, "STORE_ERROR");
    assert_non_null(strstr(err.message, "not an integer"));
    assert_true(fxb_store_error_count() > before);
    /* An error reply leaves the connection usable. */
    assert_true(fxb_store_connected(s));
    assert_true(fxb_store_ping(s));
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", key("n")));
    fxb_store_free(s);
}

static void test_error_reply_text_is_capped_at_200_bytes(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    assert_null(fxb_store_command(s, &err, "EVAL %s 0",
                                  "return redis.error_reply('LONG ' .. string.rep('x', 600))"));
    assert_string_equal(err.reason, "STORE_ERROR");
    const char *x = strstr(err.message, "LONG ");
    assert_non_null(x);
    assert_int_equal(strlen(x), FXB_STORE_ERROR_TEXT_MAX);
    fxb_store_free(s);
}

static void test_error_reply_cap_never_splits_a_utf8_character(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    /* "UTF " then 3-byte characters: byte 200 falls inside the 66th. */
    assert_null(
        fxb_store_command(s, &err, "EVAL %s 0",
                          "return redis.error_reply('UTF ' .. string.rep('\xe4\xb8\xad', 100))"));
    const char *x = strstr(err.message, "UTF ");
    assert_non_null(x);
    assert_int_equal(strlen(x), 4 + 65 * 3);
    fxb_store_free(s);
}

static void test_pipeline_returns_every_reply_in_order(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    const char *k = key("p");
    const char *a0[] = {"SET", k, "41"};
    const char *a1[] = {"INCR", k};
    const char *a2[] = {"HGET", k, "f"}; /* WRONGTYPE: an error reply in the batch */
    const char *a3[] = {"GET", k};
    fxb_store_cmd cmds[] = {{3, a0, NULL}, {2, a1, NULL}, {3, a2, NULL}, {2, a3, NULL}};
    redisReply *replies[4];
    assert_int_equal(fxb_store_pipeline(s, &err, 4, cmds, replies), FXB_OK);
    assert_int_equal(replies[0]->type, REDIS_REPLY_STATUS);
    assert_int_equal(replies[1]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(replies[1]->integer, 42);
    assert_int_equal(replies[2]->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(replies[2]->str, "WRONGTYPE"));
    assert_int_equal(replies[3]->type, REDIS_REPLY_STRING);
    assert_string_equal(replies[3]->str, "42");
    for (int i = 0; i < 4; i++)
        freeReplyObject(replies[i]);
    assert_true(fxb_store_ping(s));
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", k));
    fxb_store_free(s);
}

static void test_pipeline_of_no_commands_succeeds(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    assert_int_equal(fxb_store_pipeline(s, &err, 0, NULL, NULL), FXB_OK);
    fxb_store_free(s);
}

static void test_hash_fields_are_read_from_an_hgetall_reply(void **state)
{
    (void)state;
    fxb_store *s = open_shared();
    fxb_err err;
    const char *k = key("hash");
    redisReply *r = fxb_store_command(s, &err, "HSET %s a 1 b -42 c text", k);
    assert_non_null(r);
    freeReplyObject(r);
    r = fxb_store_command(s, &err, "HGETALL %s", k);
    assert_non_null(r);
    assert_string_equal(fxb_store_hash_get(r, "c"), "text");
    assert_null(fxb_store_hash_get(r, "missing"));
    assert_int_equal(fxb_store_hash_int(r, "b"), -42);
    assert_int_equal(fxb_store_hash_int(r, "missing"), 0);
    freeReplyObject(r);
    /* not an array (a string reply), or no reply at all: absent */
    r = fxb_store_command(s, &err, "HGET %s a", k);
    assert_non_null(r);
    assert_null(fxb_store_hash_get(r, "a"));
    freeReplyObject(r);
    assert_null(fxb_store_hash_get(NULL, "a"));
    fxb_store_free(s);
}

static void test_send_does_not_wait_and_later_replies_stay_paired(void **state)
{
    (void)state;
    fxb_store *s = open_shared();
    fxb_err err;
    const char *k = key("send");
    const char *a0[] = {"SET", k, "1"};
    const char *a1[] = {"HGET", k, "f"}; /* WRONGTYPE: an error reply, counted when read */
    const char *a2[] = {"INCR", k};
    fxb_store_cmd cmds[] = {{3, a0, NULL}, {3, a1, NULL}, {2, a2, NULL}};
    uint64_t errors = fxb_store_error_count();
    assert_int_equal(fxb_store_send(s, &err, 3, cmds), FXB_OK);
    /* written: another connection sees the effect */
    fxb_store *other = open_shared();
    redisReply *r = NULL;
    for (int i = 0; i < 100; i++) {
        r = fxb_store_command(other, &err, "GET %s", k);
        assert_non_null(r);
        if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "2") == 0)
            break;
        freeReplyObject(r);
        r = NULL;
        sleep_ms(10);
    }
    assert_non_null(r);
    freeReplyObject(r);
    fxb_store_free(other);
    /* the next command gets its own reply, not one of the three */
    r = fxb_store_command(s, &err, "GET %s", k);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "2");
    freeReplyObject(r);
    assert_int_equal(fxb_store_error_count(), errors + 1);
    assert_true(fxb_store_connected(s));
    /* replies drained explicitly, then a pipeline pairs as usual */
    assert_int_equal(fxb_store_send(s, &err, 1, &cmds[2]), FXB_OK);
    fxb_store_drain(s);
    fxb_store_drain(s);
    assert_true(fxb_store_ping(s));
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", k));
    fxb_store_free(s);
}

/* ---- scripts ---------------------------------------------------------- */

static fxb_script echo_script = FXB_SCRIPT(
    "test_echo", "redis.call('SET', KEYS[1], ARGV[1]) return {KEYS[1], ARGV[1], ARGV[2]}");

static void test_eval_runs_script_with_keys_and_args(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    const char *keys[] = {key("e")};
    const char *args[] = {"x\0y", "2"};
    size_t lens[] = {3, 1};
    redisReply *r = fxb_store_eval(s, &err, &echo_script, 1, keys, 2, args, lens);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, keys[0]);
    assert_int_equal(r->element[1]->len, 3);
    assert_memory_equal(r->element[1]->str, "x\0y", 3);
    assert_string_equal(r->element[2]->str, "2");
    freeReplyObject(r);
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", keys[0]));
    fxb_store_free(s);
}

/* fxb_store_eval_with: the extras' replies come back after the script's,
 * also when the script is not cached (NOSCRIPT, then EVAL) and when the
 * script refuses (a business error: the extras still answered). */
static void test_eval_with_returns_the_extra_replies_of_the_same_round_trip(void **state)
{
    (void)state;
    fxb_store *s = open_shared();
    fxb_err err;
    static fxb_script sc = FXB_SCRIPT("test_with", "return redis.call('INCR', KEYS[1])");
    static fxb_script no =
        FXB_SCRIPT("test_with_no", "return redis.error_reply('FXB 9 NOT_NOW later')");
    const char *keys[] = {key("w")};
    const char *get[] = {"GET", keys[0]};
    const char *other[] = {"EXISTS", key("absent")};
    fxb_store_cmd extra[] = {{2, get, NULL}, {2, other, NULL}};
    redisReply *x[2];
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", keys[0]));
    /* cached first (a fresh Redis has not seen it): the key is 1 */
    redisReply *r0 = fxb_store_eval(s, &err, &sc, 1, keys, 0, NULL, NULL);
    assert_non_null(r0);
    freeReplyObject(r0);
    for (int round = 1; round <= 3; round++) {
        if (round == 2)
            freeReplyObject(fxb_store_command(s, &err, "SCRIPT FLUSH"));
        redisReply *r = fxb_store_eval_with(s, &err, &sc, 1, keys, 0, NULL, NULL, 2, extra, x);
        assert_non_null(r);
        assert_int_equal(r->integer, round + 1);
        assert_non_null(x[0]);
        assert_non_null(x[1]);
        assert_int_equal(x[1]->integer, 0);
        /* the GET ran after the script, except on NOSCRIPT (then before) */
        assert_int_equal(x[0]->type, REDIS_REPLY_STRING);
        assert_int_equal(strtoll(x[0]->str, NULL, 10), round == 2 ? round : round + 1);
        freeReplyObject(r);
        freeReplyObject(x[0]);
        freeReplyObject(x[1]);
    }
    assert_null(fxb_store_eval_with(s, &err, &no, 0, NULL, 0, NULL, NULL, 2, extra, x));
    assert_int_equal(err.code, FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "NOT_NOW");
    assert_non_null(x[0]);
    assert_non_null(x[1]);
    freeReplyObject(x[0]);
    freeReplyObject(x[1]);
    /* extras without room for their replies: refused, nothing run */
    assert_null(fxb_store_eval_with(s, &err, &sc, 1, keys, 0, NULL, NULL, 2, extra, NULL));
    assert_int_equal(err.code, FXB_INTERNAL);
    redisReply *v = fxb_store_command(s, &err, "GET %s", keys[0]);
    assert_string_equal(v->str, "4");
    freeReplyObject(v);
    freeReplyObject(fxb_store_command(s, &err, "DEL %s", keys[0]));
    fxb_store_free(s);
}

static void test_eval_sha_is_the_one_redis_computes(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    static fxb_script sc = FXB_SCRIPT("test_sha", "return 'sha test'");
    redisReply *r = fxb_store_eval(s, &err, &sc, 0, NULL, 0, NULL, NULL);
    assert_non_null(r);
    freeReplyObject(r);
    r = fxb_store_command(s, &err, "SCRIPT LOAD %s", sc.source);
    assert_non_null(r);
    assert_string_equal(sc.sha, r->str);
    assert_int_equal(sc.sha_state, 2);
    freeReplyObject(r);
    fxb_store_free(s);
}

static void test_eval_maps_fxb_error_reply_to_code_reason_and_message(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    static fxb_script sc = FXB_SCRIPT(
        "test_conflict", "return redis.error_reply('FXB 10 VERSION_CONFLICT stale write')");
    uint64_t before = fxb_store_error_count();
    assert_null(fxb_store_eval(s, &err, &sc, 0, NULL, 0, NULL, NULL));
    assert_int_equal(err.code, FXB_ABORTED);
    assert_string_equal(err.reason, "VERSION_CONFLICT");
    assert_string_equal(err.message, "stale write");
    assert_true(err.message_zh[0] != '\0');
    assert_int_equal(fxb_store_error_count(), before);
    assert_true(fxb_store_connected(s));
    fxb_store_free(s);
}

static void test_eval_maps_fxb_error_raised_with_error_table_and_drops_redis_suffix(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    static fxb_script sc =
        FXB_SCRIPT("test_raise", "error({err = 'FXB 5 ITEM_NOT_FOUND no such item'})");
    assert_null(fxb_store_eval(s, &err, &sc, 0, NULL, 0, NULL, NULL));
    assert_int_equal(err.code, FXB_NOT_FOUND);
    assert_string_equal(err.reason, "ITEM_NOT_FOUND");
    assert_string_equal(err.message, "no such item");
    fxb_store_free(s);
}

static void test_eval_fxb_error_without_message_uses_the_reason(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    static fxb_script sc = FXB_SCRIPT("test_bare", "return redis.error_reply('FXB 6 TAKEN')");
    assert_null(fxb_store_eval(s, &err, &sc, 0, NULL, 0, NULL, NULL));
    assert_int_equal(err.code, FXB_ALREADY_EXISTS);
    assert_string_equal(err.reason, "TAKEN");
    assert_string_equal(err.message, "TAKEN");
    fxb_store_free(s);
}

static void test_eval_malformed_fxb_error_is_internal_store_error(void **state)
{
    static fxb_script bad[] = {
        FXB_SCRIPT("bad_code", "return redis.error_reply('FXB 99 SOME_REASON text')"),
        FXB_SCRIPT("zero_code", "return redis.error_reply('FXB 0 SOME_REASON text')"),
        FXB_SCRIPT("lower_reason", "return redis.error_reply('FXB 10 conflict text')"),
        FXB_SCRIPT("no_reason", "return redis.error_reply('FXB 10')"),
        FXB_SCRIPT("no_space", "return redis.error_reply('FXB 10 REASON\ttext')"),
        FXB_SCRIPT("prefix", "return redis.error_reply('XFXB 10 REASON text')"),
    };
    fxb_store *s = open_shared();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fxb_err err;
        assert_null(fxb_store_eval(s, &err, &bad[i], 0, NULL, 0, NULL, NULL));
        if (err.code != FXB_INTERNAL || strcmp(err.reason, "STORE_ERROR") != 0)
            fail_msg("%s: got %d %s", bad[i].name, err.code, err.reason);
        assert_non_null(strstr(err.message, bad[i].name));
    }
    fxb_store_free(s);
}

static void test_eval_runtime_error_is_internal_store_error_naming_the_script(void **state)
{
    fxb_store *s = open_shared();
    fxb_err err;
    static fxb_script sc = FXB_SCRIPT("test_boom", "return redis.call('NO_SUCH_COMMAND')");
    uint64_t before = fxb_store_error_count();
    assert_null(fxb_store_eval(s, &err, &sc, 0, NULL, 0, NULL, NULL));
    assert_int_equal(err.code, FXB_INTERNAL);
    assert_string_equal(err.reason, "STORE_ERROR");
    assert_non_null(strstr(err.message, "test_boom"));
    assert_true(fxb_store_error_count() > before);
    fxb_store_free(s);
}

static fxb_script shared_script = FXB_SCRIPT("test_threads", "return redis.call('INCR', KEYS[1])");

static void *eval_many(void *arg)
{
    fxb_store *s = open_shared();
    const char *keys[] = {arg};
    intptr_t failures = 0;
    for (int i = 0; i < 50; i++) {
        fxb_err err;
        redisReply *r = fxb_store_eval(s, &err, &shared_script, 1, keys, 0, NULL, NULL);
        if (r == NULL)
            failures++;
        else
            freeReplyObject(r);
    }
    fxb_store_free(s);
    return (void *)failures;
}

static void test_eval_is_safe_when_threads_share_a_script_on_first_use(void **state)
{
    pthread_t t[8];
    char k[128];
    snprintf(k, sizeof k, "%s", key("threads"));
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, eval_many, k), 0);
    for (int i = 0; i < 8; i++) {
        void *failures;
        pthread_join(t[i], &failures);
        assert_int_equal((intptr_t)failures, 0);
    }
    fxb_store *s = open_shared();
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "GETDEL %s", k);
    assert_non_null(r);
    assert_string_equal(r->str, "400");
    freeReplyObject(r);
    fxb_store_free(s);
}

/* ---- outages on a private server --------------------------------------- */

static void test_store_is_created_while_redis_is_down(void **state)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", free_port());
    fxb_store *s = open_store(url, 500, 50, 2000);
    assert_false(fxb_store_connected(s));
    assert_false(fxb_store_ping(s));
    fxb_err err;
    long long t0 = now_ms();
    assert_null(fxb_store_command(s, &err, "PING"));
    assert_true(now_ms() - t0 < FAIL_FAST_MAX_MS);
    assert_unavailable(&err);
    fxb_store_free(s);
}

static void test_store_new_rejects_a_bad_url(void **state)
{
    fxb_store_options opt = {.url = "redis://localhost:99999/0"};
    fxb_err err;
    assert_null(fxb_store_new(&opt, &err));
    assert_int_equal(err.code, FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "BAD_REDIS_URL");
}

static void test_commands_fail_fast_while_redis_is_down_and_recover_after_restart(void **state)
{
    private_redis *rs = *state;
    fxb_store *s = open_store(rs->url, 1000, 50, 400);
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "SET k before");
    assert_non_null(r);
    freeReplyObject(r);

    redis_stop(rs);
    uint64_t before = fxb_store_error_count();
    long long t0 = now_ms();
    for (int i = 0; i < 20; i++) {
        long long t1 = now_ms();
        assert_null(fxb_store_command(s, &err, "GET k"));
        assert_unavailable(&err);
        assert_true(now_ms() - t1 < FAIL_FAST_MAX_MS);
    }
    assert_true(now_ms() - t0 < FAIL_FAST_MAX_MS);
    assert_false(fxb_store_connected(s));
    assert_true(fxb_store_error_count() >= before + 20);

    redis_start(rs);
    wait_until_usable(s);
    assert_true(fxb_store_connected(s));
    r = fxb_store_command(s, &err, "SET k after");
    assert_non_null(r);
    freeReplyObject(r);
    fxb_store_free(s);
}

static void test_reconnect_waits_for_the_backoff_then_succeeds(void **state)
{
    private_redis *rs = *state;
    redis_stop(rs);
    enum { BACKOFF_MS = 3000 };
    long long created = now_ms();
    fxb_store *s = open_store(rs->url, 1000, BACKOFF_MS, BACKOFF_MS);
    assert_false(fxb_store_connected(s));
    redis_start(rs);
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "PING");
    if (now_ms() - created < BACKOFF_MS - 200) {
        /* Redis is up, but the store must not try before the backoff. */
        assert_null(r);
        assert_unavailable(&err);
        assert_true(err.retry_after_ms <= BACKOFF_MS);
    } else if (r != NULL) {
        freeReplyObject(r); /* the machine was too slow to observe the wait */
    }
    wait_until_usable(s);
    assert_true(now_ms() - created >= BACKOFF_MS);
    fxb_store_free(s);
}

static void test_command_timeout_marks_connection_dead_and_recovers(void **state)
{
    private_redis *rs = *state;
    fxb_store *s = open_store(rs->url, 300, 50, 400);
    assert_true(fxb_store_ping(s));
    kill(rs->pid, SIGSTOP);
    fxb_err err;
    long long t0 = now_ms();
    assert_null(fxb_store_command(s, &err, "GET k"));
    long long took = now_ms() - t0;
    kill(rs->pid, SIGCONT);
    assert_unavailable(&err);
    assert_true(took >= 250);
    assert_true(took < FAIL_FAST_MAX_MS);
    assert_false(fxb_store_connected(s));
    wait_until_usable(s);
    fxb_store_free(s);
}

static void test_connection_closed_by_redis_is_replaced_without_failing_a_command(void **state)
{
    private_redis *rs = *state;
    fxb_store *s = open_store(rs->url, 1000, 50, 400);
    fxb_store *killer = open_store(rs->url, 1000, 50, 400);
    fxb_err err;
    assert_true(fxb_store_ping(s));
    redisReply *r = fxb_store_command(killer, &err, "CLIENT KILL TYPE normal SKIPME yes");
    assert_non_null(r);
    assert_true(r->integer >= 1);
    freeReplyObject(r);
    sleep_ms(100); /* let the FIN arrive */
    r = fxb_store_command(s, &err, "PING");
    if (r == NULL)
        fail_msg("command after CLIENT KILL failed: %s", err.message);
    freeReplyObject(r);
    fxb_store_free(killer);
    fxb_store_free(s);
}

static void test_server_that_drops_connections_unanswered_is_backed_off(void **state)
{
    /* A listener that accepts and closes, like Redis at maxclients. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(listen(lfd, 16), 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", ntohs(a.sin_port));

    fxb_store *s = open_store(url, 300, 5000, 5000);
    assert_true(fxb_store_connected(s)); /* the kernel completed the handshake */
    int cfd = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0);
    close(cfd);
    sleep_ms(50);

    fcntl(lfd, F_SETFL, O_NONBLOCK);
    fxb_err err;
    for (int i = 0; i < 5; i++) {
        assert_null(fxb_store_command(s, &err, "PING"));
        assert_unavailable(&err);
    }
    assert_int_equal(accept(lfd, NULL, NULL), -1); /* no reconnect was tried */
    fxb_store_free(s);
    close(lfd);
}

static void test_pipeline_fails_as_a_whole_when_redis_is_gone(void **state)
{
    private_redis *rs = *state;
    fxb_store *s = open_store(rs->url, 1000, 50, 400);
    assert_true(fxb_store_ping(s));
    redis_stop(rs);
    const char *a[] = {"PING"};
    fxb_store_cmd cmds[] = {{1, a, NULL}, {1, a, NULL}};
    redisReply *replies[2] = {(redisReply *)1, (redisReply *)1};
    fxb_err err;
    assert_int_equal(fxb_store_pipeline(s, &err, 2, cmds, replies), FXB_UNAVAILABLE);
    assert_null(replies[0]);
    assert_null(replies[1]);
    assert_unavailable(&err);
    fxb_store_free(s);
}

static void test_eval_falls_back_to_eval_after_script_flush(void **state)
{
    private_redis *rs = *state;
    fxb_store *s = open_store(rs->url, 1000, 50, 400);
    static fxb_script sc = FXB_SCRIPT("test_flush", "return 'flushed ok'");
    fxb_err err;
    redisReply *r = fxb_store_eval(s, &err, &sc, 0, NULL, 0, NULL, NULL);
    assert_non_null(r);
    freeReplyObject(r);

    r = fxb_store_command(s, &err, "SCRIPT FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    r = fxb_store_command(s, &err, "SCRIPT EXISTS %s", sc.sha);
    assert_int_equal(r->element[0]->integer, 0);
    freeReplyObject(r);

    uint64_t before = fxb_store_error_count();
    r = fxb_store_eval(s, &err, &sc, 0, NULL, 0, NULL, NULL);
    assert_non_null(r);
    assert_string_equal(r->str, "flushed ok");
    freeReplyObject(r);
    assert_int_equal(fxb_store_error_count(), before); /* NOSCRIPT is not a failure */
    r = fxb_store_command(s, &err, "SCRIPT EXISTS %s", sc.sha);
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
    fxb_store_free(s);
}

static void test_eval_fails_fast_while_redis_is_down(void **state)
{
    private_redis *rs = *state;
    fxb_store *s = open_store(rs->url, 1000, 50, 400);
    assert_true(fxb_store_ping(s));
    redis_stop(rs);
    fxb_err err;
    assert_null(fxb_store_eval(s, &err, &echo_script, 1, (const char *[]){"k"}, 2,
                               (const char *[]){"a", "b"}, NULL));
    assert_unavailable(&err);
    fxb_store_free(s);
}

static void test_unix_socket_url_connects_and_selects_its_db(void **state)
{
    private_redis *rs = *state;
    char url[FXB_STORE_URL_MAX];
    snprintf(url, sizeof url, "unix://%s?db=3", rs->sock);
    fxb_store *s = open_store(url, 1000, 50, 400);
    fxb_err err;
    assert_true(fxb_store_connected(s));
    freeReplyObject(fxb_store_command(s, &err, "SET where db3"));

    fxb_store *db0 = open_store(rs->url, 1000, 50, 400);
    redisReply *r = fxb_store_command(db0, &err, "GET where");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = fxb_store_command(db0, &err, "SELECT 3");
    freeReplyObject(r);
    r = fxb_store_command(db0, &err, "GET where");
    assert_string_equal(r->str, "db3");
    freeReplyObject(r);
    fxb_store_free(db0);
    fxb_store_free(s);
}

/* ---- main -------------------------------------------------------------- */

static int group_setup(void **state)
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
    if (u.is_unix)
        snprintf(shared_url, sizeof shared_url, "unix://%s?db=%d", u.host, SHARED_DB);
    else if (strchr(u.host, ':') != NULL)
        snprintf(shared_url, sizeof shared_url, "redis://[%s]:%d/%d", u.host, u.port, SHARED_DB);
    else
        snprintf(shared_url, sizeof shared_url, "redis://%s:%d/%d", u.host, u.port, SHARED_DB);
    snprintf(prefix, sizeof prefix, "test_store:%ld:", (long)getpid());
    /* A write to a socket Redis closed must fail, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

#define PRIVATE(t) cmocka_unit_test_setup_teardown(t, private_setup, private_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_returns_a_reply_the_caller_frees),
        cmocka_unit_test(test_commandv_is_binary_safe),
        cmocka_unit_test(test_store_selects_the_db_in_the_url),
        cmocka_unit_test(test_error_reply_is_internal_store_error_and_counted),
        cmocka_unit_test(test_error_reply_text_is_capped_at_200_bytes),
        cmocka_unit_test(test_error_reply_cap_never_splits_a_utf8_character),
        cmocka_unit_test(test_pipeline_returns_every_reply_in_order),
        cmocka_unit_test(test_pipeline_of_no_commands_succeeds),
        cmocka_unit_test(test_hash_fields_are_read_from_an_hgetall_reply),
        cmocka_unit_test(test_send_does_not_wait_and_later_replies_stay_paired),
        cmocka_unit_test(test_eval_runs_script_with_keys_and_args),
        cmocka_unit_test(test_eval_with_returns_the_extra_replies_of_the_same_round_trip),
        cmocka_unit_test(test_eval_sha_is_the_one_redis_computes),
        cmocka_unit_test(test_eval_maps_fxb_error_reply_to_code_reason_and_message),
        cmocka_unit_test(test_eval_maps_fxb_error_raised_with_error_table_and_drops_redis_suffix),
        cmocka_unit_test(test_eval_fxb_error_without_message_uses_the_reason),
        cmocka_unit_test(test_eval_malformed_fxb_error_is_internal_store_error),
        cmocka_unit_test(test_eval_runtime_error_is_internal_store_error_naming_the_script),
        cmocka_unit_test(test_eval_is_safe_when_threads_share_a_script_on_first_use),
        cmocka_unit_test(test_store_is_created_while_redis_is_down),
        cmocka_unit_test(test_store_new_rejects_a_bad_url),
        PRIVATE(test_commands_fail_fast_while_redis_is_down_and_recover_after_restart),
        PRIVATE(test_reconnect_waits_for_the_backoff_then_succeeds),
        PRIVATE(test_command_timeout_marks_connection_dead_and_recovers),
        PRIVATE(test_connection_closed_by_redis_is_replaced_without_failing_a_command),
        cmocka_unit_test(test_server_that_drops_connections_unanswered_is_backed_off),
        PRIVATE(test_pipeline_fails_as_a_whole_when_redis_is_gone),
        PRIVATE(test_eval_falls_back_to_eval_after_script_flush),
        PRIVATE(test_eval_fails_fast_while_redis_is_down),
        PRIVATE(test_unix_socket_url_connects_and_selects_its_db),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
