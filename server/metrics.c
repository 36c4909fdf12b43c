/* RPC metrics: relaxed atomic counters in fixed static tables (recording
 * never allocates, locks or fails, and a straggling worker can never touch
 * freed memory), rendered on demand as Prometheus text 0.0.4 and served by a
 * libmicrohttpd daemon on its own thread. */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "config.h"
#include "log.h"

#define N_CODES   17 /* FXB_OK..FXB_UNAUTHENTICATED */
#define N_BUCKETS 17 /* 16 finite bounds + +Inf */
/* One extra row for calls to unknown methods. */
#define N_ROWS (FXB_METRICS_MAX_METHODS + 1)
/* Largest exposition rendered; past it rendering fails rather than grows. */
#define RENDER_MAX (16u * 1024u * 1024u)
/* HTTP listener bounds: Prometheus scrapes with one connection at a time. */
#define HTTP_CONNECTION_LIMIT 64
#define HTTP_TIMEOUT_S        10

static const uint64_t bucket_us[N_BUCKETS - 1] = {
    100,   250,    500,    1000,   2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
static const char *const bucket_le[N_BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",    "0.25",    "0.5",    "1",     "2.5",    "5",     "10",   "+Inf",
};

/* Buckets are stored per bound (not cumulative) and summed at render time;
 * _count is the sum of all buckets, so it always equals the +Inf bucket even
 * while observations race with a scrape. */
static atomic_uint_fast64_t g_calls[N_ROWS][N_CODES];
static atomic_uint_fast64_t g_buckets[N_ROWS][N_BUCKETS];
static atomic_uint_fast64_t g_sum_us[N_ROWS];
static atomic_int_fast64_t g_inflight;
static atomic_bool g_ready;
static size_t g_n_methods;
static char **g_paths;
static uint64_t (*_Atomic g_redis_errors_fn)(void);
static struct MHD_Daemon *g_daemon;

void fxb_metrics_shutdown(void)
{
    fxb_metrics_stop();
    atomic_store(&g_ready, false);
    if (g_paths != NULL) {
        for (size_t i = 0; i < g_n_methods; i++)
            free(g_paths[i]);
        free(g_paths);
    }
    g_paths = NULL;
    g_n_methods = 0;
}

fxb_code fxb_metrics_init(size_t n_methods, const char *const *paths)
{
    if (n_methods > FXB_METRICS_MAX_METHODS || (n_methods > 0 && paths == NULL))
        return FXB_INVALID_ARGUMENT;
    fxb_metrics_shutdown();
    for (size_t r = 0; r < N_ROWS; r++) {
        for (size_t c = 0; c < N_CODES; c++)
            atomic_store_explicit(&g_calls[r][c], 0, memory_order_relaxed);
        for (size_t b = 0; b < N_BUCKETS; b++)
            atomic_store_explicit(&g_buckets[r][b], 0, memory_order_relaxed);
        atomic_store_explicit(&g_sum_us[r], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&g_inflight, 0, memory_order_relaxed);
    if (n_methods > 0) {
        g_paths = calloc(n_methods, sizeof *g_paths);
        if (g_paths == NULL)
            return FXB_RESOURCE_EXHAUSTED;
        for (size_t i = 0; i < n_methods; i++) {
            g_paths[i] = strdup(paths[i] != NULL ? paths[i] : "");
            if (g_paths[i] == NULL) {
                g_n_methods = i;
                fxb_metrics_shutdown();
                return FXB_RESOURCE_EXHAUSTED;
            }
        }
    }
    g_n_methods = n_methods;
    atomic_store(&g_ready, true);
    return FXB_OK;
}

void fxb_metrics_observe(size_t method, int code, uint64_t duration_us)
{
    if (!atomic_load_explicit(&g_ready, memory_order_acquire))
        return;
    if (method > g_n_methods)
        method = g_n_methods;
    if (code < 0 || code >= N_CODES)
        code = FXB_UNKNOWN;
    size_t b = 0;
    while (b < N_BUCKETS - 1 && duration_us > bucket_us[b])
        b++;
    atomic_fetch_add_explicit(&g_calls[method][code], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_buckets[method][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_sum_us[method], duration_us, memory_order_relaxed);
}

void fxb_metrics_inflight_add(int delta)
{
    atomic_fetch_add_explicit(&g_inflight, delta, memory_order_relaxed);
}

void fxb_metrics_set_redis_errors_source(uint64_t (*fn)(void))
{
    atomic_store(&g_redis_errors_fn, fn);
}

/* --- rendering ---------------------------------------------------------- */

/* A growing text buffer with a size cap; once an append fails, it stays
 * failed and the render returns NULL. */
typedef struct dbuf {
    char *p;
    size_t len;
    size_t cap;
    bool failed;
} dbuf;

static bool dbuf_reserve(dbuf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    if (cap > RENDER_MAX) {
        b->failed = true;
        return false;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void dbuf_put(dbuf *b, const char *s, size_t n)
{
    if (!dbuf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void dbuf_printf(dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dbuf_printf(dbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->failed = true; /* our formats are short; longer means a bug */
        return;
    }
    dbuf_put(b, tmp, (size_t)n);
}

/* A label value, escaped as the text format requires: \\ \" \n. */
static void dbuf_label(dbuf *b, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\')
            dbuf_put(b, "\\\\", 2);
        else if (*p == '"')
            dbuf_put(b, "\\\"", 2);
        else if (*p == '\n')
            dbuf_put(b, "\\n", 2);
        else
            dbuf_put(b, p, 1);
    }
}

static const char *method_label(size_t row)
{
    return row < g_n_methods ? g_paths[row] : "unknown";
}

static void render_calls(dbuf *b, size_t rows)
{
    dbuf_printf(b, "# HELP fxb_rpc_total Finished RPCs by method and gRPC status code.\n"
                   "# TYPE fxb_rpc_total counter\n");
    for (size_t r = 0; r < rows; r++) {
        for (int c = 0; c < N_CODES; c++) {
            uint64_t v = atomic_load_explicit(&g_calls[r][c], memory_order_relaxed);
            if (v == 0)
                continue;
            dbuf_printf(b, "fxb_rpc_total{method=\"");
            dbuf_label(b, method_label(r));
            dbuf_printf(b, "\",code=\"%s\"} %llu\n", fxb_code_name(c), (unsigned long long)v);
        }
    }
}

static void render_durations(dbuf *b, size_t rows)
{
    dbuf_printf(b, "# HELP fxb_rpc_duration_seconds Time from call start to final status.\n"
                   "# TYPE fxb_rpc_duration_seconds histogram\n");
    for (size_t r = 0; r < rows; r++) {
        uint64_t counts[N_BUCKETS];
        uint64_t total = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            counts[i] = atomic_load_explicit(&g_buckets[r][i], memory_order_relaxed);
            total += counts[i];
        }
        if (total == 0)
            continue;
        uint64_t cum = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            cum += counts[i];
            dbuf_printf(b, "fxb_rpc_duration_seconds_bucket{method=\"");
            dbuf_label(b, method_label(r));
            dbuf_printf(b, "\",le=\"%s\"} %llu\n", bucket_le[i], (unsigned long long)cum);
        }
        /* Integer microseconds printed as exact decimal seconds. */
        uint64_t sum = atomic_load_explicit(&g_sum_us[r], memory_order_relaxed);
        dbuf_printf(b, "fxb_rpc_duration_seconds_sum{method=\"");
        dbuf_label(b, method_label(r));
        dbuf_printf(b, "\"} %llu.%06llu\n", (unsigned long long)(sum / 1000000),
                    (unsigned long long)(sum % 1000000));
        dbuf_printf(b, "fxb_rpc_duration_seconds_count{method=\"");
        dbuf_label(b, method_label(r));
        dbuf_printf(b, "\"} %llu\n", (unsigned long long)total);
    }
}

char *fxb_metrics_render(size_t *len)
{
    dbuf b = {NULL, 0, 0, false};
    size_t rows = atomic_load_explicit(&g_ready, memory_order_acquire) ? g_n_methods + 1 : 0;
    render_calls(&b, rows);
    render_durations(&b, rows);
    dbuf_printf(&b,
                "# HELP fxb_rpc_in_flight RPCs currently being handled.\n"
                "# TYPE fxb_rpc_in_flight gauge\n"
                "fxb_rpc_in_flight %lld\n",
                (long long)atomic_load_explicit(&g_inflight, memory_order_relaxed));
    uint64_t (*fn)(void) = atomic_load(&g_redis_errors_fn);
    dbuf_printf(&b,
                "# HELP fxb_redis_errors_total Failed Redis commands and connections.\n"
                "# TYPE fxb_redis_errors_total counter\n"
                "fxb_redis_errors_total %llu\n",
                (unsigned long long)(fn != NULL ? fn() : 0));
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}

/* --- HTTP --------------------------------------------------------------- */

#define LISTEN_FAILED    "METRICS_LISTEN_FAILED"
#define LISTEN_FAILED_ZH "指标服务无法启动"

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body,
                             const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "not found\n", NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n",
                     MHD_HTTP_METHOD_GET);
    size_t len = 0;
    char *body = fxb_metrics_render(&len);
    if (body == NULL)
        return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* libmicrohttpd's own messages become warn lines in our JSON log. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    fxb_log(FXB_LOG_WARN, "metrics http: %s", msg);
}

/* Binds a throw-away socket the way libmicrohttpd does (SO_REUSEADDR) to
 * learn why the daemon could not start; 0 when the bind works. */
static int bind_errno(const struct sockaddr *sa, socklen_t salen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    int e = bind(fd, sa, salen) == 0 ? 0 : errno;
    close(fd);
    return e;
}

fxb_code fxb_metrics_listen(const char *hostport, fxb_err *err)
{
    if (hostport != NULL && strcmp(hostport, "off") == 0)
        return FXB_OK;
    if (g_daemon != NULL)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, LISTEN_FAILED, LISTEN_FAILED_ZH,
                           "metrics listener already running");
    char host[FXB_CONFIG_STR_MAX];
    int port = 0;
    fxb_code rc = fxb_config_split_hostport(hostport, host, sizeof host, &port, err);
    if (rc != FXB_OK)
        return rc;

    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    const struct sockaddr *sa;
    socklen_t salen;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    memset(&sin, 0, sizeof sin);
    memset(&sin6, 0, sizeof sin6);
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        sa = (const struct sockaddr *)&sin;
        salen = sizeof sin;
    } else if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)port);
        sa = (const struct sockaddr *)&sin6;
        salen = sizeof sin6;
        flags |= MHD_USE_IPv6;
    } else {
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BAD_CONFIG", LISTEN_FAILED_ZH,
                           "metrics listener %s: host must be a numeric IP address or "
                           "localhost",
                           hostport);
    }

    g_daemon =
        MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, &on_request, NULL,
                         MHD_OPTION_EXTERNAL_LOGGER, &on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, sa,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTION_LIMIT,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
    if (g_daemon == NULL) {
        int e = bind_errno(sa, salen);
        return fxb_err_set(err, FXB_UNAVAILABLE, LISTEN_FAILED, LISTEN_FAILED_ZH,
                           "metrics listener %s: %s", hostport,
                           e != 0 ? strerror(e) : "libmicrohttpd could not start");
    }
    return FXB_OK;
}

void fxb_metrics_stop(void)
{
    if (g_daemon != NULL) {
        MHD_stop_daemon(g_daemon);
        g_daemon = NULL;
    }
}
