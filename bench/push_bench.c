/* fxb-bench-push: N concurrent InboxService/Subscribe streams driven by one
 * gRPC C-core client, the memory they cost fxb-server while idle, and how
 * fast a notice appended to an inbox reaches its subscriber.
 * bench/push_run.sh runs it (see bench/README.md).
 *
 * Usage: fxb-bench-push [options] TARGET REDIS_URL SUBJECTS_FILE
 *   TARGET         host:port of an insecure (h2c) fxb-server
 *   REDIS_URL      the server's Redis (redis://host:port/db)
 *   SUBJECTS_FILE  "<account id> <access token>" a line: one stream each
 * Options:
 *   -n N       streams (the first N subjects; default all of them)
 *   -c C       connections (separate channels), default 16; streams go
 *              round robin over them and at most 1000 per connection fit
 *              (FXB_MAX_CONCURRENT_STREAMS)
 *   -t T       client threads, one completion queue each (1..4, default 2)
 *   -r RATE    steady phase: notices per second (default 2000; 0: skip)
 *   -d SECS    steady phase: seconds (default 10)
 *   -B 0|1     burst phase: one notice to each of the N subscribers, as
 *              fast as the writers go (default 1)
 *   -W W       writer threads, each its own Redis connection (default 1)
 *   -s SECS    settle time once every stream is open, before the idle
 *              reading (default 3)
 *   -o SECS    the streams must all be open within this (default 120)
 *   -g MS      goal: steady-phase p99 below MS milliseconds (default 50)
 *   -p PID     fxb-server: its VmRSS is read around the opening (required)
 *   -P PID     redis-server: its CPU is reported too (optional)
 *   -S SEED    seed of the random subscriber choice (default 1)
 *
 * Streams: one call per subject with its own token; batches
 * SEND_INITIAL_METADATA (authorization) + SEND_MESSAGE (SubscribeRequest
 * {after_id: the inbox's current last id, "" when empty}) +
 * SEND_CLOSE_FROM_CLIENT, then RECV_INITIAL_METADATA + RECV_MESSAGE, then
 * RECV_STATUS_ON_CLIENT. Every received message re-arms RECV_MESSAGE at
 * once. A stream counts as open when the server raised its presence
 * counter (fxb:push:online:<id>, services/inbox/push.c), which it does
 * right after registering the subscription: the streams carry no message
 * while they open.
 *
 * Idle memory: fxb-server's VmRSS (/proc/PID/status) and Redis's
 * used_memory (INFO memory) after the connections are up and before any
 * stream is opened, and again SECS (-s) after the last stream is open;
 * (after - before) / N is the cost per idle stream.
 *
 * Delivery: the writers call fxb_inbox_append (store/inbox.c: XADD
 * MAXLEN ~ 1000 + PUBLISH fxb:inbox:new + the presence GET, one round
 * trip), exactly what a service does, with kind "bench.push" and ref
 * "<phase>:<seq>:<CLOCK_MONOTONIC ns before the append>". The receiving
 * thread takes the time when the message comes off its queue: latency =
 * that - the ref's time (same clock, same process), so it covers the
 * Redis round trip, the pub/sub wake-up, the server's read and send, and
 * the client's receive. Steady phase: RATE x SECS notices to subscribers
 * drawn at random, notice i scheduled at start + i / RATE (open loop; a
 * writer that falls behind sends at once and the lag is reported). Burst:
 * one notice to each subscriber in a random order; written-in and
 * all-delivered times are from the first append.
 *
 * Exactly once, per phase: every notice appended is received exactly
 * once, on its subscriber's stream (the ref's sequence number), and the
 * message ids of every stream increase. No stream may end while the run
 * lasts.
 *
 * Output: a table, the verdict, then one line for scripts:
 *   RESULT n=.. conns=.. open_s=.. rss_before_kb=.. rss_after_kb=..
 *          bytes_per_stream=.. redis_before=.. redis_after=..
 *          redis_bytes_per_stream=.. <phase>_sent=.. <phase>_recv=..
 *          <phase>_p50_us=.. _p90_us _p99_us _max_us .. exactly_once=0|1
 *          goal_met=0|1
 * Exit status: 0 goal met and exactly once; 3 the run completed but the
 * goal was missed or a check failed; 1 setup failure; 2 bad usage. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep, getopt */
#endif
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <hiredis/hiredis.h>

#include "fxb/v1/inbox.pb-c.h"
#include "store/inbox.h"
#include "store/store.h"

#define METHOD          "/fxb.v1.InboxService/Subscribe"
#define MAX_THREADS     4
#define MAX_WRITERS     16
#define MAX_CONNS       1024
#define MAX_STREAMS     200000
#define PER_CONN_MAX    1000 /* fxb's FXB_MAX_CONCURRENT_STREAMS default */
#define CONNECT_TIMEOUT 10   /* seconds */
#define DRAIN_TIMEOUT   20   /* seconds for the last notices of a phase */
#define PIPE_SLICE      500  /* Redis commands per pipelined round trip */
#define KIND            "bench.push"
#define TITLE           "推送基准测试"
#define ID_MAX          64

enum { TAG_START = 1, TAG_RECV = 2, TAG_STATUS = 3 };
enum { PH_STEADY = 0, PH_BURST = 1, N_PH = 2 };
static const char ph_char[N_PH] = {'r', 'b'};
static const char *const ph_name[N_PH] = {"steady", "burst"};

typedef struct stream {
    grpc_call *call;
    int index; /* the subject */
    grpc_metadata md;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    uint64_t last_ms, last_seq; /* the last message id received */
    bool have_last;
} stream;

