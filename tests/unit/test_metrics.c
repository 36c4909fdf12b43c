/* The metrics of server/metrics.h: what is counted, how the Prometheus text
 * exposition looks, and the HTTP listener that serves it. The HTTP tests use
 * a plain socket client on a free loopback port. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/log.h"
#include "server/metrics.h"

static const char *const paths[] = {
    "/fxb.v1.FilingService/Submit",
    "/fxb.v1.FilingService/Get",
    "/fxb.v1.DiagService/Echo",
};
#define N_PATHS 3

static int setup(void **state)
{
    /* libmicrohttpd's own complaints go to the log; keep test output clean. */
    fxb_log_set_level(FXB_LOG_ERROR);
    return fxb_metrics_init(N_PATHS, paths) == FXB_OK ? 0 : -1;
}

static int teardown(void **state)
{
    fxb_metrics_set_redis_errors_source(NULL);
    fxb_metrics_shutdown();
    fxb_log_set_level(FXB_LOG_INFO);
    return 0;
}

static char *render(void)
{
    size_t len = 0;
    char *text = fxb_metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* Fails unless the exposition has this exact line. */
static void expect_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    }
    fail_msg("missing line: %s\n--- exposition ---\n%s", line, text);
}

static void expect_no(const char *text, const char *fragment)
{
    if (strstr(text, fragment) != NULL)
        fail_msg("unexpected %s\n--- exposition ---\n%s", fragment, text);
}

/* --- recording and rendering -------------------------------------------- */

static void test_metrics_init_rejects_too_many_methods(void **state)
{
    const char *many[FXB_METRICS_MAX_METHODS + 1];
    for (size_t i = 0; i <= FXB_METRICS_MAX_METHODS; i++)
        many[i] = "/x";
    assert_int_equal(fxb_metrics_init(FXB_METRICS_MAX_METHODS + 1, many), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_metrics_init(FXB_METRICS_MAX_METHODS, many), FXB_OK);
    fxb_metrics_observe(FXB_METRICS_MAX_METHODS - 1, 0, 1);
    fxb_metrics_observe(FXB_METRICS_MAX_METHODS, 0, 1);
    char *text = render();
    expect_line(text, "fxb_rpc_total{method=\"/x\",code=\"OK\"} 1");
    expect_line(text, "fxb_rpc_total{method=\"unknown\",code=\"OK\"} 1");
    free(text);
}

static void test_metrics_render_has_help_and_type_for_every_family(void **state)
{
    char *text = render();
    expect_line(text, "# TYPE fxb_rpc_total counter");
    expect_line(text, "# TYPE fxb_rpc_duration_seconds histogram");
    expect_line(text, "# TYPE fxb_rpc_in_flight gauge");
    expect_line(text, "# TYPE fxb_redis_errors_total counter");
    const char *families[] = {"fxb_rpc_total", "fxb_rpc_duration_seconds", "fxb_rpc_in_flight",
                              "fxb_redis_errors_total"};
    for (size_t i = 0; i < 4; i++) {
        char help[80];
        snprintf(help, sizeof help, "\n# HELP %s ", families[i]);
        if (strstr(text, help) == NULL && strncmp(text, help + 1, strlen(help + 1)) != 0)
            fail_msg("no HELP for %s", families[i]);
    }
    /* The text format ends every line, the last one included, with \n. */
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(text);
}

static void test_metrics_counts_by_method_and_code(void **state)
{
    fxb_metrics_observe(0, FXB_OK, 100);
    fxb_metrics_observe(0, FXB_OK, 100);
    fxb_metrics_observe(0, FXB_INVALID_ARGUMENT, 100);
    fxb_metrics_observe(1, FXB_NOT_FOUND, 100);
    fxb_metrics_observe(2, FXB_UNAUTHENTICATED, 100);
    char *text = render();
    expect_line(text, "fxb_rpc_total{method=\"/fxb.v1.FilingService/Submit\",code=\"OK\"} 2");
    expect_line(text, "fxb_rpc_total{method=\"/fxb.v1.FilingService/Submit\","
                      "code=\"INVALID_ARGUMENT\"} 1");
    expect_line(text, "fxb_rpc_total{method=\"/fxb.v1.FilingService/Get\",code=\"NOT_FOUND\"} 1");
    expect_line(text,
                "fxb_rpc_total{method=\"/fxb.v1.DiagService/Echo\",code=\"UNAUTHENTICATED\"} 1");
    free(text);
}

