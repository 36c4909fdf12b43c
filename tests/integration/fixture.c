/* Integration test fixture (fixture.h). */
#include "fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* --- a private redis-server ------------------------------------------------ */

static pid_t private_pid = -1;
static char private_dir[64];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

void fxb_test_private_redis_stop(void)
{
    if (private_pid > 0) {
        kill(private_pid, SIGTERM);
        waitpid(private_pid, NULL, 0);
        private_pid = -1;
    }
    if (private_dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", private_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", private_dir);
        private_dir[0] = '\0';
    }
}

int fxb_test_private_redis_start(char *url, size_t cap)
{
    if (private_pid > 0) {
        fprintf(stderr, "a private redis-server is already running\n");
        return -1;
    }
    snprintf(private_dir, sizeof private_dir, "/tmp/fxb-itest-redis.XXXXXX");
    if (mkdtemp(private_dir) == NULL) {
        fprintf(stderr, "mkdtemp failed\n");
        private_dir[0] = '\0';
        return -1;
    }
    int port = free_port();
    if (port <= 0) {
        fprintf(stderr, "no free port\n");
        fxb_test_private_redis_stop();
        return -1;
    }
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork failed\n");
        fxb_test_private_redis_stop();
        return -1;
    }
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", port_text, "--bind", "127.0.0.1", "--dir",
               private_dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel",
               "warning", (char *)NULL);
        _exit(127);
    }
    private_pid = pid;
    static int registered;
    if (!registered) {
        atexit(fxb_test_private_redis_stop);
        registered = 1;
    }
    int n = snprintf(url, cap, "redis://127.0.0.1:%d/0", port);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "url buffer too small\n");
        fxb_test_private_redis_stop();
        return -1;
    }
    for (int i = 0; i < 200; i++) {
        fxb_store_options opt = {.url = url, .connect_timeout_ms = 100};
        fxb_err err;
        fxb_store *s = fxb_store_new(&opt, &err);
        bool up = s != NULL && fxb_store_ping(s);
        fxb_store_free(s);
        if (up)
            return 0;
        struct timespec ts = {0, 25 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "redis-server on port %d did not answer\n", port);
    fxb_test_private_redis_stop();
    return -1;
}

static char private_url[FXB_STORE_URL_MAX + 64];

int fxb_test_private_group_setup(void **state)
{
    (void)state;
    return fxb_test_private_redis_start(private_url, sizeof private_url);
}

int fxb_test_private_group_teardown(void **state)
{
    (void)state;
    fxb_test_private_redis_stop();
    return 0;
}

const char *fxb_test_private_url(void)
{
    return private_url;
}

long long fxb_test_reply_number(redisReply *r)
{
    if (r == NULL)
        return -1;
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : -1;
    freeReplyObject(r);
    return v;
}