typedef struct cq_thread {
    pthread_t th;
    grpc_completion_queue *cq;
    uint32_t *lat[N_PH]; /* us */
    size_t nlat[N_PH], cap[N_PH];
    uint64_t order_errors, misrouted, foreign, malformed;
    bool oom;
} cq_thread;

/* One phase: what is sent to whom, and what came back. */
typedef struct phase {
    size_t n;              /* notices planned */
    int *target;           /* subject of notice i, fixed before the phase */
    _Atomic uint8_t *sent; /* 1 once appended (OK) */
    _Atomic uint8_t *got;  /* receptions of notice i (saturates at 255) */
    _Atomic uint64_t nsent, send_errors, received, last_recv_ns;
    uint64_t t0_ns, written_ns; /* first append, last append done */
    double rate;                /* steady: notices per second */
    _Atomic uint64_t max_lag_ns;
    char first_error[200];
    pthread_mutex_t mu;
} phase;

static struct {
    const char *target, *redis_url;
    int n, conns, threads, writers;
    double rate, duration_s, settle_s, open_timeout_s, goal_ms;
    bool burst;
    pid_t server_pid, redis_pid;
    uint64_t seed;
} cfg;

static char (*ids)[ID_MAX + 1];
static grpc_slice *auth;
static stream *streams;
static grpc_channel **channels;
static cq_thread cqt[MAX_THREADS];
static phase ph[N_PH];
static _Atomic long live_ops;
static _Atomic long ended_early; /* streams that got a status while running */
static _Atomic int stopping;
static char first_end[256];
static pthread_mutex_t end_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint64_t cpu_ns_self(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* utime + stime of a process in ns (clock ticks), -1 if unreadable. */
static int64_t cpu_ns_pid(pid_t pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut, st;
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (int64_t)((ut + st) * (1000000000ull / (unsigned long long)(hz > 0 ? hz : 100)));
}

/* VmRSS of a process in KiB, -1 if unreadable. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* INFO memory used_memory in bytes, -1 on failure. */
static long long redis_used_memory(fxb_store *st)
{
    fxb_err err;
    redisReply *r = fxb_store_command(st, &err, "INFO memory");
    if (r == NULL)
        return -1;
    long long v = -1;
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    if (p)
        v = strtoll(p + strlen("used_memory:"), NULL, 10);
    freeReplyObject(r);
    return v;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* "<ms>-<seq>" */
static bool parse_id(const char *s, uint64_t *ms, uint64_t *seq)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    *ms = strtoull(s, &end, 10);
    if (errno || *end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    *seq = strtoull(end + 1, &end, 10);
    return errno == 0 && *end == '\0';
}

__attribute__((format(printf, 2, 3))) static void phase_error(phase *p, const char *fmt, ...)
{
    pthread_mutex_lock(&p->mu);
    if (p->first_error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->first_error, sizeof p->first_error, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&p->mu);
}

/* ---- streams --------------------------------------------------------------- */

static void *tag_of(stream *s, int kind)
{
    return (void *)((uintptr_t)s | (uintptr_t)kind);
}

static bool arm_recv(stream *s, bool with_initial)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (with_initial) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv;
    atomic_fetch_add(&live_ops, 1);
    if (grpc_call_start_batch(s->call, ops, n, tag_of(s, TAG_RECV), NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&live_ops, 1);
        return false;
    }
    return true;
}

/* Opens the stream of subject i: false when the core refused a batch. */
static bool open_stream(stream *s, grpc_channel *ch, grpc_completion_queue *cq, const char *after)
{
    s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                       grpc_slice_from_static_string(METHOD), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (s->call == NULL)
        return false;
    grpc_metadata_array_init(&s->initial);
    grpc_metadata_array_init(&s->trailing);
    s->details = grpc_empty_slice();
    s->md.key = grpc_slice_from_static_string("authorization");
    s->md.value = auth[s->index];

    Fxb__V1__SubscribeRequest req = FXB__V1__SUBSCRIBE_REQUEST__INIT;
    req.after_id = (char *)after;
    uint8_t buf[128];
    size_t len = fxb__v1__subscribe_request__get_packed_size(&req);
    if (len > sizeof buf)
        return false;
    fxb__v1__subscribe_request__pack(&req, buf);
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    s->send = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);

    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = 1;
    ops[0].data.send_initial_metadata.metadata = &s->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    atomic_fetch_add(&live_ops, 1);
    if (grpc_call_start_batch(s->call, ops, 3, tag_of(s, TAG_START), NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&live_ops, 1);
        return false;
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing;
    ops[0].data.recv_status_on_client.status = &s->status;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    atomic_fetch_add(&live_ops, 1);
    if (grpc_call_start_batch(s->call, ops, 1, tag_of(s, TAG_STATUS), NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&live_ops, 1);
        return false;
    }
    return arm_recv(s, true);
}

static void lat_push(cq_thread *t, int p, uint32_t us)
{
    if (t->nlat[p] == t->cap[p]) {
        size_t cap = t->cap[p] ? t->cap[p] * 2 : 4096;
        uint32_t *v = realloc(t->lat[p], cap * sizeof *v);
        if (v == NULL) {
            t->oom = true;
            return;
        }
        t->lat[p] = v;
        t->cap[p] = cap;
    }
    t->lat[p][t->nlat[p]++] = us;
}

static void on_message(cq_thread *t, stream *s, grpc_byte_buffer *bb, uint64_t at_ns)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        t->malformed++;
        return;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    Fxb__V1__InboxMessage *m =
        fxb__v1__inbox_message__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    uint64_t ms, seq;
    if (m == NULL || !parse_id(m->message_id, &ms, &seq)) {
        t->malformed++;
        if (m)
            fxb__v1__inbox_message__free_unpacked(m, NULL);
        return;
    }
    if (s->have_last && !(ms > s->last_ms || (ms == s->last_ms && seq > s->last_seq)))
        t->order_errors++;
    s->last_ms = ms;
    s->last_seq = seq;
    s->have_last = true;

    char kind;
    unsigned long long n, sent_ns;
    int p = -1;
    if (strcmp(m->kind, KIND) == 0 && sscanf(m->ref, "%c:%llu:%llu", &kind, &n, &sent_ns) == 3)
        p = kind == ph_char[PH_STEADY] ? PH_STEADY : kind == ph_char[PH_BURST] ? PH_BURST : -1;
    fxb__v1__inbox_message__free_unpacked(m, NULL);
    if (p < 0 || n >= ph[p].n) {
        t->foreign++;
        return;
    }
    if (ph[p].target[n] != s->index)
        t->misrouted++;
    uint8_t c = atomic_load(&ph[p].got[n]);
    if (c < 255)
        atomic_store(&ph[p].got[n], (uint8_t)(c + 1)); /* one stream per notice */
    atomic_fetch_add(&ph[p].received, 1);
    uint64_t last = atomic_load(&ph[p].last_recv_ns);
    while (at_ns > last && !atomic_compare_exchange_weak(&ph[p].last_recv_ns, &last, at_ns))
        ;
    uint64_t d = at_ns > sent_ns ? (at_ns - sent_ns) / 1000 : 0;
    lat_push(t, p, d > UINT32_MAX ? UINT32_MAX : (uint32_t)d);
}