static void test_metrics_zero_series_are_omitted(void **state)
{
    fxb_metrics_observe(0, FXB_OK, 100);
    char *text = render();
    expect_no(text, "code=\"INVALID_ARGUMENT\"");
    expect_no(text, "FilingService/Get");
    expect_no(text, "method=\"unknown\"");
    free(text);
}

static void test_metrics_unknown_method_index_is_labelled_unknown(void **state)
{
    fxb_metrics_observe(N_PATHS, FXB_UNIMPLEMENTED, 10);
    fxb_metrics_observe(N_PATHS + 100, FXB_UNIMPLEMENTED, 10);
    fxb_metrics_observe(SIZE_MAX, FXB_UNIMPLEMENTED, 10);
    char *text = render();
    expect_line(text, "fxb_rpc_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 3");
    free(text);
}

static void test_metrics_out_of_range_code_counts_as_unknown(void **state)
{
    fxb_metrics_observe(0, 17, 10);
    fxb_metrics_observe(0, -1, 10);
    char *text = render();
    expect_line(text, "fxb_rpc_total{method=\"/fxb.v1.FilingService/Submit\",code=\"UNKNOWN\"} 2");
    free(text);
}

static void test_metrics_histogram_buckets_are_cumulative_and_le_inclusive(void **state)
{
    fxb_metrics_observe(1, FXB_OK, 0);        /* le 0.0001 */
    fxb_metrics_observe(1, FXB_OK, 100);      /* le 0.0001: bounds are inclusive */
    fxb_metrics_observe(1, FXB_OK, 101);      /* le 0.00025 */
    fxb_metrics_observe(1, FXB_OK, 1000000);  /* le 1 */
    fxb_metrics_observe(1, FXB_OK, 10000001); /* +Inf only */
    char *text = render();
#define B(le, n)                                                                                   \
    "fxb_rpc_duration_seconds_bucket{method=\"/fxb.v1.FilingService/Get\",le=\"" le "\"} " n
    const char *lines[] = {
        B("0.0001", "2"), B("0.00025", "3"), B("0.0005", "3"), B("0.001", "3"), B("0.0025", "3"),
        B("0.005", "3"),  B("0.01", "3"),    B("0.025", "3"),  B("0.05", "3"),  B("0.1", "3"),
        B("0.25", "3"),   B("0.5", "3"),     B("1", "4"),      B("2.5", "4"),   B("5", "4"),
        B("10", "4"),     B("+Inf", "5"),
    };
#undef B
    const char *prev = text;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        expect_line(text, lines[i]);
        const char *at = strstr(text, lines[i]);
        assert_true(at >= prev); /* in increasing le order */
        prev = at;
    }
    expect_line(text, "fxb_rpc_duration_seconds_count{method=\"/fxb.v1.FilingService/Get\"} 5");
    free(text);
}

static void test_metrics_sum_is_rendered_in_seconds(void **state)
{
    fxb_metrics_observe(0, FXB_OK, 1500);
    fxb_metrics_observe(0, FXB_OK, 2000001);
    char *text = render();
    expect_line(text, "fxb_rpc_duration_seconds_sum{method=\"/fxb.v1.FilingService/Submit\"} "
                      "2.001501");
    free(text);
}

static void test_metrics_in_flight_gauge_is_always_present(void **state)
{
    char *text = render();
    expect_line(text, "fxb_rpc_in_flight 0");
    free(text);
    fxb_metrics_inflight_add(3);
    fxb_metrics_inflight_add(-1);
    text = render();
    expect_line(text, "fxb_rpc_in_flight 2");
    free(text);
    fxb_metrics_inflight_add(-2);
}

static uint64_t fake_redis_errors(void)
{
    return 42;
}

static void test_metrics_redis_errors_come_from_the_source(void **state)
{
    char *text = render();
    expect_line(text, "fxb_redis_errors_total 0");
    free(text);
    fxb_metrics_set_redis_errors_source(fake_redis_errors);
    text = render();
    expect_line(text, "fxb_redis_errors_total 42");
    free(text);
}

static void test_metrics_label_values_are_escaped(void **state)
{
    const char *odd[] = {"/a\"b", "/c\\d", "/e\nf"};
    assert_int_equal(fxb_metrics_init(3, odd), FXB_OK);
    fxb_metrics_observe(0, FXB_OK, 1);
    fxb_metrics_observe(1, FXB_OK, 1);
    fxb_metrics_observe(2, FXB_OK, 1);
    char *text = render();
    expect_line(text, "fxb_rpc_total{method=\"/a\\\"b\",code=\"OK\"} 1");
    expect_line(text, "fxb_rpc_total{method=\"/c\\\\d\",code=\"OK\"} 1");
    expect_line(text, "fxb_rpc_total{method=\"/e\\nf\",code=\"OK\"} 1");
    free(text);
}