static void *cq_main(void *arg)
{
    cq_thread *t = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        uint64_t at = now_ns();
        stream *s = (stream *)((uintptr_t)ev.tag & ~(uintptr_t)3);
        int kind = (int)((uintptr_t)ev.tag & 3);
        if (kind == TAG_START) {
            grpc_byte_buffer_destroy(s->send);
            s->send = NULL;
        } else if (kind == TAG_RECV) {
            grpc_byte_buffer *bb = s->recv;
            s->recv = NULL;
            if (ev.success && bb != NULL) {
                if (!atomic_load(&stopping))
                    arm_recv(s, false); /* at once: the next one may be on its way */
                on_message(t, s, bb, at);
                grpc_byte_buffer_destroy(bb);
            }
        } else if (kind == TAG_STATUS) {
            if (!atomic_load(&stopping)) {
                atomic_fetch_add(&ended_early, 1);
                pthread_mutex_lock(&end_mu);
                if (first_end[0] == '\0') {
                    char *d = grpc_slice_to_c_string(s->details);
                    snprintf(first_end, sizeof first_end, "stream %d ended: status %d %s", s->index,
                             (int)s->status, d);
                    gpr_free(d);
                }
                pthread_mutex_unlock(&end_mu);
            }
        }
        atomic_fetch_sub(&live_ops, 1);
    }
    return NULL;
}

/* ---- writers --------------------------------------------------------------- */

typedef struct writer {
    pthread_t th;
    int index;
    int p;
    fxb_store *st;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    phase *p = &ph[w->p];
    for (size_t i = (size_t)w->index; i < p->n; i += (size_t)cfg.writers) {
        uint64_t t = now_ns();
        if (w->p == PH_STEADY) {
            uint64_t due = p->t0_ns + (uint64_t)((double)i * 1e9 / p->rate);
            if (t < due) {
                sleep_ns(due - t);
                t = now_ns();
            } else {
                uint64_t lag = t - due, m = atomic_load(&p->max_lag_ns);
                while (lag > m && !atomic_compare_exchange_weak(&p->max_lag_ns, &m, lag))
                    ;
            }
        }
        char ref[64];
        snprintf(ref, sizeof ref, "%c:%zu:%" PRIu64, ph_char[w->p], i, t);
        fxb_err err;
        if (fxb_inbox_append(w->st, ids[p->target[i]], KIND, TITLE, NULL, ref, wall_ms(), NULL,
                             &err) == FXB_OK) {
            atomic_store(&p->sent[i], 1);
            atomic_fetch_add(&p->nsent, 1);
        } else {
            atomic_fetch_add(&p->send_errors, 1);
            phase_error(p, "fxb_inbox_append: %s %s", err.reason, err.message);
        }
    }
    return NULL;
}

/* Runs phase p with the writers, then waits for its notices to arrive. */
static bool run_phase(int pi, fxb_store **stores, double *drain_wait_s)
{
    phase *p = &ph[pi];
    writer ws[MAX_WRITERS];
    p->t0_ns = now_ns() + 20000000u; /* the writers are up by then */
    for (int i = 0; i < cfg.writers; i++) {
        ws[i] = (writer){.index = i, .p = pi, .st = stores[i]};
        if (pthread_create(&ws[i].th, NULL, writer_main, &ws[i]) != 0) {
            fprintf(stderr, "fxb-bench-push: pthread_create failed\n");
            return false;
        }
    }
    for (int i = 0; i < cfg.writers; i++)
        pthread_join(ws[i].th, NULL);
    p->written_ns = now_ns();
    uint64_t until = p->written_ns + (uint64_t)DRAIN_TIMEOUT * 1000000000u;
    while (atomic_load(&p->received) < atomic_load(&p->nsent) && now_ns() < until &&
           atomic_load(&ended_early) == 0)
        sleep_ns(1000000);
    *drain_wait_s = (double)(now_ns() - p->written_ns) / 1e9;
    return true;
}

/* ---- set-up ---------------------------------------------------------------- */

static bool load_subjects(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "fxb-bench-push: cannot open %s\n", path);
        return false;
    }
    size_t cap = 0, n = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    bool ok = true;
    while ((len = getline(&line, &lcap, f)) >= 0 && (cfg.n == 0 || n < (size_t)cfg.n)) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char *sp = strchr(line, ' ');
        if (sp == NULL || sp == line || sp - line > ID_MAX || sp[1] == '\0') {
            fprintf(stderr, "fxb-bench-push: %s line %zu: want \"<account id> <token>\"\n", path,
                    n + 1);
            ok = false;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            void *a = realloc(ids, cap * sizeof *ids),
                 *b = a ? realloc(auth, cap * sizeof *auth) : NULL;
            if (a)
                ids = a;
            if (b)
                auth = b;
            if (!a || !b) {
                ok = false;
                break;
            }
        }
        memcpy(ids[n], line, (size_t)(sp - line));
        ids[n][sp - line] = '\0';
        const char *tok = sp + 1;
        size_t tl = strlen(tok);
        grpc_slice sl = grpc_slice_malloc(7 + tl);
        memcpy(GRPC_SLICE_START_PTR(sl), "Bearer ", 7);
        memcpy(GRPC_SLICE_START_PTR(sl) + 7, tok, tl);
        auth[n++] = sl;
    }
    free(line);
    fclose(f);
    if (!ok)
        return false;
    if (cfg.n > 0 && n < (size_t)cfg.n) {
        fprintf(stderr, "fxb-bench-push: %s holds %zu subjects, -n asks for %d\n", path, n, cfg.n);
        return false;
    }
    if (n == 0) {
        fprintf(stderr, "fxb-bench-push: %s holds no subject\n", path);
        return false;
    }
    cfg.n = (int)n;
    return true;
}

/* Every channel READY, within CONNECT_TIMEOUT. */
static bool connect_all(void)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_seconds(CONNECT_TIMEOUT, GPR_TIMESPAN));
    bool ok = true;
    for (int i = 0; i < cfg.conns && ok; i++) {
        for (;;) {
            grpc_connectivity_state st = grpc_channel_check_connectivity_state(channels[i], 1);
            if (st == GRPC_CHANNEL_READY)
                break;
            grpc_channel_watch_connectivity_state(channels[i], st, deadline, cq, NULL);
            grpc_event ev =
                grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            if (!ev.success) {
                fprintf(stderr, "fxb-bench-push: connection %d to %s not ready within %d s\n", i,
                        cfg.target, CONNECT_TIMEOUT);
                ok = false;
                break;
            }
        }
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return ok;
}

/* after[i]: the last id of subject i's inbox, "" when empty. */
static bool last_ids(fxb_store *st, char (*after)[ID_MAX])
{
    for (int i = 0; i < cfg.n; i += PIPE_SLICE) {
        int m = cfg.n - i < PIPE_SLICE ? cfg.n - i : PIPE_SLICE;
        static char keys[PIPE_SLICE][ID_MAX + 32];
        static const char *argv[PIPE_SLICE][6];
        static fxb_store_cmd cmds[PIPE_SLICE];
        static redisReply *r[PIPE_SLICE];
        for (int j = 0; j < m; j++) {
            if (!fxb_inbox_key(keys[j], sizeof keys[j], ids[i + j])) {
                fprintf(stderr, "fxb-bench-push: '%s' is not an account id\n", ids[i + j]);
                return false;
            }
            const char *a[6] = {"XREVRANGE", keys[j], "+", "-", "COUNT", "1"};
            memcpy(argv[j], a, sizeof a);
            cmds[j] = (fxb_store_cmd){6, argv[j], NULL};
        }
        fxb_err err;
        if (fxb_store_pipeline(st, &err, (size_t)m, cmds, r) != FXB_OK) {
            fprintf(stderr, "fxb-bench-push: Redis: %s\n", err.message);
            return false;
        }
        for (int j = 0; j < m; j++) {
            after[i + j][0] = '\0';
            if (r[j]->type == REDIS_REPLY_ARRAY && r[j]->elements == 1 &&
                r[j]->element[0]->type == REDIS_REPLY_ARRAY && r[j]->element[0]->elements == 2 &&
                r[j]->element[0]->element[0]->type == REDIS_REPLY_STRING)
                snprintf(after[i + j], ID_MAX, "%s", r[j]->element[0]->element[0]->str);
            freeReplyObject(r[j]);
        }
    }
    return true;
}

/* How many of the subjects have a live presence counter (MGET in slices);
 * open[i] marks the ones seen, which are not asked again. -1 on failure. */
static int count_open(fxb_store *st, bool *open)
{
    static char keys[PIPE_SLICE][ID_MAX + sizeof FXB_PUSH_ONLINE_PREFIX];
    static const char *argv[PIPE_SLICE + 1];
    int total = 0, idx[PIPE_SLICE];
    for (int i = 0; i < cfg.n;) {
        int m = 0;
        argv[0] = "MGET";
        for (; i < cfg.n && m < PIPE_SLICE; i++) {
            if (open[i]) {
                total++;
                continue;
            }
            snprintf(keys[m], sizeof keys[m], "%s%s", FXB_PUSH_ONLINE_PREFIX, ids[i]);
            argv[m + 1] = keys[m];
            idx[m++] = i;
        }
        if (m == 0)
            continue;
        fxb_err err;
        redisReply *r = fxb_store_commandv(st, &err, m + 1, argv, NULL);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)m) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        for (int j = 0; j < m; j++)
            if (r->element[j]->type == REDIS_REPLY_STRING &&
                strtoll(r->element[j]->str, NULL, 10) > 0) {
                open[idx[j]] = true;
                total++;
            }
        freeReplyObject(r);
    }
    return total;
}

/* ---- figures --------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* nearest rank */
static uint32_t pct(const uint32_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return v[rank - 1];
}

typedef struct phase_figures {
    bool ran;
    uint64_t planned, sent, send_errors, received, once, dup, missing, extra;
    uint32_t p50, p90, p99, max;
    double write_s, deliver_s, drain_s, secs;
    double cpu_srv, cpu_redis, cpu_client; /* cores over the phase */
} phase_figures;