static void test_metrics_init_resets_counters(void **state)
{
    fxb_metrics_observe(0, FXB_OK, 1);
    assert_int_equal(fxb_metrics_init(N_PATHS, paths), FXB_OK);
    char *text = render();
    expect_no(text, "fxb_rpc_total{");
    free(text);
}

static void test_metrics_observe_before_init_is_ignored(void **state)
{
    fxb_metrics_shutdown();
    fxb_metrics_observe(0, FXB_OK, 1);
    char *text = render();
    expect_no(text, "fxb_rpc_total{");
    expect_line(text, "fxb_rpc_in_flight 0");
    free(text);
}

#define N_THREADS 8
#define N_PER     20000

static void *observe_many(void *arg)
{
    size_t method = (size_t)(uintptr_t)arg % N_PATHS;
    for (int i = 0; i < N_PER; i++)
        fxb_metrics_observe(method, i % 2 ? FXB_OK : FXB_INTERNAL, (uint64_t)i);
    return NULL;
}

static void test_metrics_concurrent_observations_are_all_counted(void **state)
{
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, observe_many, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = render();
    /* Threads 0,3,6 -> method 0; 1,4,7 -> method 1; 2,5 -> method 2. */
    char line[160];
    snprintf(line, sizeof line, "fxb_rpc_total{method=\"%s\",code=\"OK\"} %d", paths[0],
             3 * N_PER / 2);
    expect_line(text, line);
    snprintf(line, sizeof line, "fxb_rpc_total{method=\"%s\",code=\"INTERNAL\"} %d", paths[2],
             2 * N_PER / 2);
    expect_line(text, line);
    snprintf(line, sizeof line, "fxb_rpc_duration_seconds_count{method=\"%s\"} %d", paths[1],
             3 * N_PER);
    expect_line(text, line);
    free(text);
}

/* --- HTTP --------------------------------------------------------------- */