static void phase_check(int pi, phase_figures *f)
{
    phase *p = &ph[pi];
    f->planned = p->n;
    f->sent = atomic_load(&p->nsent);
    f->send_errors = atomic_load(&p->send_errors);
    f->received = atomic_load(&p->received);
    for (size_t i = 0; i < p->n; i++) {
        uint8_t g = atomic_load(&p->got[i]);
        if (atomic_load(&p->sent[i])) {
            if (g == 1)
                f->once++;
            else if (g == 0)
                f->missing++;
            else
                f->dup++;
        } else if (g) {
            f->extra++; /* an append that reported failure, delivered anyway */
        }
    }
    size_t n = 0;
    for (int t = 0; t < cfg.threads; t++)
        n += cqt[t].nlat[pi];
    uint32_t *v = malloc((n ? n : 1) * sizeof *v);
    if (v == NULL)
        return;
    size_t k = 0;
    for (int t = 0; t < cfg.threads; t++) {
        if (cqt[t].nlat[pi])
            memcpy(v + k, cqt[t].lat[pi], cqt[t].nlat[pi] * sizeof *v);
        k += cqt[t].nlat[pi];
    }
    qsort(v, n, sizeof *v, cmp_u32);
    f->p50 = pct(v, n, 0.50);
    f->p90 = pct(v, n, 0.90);
    f->p99 = pct(v, n, 0.99);
    f->max = n ? v[n - 1] : 0;
    free(v);
    f->write_s = (double)(p->written_ns - p->t0_ns) / 1e9;
    uint64_t last = atomic_load(&p->last_recv_ns);
    f->deliver_s = last > p->t0_ns ? (double)(last - p->t0_ns) / 1e9 : 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fxb-bench-push -p SERVER_PID [-P REDIS_PID] [-n N] [-c CONNS] [-t THREADS]\n"
            "                      [-r RATE] [-d SECS] [-B 0|1] [-W WRITERS] [-s SETTLE_S]\n"
            "                      [-o OPEN_TIMEOUT_S] [-g GOAL_MS] [-S SEED]\n"
            "                      TARGET REDIS_URL SUBJECTS_FILE\n");
}

static bool parse_num(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

static double mib(long long bytes)
{
    return (double)bytes / 1048576.0;
}

int main(int argc, char **argv)
{
    cfg.conns = 16;
    cfg.threads = 2;
    cfg.writers = 1;
    cfg.rate = 2000;
    cfg.duration_s = 10;
    cfg.burst = true;
    cfg.settle_s = 3;
    cfg.open_timeout_s = 120;
    cfg.goal_ms = 50;
    cfg.seed = 1;
    int opt;
    double v;
    while ((opt = getopt(argc, argv, "n:c:t:r:d:B:W:s:o:g:p:P:S:h")) != -1) {
        switch (opt) {
        case 'n':
            if (!parse_num(optarg, 1, MAX_STREAMS, &v))
                goto bad;
            cfg.n = (int)v;
            break;
        case 'c':
            if (!parse_num(optarg, 1, MAX_CONNS, &v))
                goto bad;
            cfg.conns = (int)v;
            break;
        case 't':
            if (!parse_num(optarg, 1, MAX_THREADS, &v))
                goto bad;
            cfg.threads = (int)v;
            break;
        case 'r':
            if (!parse_num(optarg, 0, 1e6, &cfg.rate))
                goto bad;
            break;
        case 'd':
            if (!parse_num(optarg, 0.1, 3600, &cfg.duration_s))
                goto bad;
            break;
        case 'B':
            if (!parse_num(optarg, 0, 1, &v))
                goto bad;
            cfg.burst = v != 0;
            break;
        case 'W':
            if (!parse_num(optarg, 1, MAX_WRITERS, &v))
                goto bad;
            cfg.writers = (int)v;
            break;
        case 's':
            if (!parse_num(optarg, 0, 600, &cfg.settle_s))
                goto bad;
            break;
        case 'o':
            if (!parse_num(optarg, 1, 3600, &cfg.open_timeout_s))
                goto bad;
            break;
        case 'g':
            if (!parse_num(optarg, 0.001, 1e6, &cfg.goal_ms))
                goto bad;
            break;
        case 'p':
            if (!parse_num(optarg, 1, INT_MAX, &v))
                goto bad;
            cfg.server_pid = (pid_t)v;
            break;
        case 'P':
            if (!parse_num(optarg, 1, INT_MAX, &v))
                goto bad;
            cfg.redis_pid = (pid_t)v;
            break;
        case 'S':
            if (!parse_num(optarg, 1, 1e15, &v))
                goto bad;
            cfg.seed = (uint64_t)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            goto bad;
        }
    }
    if (argc - optind != 3 || cfg.server_pid == 0)
        goto bad;
    cfg.target = argv[optind];
    cfg.redis_url = argv[optind + 1];
    if (!load_subjects(argv[optind + 2]))
        return 1;
    if ((long)cfg.n > (long)cfg.conns * PER_CONN_MAX) {
        fprintf(stderr, "fxb-bench-push: %d streams need at least %d connections (-c)\n", cfg.n,
                (cfg.n + PER_CONN_MAX - 1) / PER_CONN_MAX);
        return 2;
    }
    if (cfg.conns > cfg.n)
        cfg.conns = cfg.n;
    if (rss_kb(cfg.server_pid) < 0) {
        fprintf(stderr, "fxb-bench-push: cannot read /proc/%ld/status\n", (long)cfg.server_pid);
        return 1;
    }
    /* one socket per connection only, but room costs nothing */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    fxb_err err;
    fxb_store_options so = {.url = cfg.redis_url, .command_timeout_ms = 10000};
    fxb_store *st = fxb_store_new(&so, &err);
    fxb_store *wst[MAX_WRITERS] = {NULL};
    for (int i = 0; st && i < cfg.writers; i++)
        if ((wst[i] = fxb_store_new(&so, &err)) == NULL)
            break;
    if (st == NULL || wst[cfg.writers - 1] == NULL || !fxb_store_ping(st)) {
        fprintf(stderr, "fxb-bench-push: Redis %s: %s\n", cfg.redis_url,
                st ? "unreachable" : err.message);
        return 1;
    }

    /* the plan: subjects of every notice, fixed up front */
    uint64_t rnd = cfg.seed * 0x9e3779b97f4a7c15ull + 1;
    ph[PH_STEADY].n = (size_t)(cfg.rate * cfg.duration_s + 0.5);
    ph[PH_STEADY].rate = cfg.rate;
    ph[PH_BURST].n = cfg.burst ? (size_t)cfg.n : 0;
    for (int p = 0; p < N_PH; p++) {
        size_t n = ph[p].n ? ph[p].n : 1;
        ph[p].target = malloc(n * sizeof *ph[p].target);
        ph[p].sent = calloc(n, sizeof *ph[p].sent);
        ph[p].got = calloc(n, sizeof *ph[p].got);
        pthread_mutex_init(&ph[p].mu, NULL);
        if (!ph[p].target || !ph[p].sent || !ph[p].got) {
            fprintf(stderr, "fxb-bench-push: out of memory\n");
            return 1;
        }
    }
    for (size_t i = 0; i < ph[PH_STEADY].n; i++)
        ph[PH_STEADY].target[i] = (int)(xorshift(&rnd) % (uint64_t)cfg.n);
    for (size_t i = 0; i < ph[PH_BURST].n; i++) /* a random permutation */
        ph[PH_BURST].target[i] = (int)i;
    for (size_t i = ph[PH_BURST].n; i > 1; i--) {
        size_t j = (size_t)(xorshift(&rnd) % i);
        int tmp = ph[PH_BURST].target[i - 1];
        ph[PH_BURST].target[i - 1] = ph[PH_BURST].target[j];
        ph[PH_BURST].target[j] = tmp;
    }

    char(*after)[ID_MAX] = calloc((size_t)cfg.n, sizeof *after);
    bool *open = calloc((size_t)cfg.n, sizeof *open);
    streams = calloc((size_t)cfg.n, sizeof *streams);
    channels = calloc((size_t)cfg.conns, sizeof *channels);
    if (!after || !open || !streams || !channels) {
        fprintf(stderr, "fxb-bench-push: out of memory\n");
        return 1;
    }
    if (!last_ids(st, after))
        return 1;
    int nonempty = 0;
    for (int i = 0; i < cfg.n; i++)
        nonempty += after[i][0] != '\0';

    grpc_init();
    grpc_arg args[2];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL; /* a connection per channel */
    args[0].value.integer = 1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ENABLE_RETRIES;
    args[1].value.integer = 0;
    grpc_channel_args chargs = {2, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    for (int i = 0; i < cfg.conns; i++)
        channels[i] = grpc_channel_create(cfg.target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    for (int t = 0; t < cfg.threads; t++) {
        cqt[t].cq = grpc_completion_queue_create_for_next(NULL);
        if (pthread_create(&cqt[t].th, NULL, cq_main, &cqt[t]) != 0) {
            fprintf(stderr, "fxb-bench-push: pthread_create failed\n");
            return 1;
        }
    }
    int rc = 1;
    phase_figures fig[N_PH];
    memset(fig, 0, sizeof fig);
    if (!connect_all())
        goto shutdown;

    /* ---- idle streams ---- */
    sleep_ns(1000000000u); /* let the connections' start-up settle */
    long rss0 = rss_kb(cfg.server_pid);
    long long red0 = redis_used_memory(st);
    uint64_t t_open0 = now_ns();
    for (int i = 0; i < cfg.n; i++) {
        streams[i].index = i;
        if (!open_stream(&streams[i], channels[i % cfg.conns], cqt[i % cfg.threads].cq, after[i])) {
            fprintf(stderr, "fxb-bench-push: the core refused to start stream %d\n", i);
            goto shutdown;
        }
    }
    int nopen = 0;
    uint64_t open_deadline = t_open0 + (uint64_t)(cfg.open_timeout_s * 1e9);
    while ((nopen = count_open(st, open)) >= 0 && nopen < cfg.n && now_ns() < open_deadline &&
           atomic_load(&ended_early) == 0)
        sleep_ns(50000000u);
    double open_s = (double)(now_ns() - t_open0) / 1e9;
    if (nopen != cfg.n || atomic_load(&ended_early)) {
        fprintf(stderr, "fxb-bench-push: %d of %d streams open after %.1f s%s%s\n",
                nopen < 0 ? 0 : nopen, cfg.n, open_s, first_end[0] ? "; " : "", first_end);
        goto shutdown;
    }
    int64_t srv_c0 = cpu_ns_pid(cfg.server_pid), red_c0 = cpu_ns_pid(cfg.redis_pid);
    uint64_t ts0 = now_ns();
    sleep_ns((uint64_t)(cfg.settle_s * 1e9));
    double settle = (double)(now_ns() - ts0) / 1e9;
    int64_t srv_c1 = cpu_ns_pid(cfg.server_pid), red_c1 = cpu_ns_pid(cfg.redis_pid);
    long rss1 = rss_kb(cfg.server_pid);
    long long red1 = redis_used_memory(st);
    uint64_t idle_msgs = atomic_load(&ph[PH_STEADY].received) + atomic_load(&ph[PH_BURST].received);
    uint64_t idle_foreign = 0;
    for (int t = 0; t < cfg.threads; t++)
        idle_foreign += cqt[t].foreign;

    /* ---- delivery ---- */
    for (int pi = 0; pi < N_PH; pi++) {
        if (ph[pi].n == 0 || atomic_load(&ended_early))
            continue;
        int64_t s0 = cpu_ns_pid(cfg.server_pid), r0 = cpu_ns_pid(cfg.redis_pid);
        uint64_t c0 = cpu_ns_self(), w0 = now_ns();
        if (!run_phase(pi, wst, &fig[pi].drain_s))
            goto shutdown;
        double secs = (double)(now_ns() - w0) / 1e9;
        int64_t s1 = cpu_ns_pid(cfg.server_pid), r1 = cpu_ns_pid(cfg.redis_pid);
        fig[pi].ran = true;
        fig[pi].secs = secs;
        fig[pi].cpu_srv = s0 >= 0 && s1 >= 0 ? (double)(s1 - s0) / 1e9 / secs : -1;
        fig[pi].cpu_redis = r0 >= 0 && r1 >= 0 ? (double)(r1 - r0) / 1e9 / secs : -1;
        fig[pi].cpu_client = (double)(cpu_ns_self() - c0) / 1e9 / secs;
        sleep_ns(500000000u); /* between phases, and room for a late duplicate */
    }
    long rss2 = rss_kb(cfg.server_pid);
    for (int pi = 0; pi < N_PH; pi++)
        if (fig[pi].ran)
            phase_check(pi, &fig[pi]);

    /* ---- report ---- */
    uint64_t order = 0, misrouted = 0, foreign = 0, malformed = 0;
    bool oom = false;
    for (int t = 0; t < cfg.threads; t++) {
        order += cqt[t].order_errors;
        misrouted += cqt[t].misrouted;
        foreign += cqt[t].foreign;
        malformed += cqt[t].malformed;
        oom |= cqt[t].oom;
    }
    long ended = atomic_load(&ended_early);
    double per_stream = (double)(rss1 - rss0) * 1024.0 / cfg.n;
    double red_per = red0 >= 0 && red1 >= 0 ? (double)(red1 - red0) / cfg.n : 0;
    printf("streams: %d InboxService/Subscribe over %d connections, %d client thread%s; "
           "%d inbox%s not empty (after_id = its last id)\n",
           cfg.n, cfg.conns, cfg.threads, cfg.threads == 1 ? "" : "s", nonempty,
           nonempty == 1 ? "" : "es");
    printf("  opened: all %d in %.2f s (%.0f streams/s, until every presence counter was up)\n",
           cfg.n, open_s, cfg.n / open_s);
    printf("  idle memory, %.1f s after the last opened, no message sent:\n", settle);
    printf("    fxb-server VmRSS     %9.1f MiB -> %9.1f MiB  %+8.1f MiB  = %7.0f bytes per idle "
           "stream\n",
           rss0 / 1024.0, rss1 / 1024.0, (rss1 - rss0) / 1024.0, per_stream);
    if (red0 >= 0 && red1 >= 0)
        printf("    redis used_memory    %9.1f MiB -> %9.1f MiB  %+8.1f MiB  = %7.0f bytes per "
               "stream (presence counters)\n",
               mib(red0), mib(red1), mib(red1 - red0), red_per);
    printf("    idle CPU: fxb-server %.3f cores",
           srv_c0 >= 0 && srv_c1 >= 0 ? (double)(srv_c1 - srv_c0) / 1e9 / settle : -1.0);
    if (red_c0 >= 0 && red_c1 >= 0)
        printf(", redis-server %.3f cores", (double)(red_c1 - red_c0) / 1e9 / settle);
    printf("; messages during the idle time: %" PRIu64 "\n", idle_msgs + idle_foreign);
    printf("  fxb-server VmRSS after the delivery phases: %.1f MiB\n", rss2 / 1024.0);
    printf("\n%-26s %7s %7s %5s %7s %7s %7s %7s %7s %7s %6s %7s %8s\n", "delivery (append->recv)",
           "sent", "recv", "dup", "missing", "p50 ms", "p90 ms", "p99 ms", "max ms", "secs",
           "srv c", "redis c", "client c");
    bool once_ok = ended == 0 && order == 0 && misrouted == 0 && malformed == 0 && !oom;
    for (int pi = 0; pi < N_PH; pi++) {
        phase_figures *f = &fig[pi];
        if (!f->ran)
            continue;
        once_ok &= f->once == f->sent && f->dup == 0 && f->missing == 0 && f->extra == 0 &&
                   f->send_errors == 0 && f->received == f->sent;
        char what[40];
        if (pi == PH_STEADY)
            snprintf(what, sizeof what, "steady %.0f/s x %.0f s", cfg.rate, cfg.duration_s);
        else
            snprintf(what, sizeof what, "burst 1 to each of %d", cfg.n);
        printf("%-26s %7" PRIu64 " %7" PRIu64 " %5" PRIu64 " %7" PRIu64
               " %7.2f %7.2f %7.2f %7.2f %7.2f %6.2f %7.2f %8.2f\n",
               what, f->sent, f->received, f->dup, f->missing, f->p50 / 1e3, f->p90 / 1e3,
               f->p99 / 1e3, f->max / 1e3, f->deliver_s, f->cpu_srv, f->cpu_redis, f->cpu_client);
    }
    if (fig[PH_STEADY].ran)
        printf("  steady: written in %.2f s (%.0f/s achieved, writers at most %.1f ms behind "
               "schedule)\n",
               fig[PH_STEADY].write_s, fig[PH_STEADY].sent / fig[PH_STEADY].write_s,
               atomic_load(&ph[PH_STEADY].max_lag_ns) / 1e6);
    if (fig[PH_BURST].ran)
        printf("  burst: %d notices written in %.3f s by %d writer%s (%.0f/s); the last one "
               "delivered %.3f s after the first append\n",
               cfg.n, fig[PH_BURST].write_s, cfg.writers, cfg.writers == 1 ? "" : "s",
               fig[PH_BURST].sent / fig[PH_BURST].write_s, fig[PH_BURST].deliver_s);
    printf("  (secs: first append to last reception; srv/redis/client c: cores used over the "
           "phase)\n");
    for (int pi = 0; pi < N_PH; pi++) {
        if (ph[pi].first_error[0])
            printf("  %s: %" PRIu64 " appends failed; first: %s\n", ph_name[pi],
                   fig[pi].send_errors, ph[pi].first_error);
        if (fig[pi].extra)
            printf("  %s: %" PRIu64 " notices whose append failed were delivered\n", ph_name[pi],
                   fig[pi].extra);
    }
    printf("\nexactly once: %s (%" PRIu64 " + %" PRIu64 " notices each received once, on its "
           "subscriber's stream; ids out of order %" PRIu64 ", misrouted %" PRIu64
           ", unparsable %" PRIu64 ", streams ended early %ld, other messages %" PRIu64 ")\n",
           once_ok ? "OK" : "FAILED", fig[PH_STEADY].once, fig[PH_BURST].once, order, misrouted,
           malformed, ended, foreign);
    if (first_end[0])
        printf("  first stream that ended: %s\n", first_end);
    bool goal_met = fig[PH_STEADY].ran && fig[PH_STEADY].received > 0 &&
                    fig[PH_STEADY].p99 / 1e3 < cfg.goal_ms && once_ok;
    if (fig[PH_STEADY].ran)
        printf("target: %d concurrent streams, steady delivery p99 < %g ms, exactly once: %s "
               "(p99 %.2f ms; burst p99 %.2f ms, informational); %.0f bytes of fxb-server "
               "memory per idle stream\n",
               cfg.n, cfg.goal_ms, goal_met ? "MET" : "NOT MET", fig[PH_STEADY].p99 / 1e3,
               fig[PH_BURST].p99 / 1e3, per_stream);
    else
        printf("target: not judged (no steady phase: -r 0)\n");

    printf("RESULT n=%d conns=%d threads=%d open_s=%.3f settle_s=%.1f rss_before_kb=%ld "
           "rss_after_kb=%ld rss_end_kb=%ld bytes_per_stream=%.0f redis_before=%lld "
           "redis_after=%lld redis_bytes_per_stream=%.0f",
           cfg.n, cfg.conns, cfg.threads, open_s, settle, rss0, rss1, rss2, per_stream, red0, red1,
           red_per);
    for (int pi = 0; pi < N_PH; pi++) {
        phase_figures *f = &fig[pi];
        if (!f->ran)
            continue;
        const char *k = ph_name[pi];
        printf(" %s_sent=%" PRIu64 " %s_recv=%" PRIu64 " %s_dup=%" PRIu64 " %s_missing=%" PRIu64
               " %s_p50_us=%u %s_p90_us=%u %s_p99_us=%u %s_max_us=%u %s_secs=%.3f "
               "%s_srv_cores=%.3f",
               k, f->sent, k, f->received, k, f->dup, k, f->missing, k, f->p50, k, f->p90, k,
               f->p99, k, f->max, k, f->deliver_s, k, f->cpu_srv);
    }
    printf(" ended_early=%ld order_errors=%" PRIu64 " exactly_once=%d goal_met=%d\n", ended, order,
           once_ok ? 1 : 0, goal_met ? 1 : 0);
    fflush(stdout);
    rc = goal_met ? 0 : 3;

shutdown:
    atomic_store(&stopping, 1);
    for (int i = 0; i < cfg.n; i++)
        if (streams[i].call)
            grpc_call_cancel(streams[i].call, NULL);
    uint64_t until = now_ns() + 10000000000ull;
    while (atomic_load(&live_ops) > 0 && now_ns() < until)
        sleep_ns(2000000);
    if (atomic_load(&live_ops) > 0) {
        /* the core still holds batches: leave it to the exit */
        fprintf(stderr, "fxb-bench-push: %ld batches outstanding after cancel\n",
                atomic_load(&live_ops));
        return rc;
    }
    for (int i = 0; i < cfg.n; i++) {
        stream *s = &streams[i];
        if (s->call == NULL)
            continue;
        grpc_call_unref(s->call);
        grpc_metadata_array_destroy(&s->initial);
        grpc_metadata_array_destroy(&s->trailing);
        grpc_slice_unref(s->details);
        if (s->send)
            grpc_byte_buffer_destroy(s->send);
    }
    for (int i = 0; i < cfg.conns; i++)
        grpc_channel_destroy(channels[i]);
    for (int t = 0; t < cfg.threads; t++) {
        grpc_completion_queue_shutdown(cqt[t].cq);
        pthread_join(cqt[t].th, NULL);
        grpc_completion_queue_destroy(cqt[t].cq);
        for (int p = 0; p < N_PH; p++)
            free(cqt[t].lat[p]);
    }
    for (int i = 0; i < cfg.n; i++)
        grpc_slice_unref(auth[i]);
    grpc_shutdown();
    for (int i = 0; i < cfg.writers; i++)
        fxb_store_free(wst[i]);
    fxb_store_free(st);
    for (int p = 0; p < N_PH; p++) {
        free(ph[p].target);
        free((void *)ph[p].sent);
        free((void *)ph[p].got);
    }
    free(auth);
    free(ids);
    free(after);
    free(open);
    free(streams);
    free(channels);
    return rc;

bad:
    usage(stderr);
    return 2;
}