/* A loopback port nobody listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Sends a raw request and returns the whole response (malloc'd). */
static char *http(int family, int port, const char *request)
{
    int fd = socket(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_loopback;
        a.sin6_port = htons((uint16_t)port);
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0)
        fail_msg("connect to port %d: %s", port, strerror(errno));
    size_t len = strlen(request);
    assert_int_equal(write(fd, request, len), (ssize_t)len);
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (cap - got < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = read(fd, buf + got, cap - got - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(fd);
    return buf;
}

/* Checks the status code of a response (servers answer HTTP/1.1 even to
 * HTTP/1.0 requests). */
static void expect_status(const char *resp, int status)
{
    int got = 0;
    if (sscanf(resp, "HTTP/1.%*d %d ", &got) != 1 || got != status)
        fail_msg("expected status %d, got:\n%s", status, resp);
}

static void listen_on(int port)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    fxb_err err;
    fxb_code rc = fxb_metrics_listen(addr, &err);
    if (rc != FXB_OK)
        fail_msg("listen %s: %s", addr, err.message);
}

static void test_metrics_http_serves_exposition(void **state)
{
    int port = free_port();
    listen_on(port);
    fxb_metrics_observe(0, FXB_OK, 250);
    char *resp =
        http(AF_INET, port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect_status(resp, 200);
    assert_non_null(strcasestr(resp, "\r\nContent-Type: text/plain; version=0.0.4"));
    const char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    char *direct = render();
    assert_string_equal(body, direct);
    expect_line(body, "fxb_rpc_total{method=\"/fxb.v1.FilingService/Submit\",code=\"OK\"} 1");
    free(direct);
    free(resp);
    fxb_metrics_stop();
}

static void test_metrics_http_unknown_path_is_404(void **state)
{
    int port = free_port();
    listen_on(port);
    const char *reqs[] = {"GET / HTTP/1.0\r\n\r\n", "GET /metricsx HTTP/1.0\r\n\r\n",
                          "GET /metrics/ HTTP/1.0\r\n\r\n", "POST /other HTTP/1.0\r\n\r\n"};
    for (size_t i = 0; i < 4; i++) {
        char *resp = http(AF_INET, port, reqs[i]);
        expect_status(resp, 404);
        free(resp);
    }
    fxb_metrics_stop();
}

static void test_metrics_http_other_methods_are_405(void **state)
{
    int port = free_port();
    listen_on(port);
    const char *reqs[] = {"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
                          "PUT /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
                          "DELETE /metrics HTTP/1.0\r\n\r\n"};
    for (size_t i = 0; i < 3; i++) {
        char *resp = http(AF_INET, port, reqs[i]);
        expect_status(resp, 405);
        assert_non_null(strcasestr(resp, "\r\nAllow: GET\r\n"));
        free(resp);
    }
    fxb_metrics_stop();
}

static void test_metrics_listen_port_in_use_is_unavailable(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    fxb_err err;
    assert_int_equal(fxb_metrics_listen(addr, &err), FXB_UNAVAILABLE);
    close(fd);
    assert_non_null(strstr(err.message, addr));
    assert_non_null(strstr(err.message, "in use"));
}

static void test_metrics_listen_rejects_bad_addresses(void **state)
{
    fxb_err err;
    assert_int_equal(fxb_metrics_listen("127.0.0.1:0", &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_metrics_listen("127.0.0.1", &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_metrics_listen("example.com:9464", &err), FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "example.com:9464"));
}

static void test_metrics_listen_off_starts_nothing(void **state)
{
    fxb_err err;
    assert_int_equal(fxb_metrics_listen("off", &err), FXB_OK);
    fxb_metrics_stop();
}

static void test_metrics_listen_twice_is_refused(void **state)
{
    int port = free_port();
    listen_on(port);
    fxb_err err;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    assert_int_equal(fxb_metrics_listen(addr, &err), FXB_FAILED_PRECONDITION);
    fxb_metrics_stop();
}

static void test_metrics_stop_releases_the_port(void **state)
{
    int port = free_port();
    listen_on(port);
    char *resp = http(AF_INET, port, "GET /metrics HTTP/1.0\r\n\r\n");
    free(resp);
    fxb_metrics_stop();
    fxb_metrics_stop(); /* idempotent */
    listen_on(port);
    resp = http(AF_INET, port, "GET /metrics HTTP/1.0\r\n\r\n");
    expect_status(resp, 200);
    free(resp);
    fxb_metrics_stop();
}

static void test_metrics_http_on_all_interfaces(void **state)
{
    int port = free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "0.0.0.0:%d", port);
    fxb_err err;
    if (fxb_metrics_listen(addr, &err) != FXB_OK)
        fail_msg("%s", err.message);
    char *resp = http(AF_INET, port, "GET /metrics HTTP/1.0\r\n\r\n");
    expect_status(resp, 200);
    free(resp);
    fxb_metrics_stop();
}

static void test_metrics_http_on_ipv6_loopback(void **state)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof a) != 0) {
        if (probe >= 0)
            close(probe);
        skip(); /* no IPv6 here */
    }
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(probe, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin6_port);
    close(probe);
    char addr[64];
    snprintf(addr, sizeof addr, "[::1]:%d", port);
    fxb_err err;
    if (fxb_metrics_listen(addr, &err) != FXB_OK)
        fail_msg("%s", err.message);
    char *resp = http(AF_INET6, port, "GET /metrics HTTP/1.0\r\n\r\n");
    expect_status(resp, 200);
    free(resp);
    fxb_metrics_stop();
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_metrics_init_rejects_too_many_methods),
        T(test_metrics_render_has_help_and_type_for_every_family),
        T(test_metrics_counts_by_method_and_code),
        T(test_metrics_zero_series_are_omitted),
        T(test_metrics_unknown_method_index_is_labelled_unknown),
        T(test_metrics_out_of_range_code_counts_as_unknown),
        T(test_metrics_histogram_buckets_are_cumulative_and_le_inclusive),
        T(test_metrics_sum_is_rendered_in_seconds),
        T(test_metrics_in_flight_gauge_is_always_present),
        T(test_metrics_redis_errors_come_from_the_source),
        T(test_metrics_label_values_are_escaped),
        T(test_metrics_init_resets_counters),
        T(test_metrics_observe_before_init_is_ignored),
        T(test_metrics_concurrent_observations_are_all_counted),
        T(test_metrics_http_serves_exposition),
        T(test_metrics_http_unknown_path_is_404),
        T(test_metrics_http_other_methods_are_405),
        T(test_metrics_listen_port_in_use_is_unavailable),
        T(test_metrics_listen_rejects_bad_addresses),
        T(test_metrics_listen_off_starts_nothing),
        T(test_metrics_listen_twice_is_refused),
        T(test_metrics_stop_releases_the_port),
        T(test_metrics_http_on_all_interfaces),
        T(test_metrics_http_on_ipv6_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
