/* fxb-bench-auth: a closed-loop gRPC C-core client for one unary method,
 * optionally carrying `authorization: Bearer <token>` rotated over a list of
 * tokens. bench/auth_run.sh uses it to compare an authenticated RPC with the
 * same work without auth, in one run; bench/filing_run.sh, with a different
 * request body on every call (-b, -o), to submit each draft once (see
 * bench/README.md).
 *
 * Usage: fxb-bench-auth [options] TARGET METHOD BODY_FILE|- TOKEN_FILE|-
 *   TARGET      host:port of an insecure (h2c) gRPC server
 *   METHOD      method path, e.g. /fxb.v1.DiagService/ProbeSignedIn
 *   BODY_FILE   the serialized request message (no gRPC framing); may be
 *               empty. "-" exactly when -b is given
 *   TOKEN_FILE  access tokens, one a line; every call takes the next one,
 *               round robin. "-": no authorization header
 * Options:
 *   -c C        connections (separate channels, each its own TCP connection),
 *               default 10
 *   -m M        calls outstanding on each connection, default 10
 *   -t T        client threads (one CQ each; connections spread over them),
 *               default 1
 *   -d SECS     measure for SECS seconds (default 10)
 *   -n N        or: measure until N calls completed
 *   -w W        warm-up: W calls complete before the measured window opens
 *               (default C*M*10); their results are not in the figures, but
 *               their errors are counted
 *   -p PID      a process whose CPU time to report over the window
 *               (repeatable: e.g. the server and redis)
 *   -l LABEL    a label for the output lines
 *   -b BODIES   request bodies, one a line, hex-encoded (blank lines
 *               skipped); BODY_FILE must then be "-". The calls of the run
 *               are numbered 0, 1, 2, ... across all threads: call i sends
 *               body i and token i (both modulo their counts: in lockstep,
 *               so a TOKEN_FILE with one line per body pairs them line by
 *               line). bench/filing_run.sh uses it to submit a different
 *               draft on every call, each with its owner's token.
 *   -o          with -b: each body at most once. When the last body has
 *               been sent no call starts any more, and the measured window
 *               closes at that moment (if -d or -n did not close it first):
 *               every measured call ran with all C*M slots busy. The calls
 *               still outstanding drain outside the window (their errors
 *               count). Bodies needed for a run of N measured calls:
 *               W + N + C*M. RESULT then says bodies_used= and exhausted=1
 *               when the bodies ran out.
 *   -e F=V      every OK response must hold top-level varint field F with
 *               value V (proto3: an absent field is 0); one that does not is
 *               an error (counted as unexpected=). E.g. -e 2=1 for
 *               SubmitResult.outcome = SUBMIT_OUTCOME_SUBMITTED.
 *
 * Per call: grpc_channel_create_call, then ONE batch SEND_INITIAL_METADATA +
 * SEND_MESSAGE + SEND_CLOSE_FROM_CLIENT + RECV_INITIAL_METADATA +
 * RECV_MESSAGE + RECV_STATUS_ON_CLIENT; when it completes, the next call
 * starts in the same slot (closed loop: C*M calls always outstanding). No
 * deadline is set, as h2load sets none in bench/run.sh.
 *
 * The measured window: from the moment W calls have completed to D seconds
 * later (or to the N-th completion after that). req/s = calls completed in
 * the window / its length; p50/p99 are nearest-rank over the latencies of
 * those calls (start of the call to completion of its batch). Every status
 * other than OK, a batch that fails, and an OK without a response message
 * is an error, counted over the whole run (warm-up and drain included).
 * After the window no new call starts; calls still outstanding after 10 s
 * are cancelled (and counted as errors).
 *
 * Output: a human-readable summary, then one line for scripts:
 *   RESULT label=L calls=.. errors=.. secs=.. rps=.. p50_us=.. p90_us=..
 *          p99_us=.. p999_us=.. max_us=.. client_cores=.. [cpu<i>_pid=..
 *          cpu<i>_cores=.. cpu<i>_us_per_call=.. for each -p] machine_cores=..
 *          steal_cores=.. other_cores=.. [bodies=.. bodies_used=..
 *          exhausted=0|1 with -b] [unexpected=.. with -e]
 * other_cores: the machine's busy CPU (/proc/stat) minus this client and
 * every -p process: what else ran during the window (noise). With -n the
 * window closes at the first check after N completions, so a few more may
 * be counted.
 * Exit status: 0 all calls OK, 3 the run completed but saw errors, 1 setup
 * failure, 2 bad usage. */
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
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#define MAX_THREADS     16
#define MAX_CONNS       4096
#define MAX_PIDS        4
#define DRAIN_GRACE_S   10
#define CONNECT_TIMEOUT 10 /* seconds */
#define N_CODES         17 /* grpc_status_code 0..16 */

enum { PHASE_WARMUP = 0, PHASE_MEASURE = 1, PHASE_DRAIN = 2 };

typedef struct worker worker;

typedef struct slot {
    worker *w;
    grpc_channel *channel;
    grpc_call *call; /* NULL while idle */
    grpc_metadata md;
    grpc_metadata_array recv_initial;
    grpc_metadata_array trailing;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    uint64_t start_ns;
} slot;

struct worker {
    int index;
    pthread_t thread;
    grpc_completion_queue *cq;
    grpc_channel **channels;
    int nchannels;
    slot *slots;
    int nslots;
    int outstanding;
    size_t next_token;
    bool cancelled;
    /* read by the main thread while running */
    _Atomic uint64_t completed; /* every completion, any phase */
    _Atomic uint64_t measured;  /* completions inside the window */
    /* read after join */
    uint64_t errors;
    uint64_t errors_by_code[N_CODES];
    uint64_t errors_other; /* failed batch, OK without message, start failure */
    uint64_t unexpected;   /* OK, but the response failed the -e check */
    uint32_t *lat_us;      /* latencies of the measured calls */
    size_t nlat, caplat;
    char first_error[256];
    bool failed; /* setup or start_batch failure: stop everything */
};

static struct {
    const char *target;
    grpc_slice method;
    grpc_slice body;
    grpc_slice auth_key;
    grpc_slice *tokens;
    size_t ntokens;
    int conns, per_conn, threads;
    double duration_s;
    uint64_t ncalls; /* 0: duration mode */
    uint64_t warmup;
    pid_t pids[MAX_PIDS];
    int npids;
    const char *label;
    grpc_slice *bodies; /* -b: one per line; call i sends bodies[i % nbodies] */
    size_t nbodies;
    bool once;   /* -o: each body at most once */
    bool expect; /* -e F=V */
    uint32_t expect_field;
    uint64_t expect_value;
} cfg;

static _Atomic int phase = PHASE_WARMUP;
/* -b: the number of the next call (across threads), and whether -o ran out */
static _Atomic uint64_t next_call;
static _Atomic int exhausted;

static const char *const code_names[N_CODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns_self(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* utime + stime of a process in ns (clock-tick resolution), -1 if unreadable. */
static int64_t cpu_ns_pid(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command name, which is in parentheses and may hold
     * spaces: state(3) ... utime(14) stime(15) */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    p++;
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (field != 15)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return (int64_t)((ut + st) * (1000000000ull / (unsigned long long)hz));
}

/* CPU time the whole machine spent busy (not idle, not iowait) in ns,
 * from /proc/stat, and in *steal the part the hypervisor gave to others;
 * -1 if unreadable. */
static int64_t cpu_ns_machine(int64_t *steal)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5)
        return -1;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* - idle, iowait */
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    *steal = (int64_t)(v[7] * (1000000000ull / (unsigned long long)hz));
    return (int64_t)(busy * (1000000000ull / (unsigned long long)hz));
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

__attribute__((format(printf, 2, 3))) static void note_error(worker *w, const char *fmt, ...)
{
    if (w->first_error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->first_error, sizeof w->first_error, fmt, ap);
    va_end(ap);
}

/* ---- one call ------------------------------------------------------------ */

enum { START_FAILED = 0, START_OK = 1, START_NO_BODY = 2 };

/* Starts a call in slot s: START_OK, START_FAILED, or (-o) START_NO_BODY
 * when every body has been sent (nothing started). */
static int start_call(worker *w, slot *s)
{
    grpc_slice body;
    const grpc_slice *token = NULL;
    if (cfg.nbodies > 0) {
        uint64_t i = atomic_fetch_add_explicit(&next_call, 1, memory_order_relaxed);
        if (cfg.once && i >= cfg.nbodies) {
            atomic_store(&exhausted, 1);
            return START_NO_BODY;
        }
        body = grpc_slice_ref(cfg.bodies[i % cfg.nbodies]);
        if (cfg.ntokens > 0)
            token = &cfg.tokens[i % cfg.ntokens];
    } else {
        body = grpc_slice_ref(cfg.body);
        if (cfg.ntokens > 0) {
            token = &cfg.tokens[w->next_token];
            w->next_token = (w->next_token + 1) % cfg.ntokens;
        }
    }
    s->call = grpc_channel_create_call(s->channel, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq, cfg.method,
                                       NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (s->call == NULL) {
        note_error(w, "grpc_channel_create_call failed");
        grpc_slice_unref(body);
        return START_FAILED;
    }
    grpc_metadata_array_init(&s->recv_initial);
    grpc_metadata_array_init(&s->trailing);
    s->send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    s->recv = NULL;
    s->details = grpc_empty_slice();
    s->error_string = NULL;
    s->status = GRPC_STATUS_UNKNOWN;

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (token != NULL) {
        s->md.value = *token;
        ops[0].data.send_initial_metadata.count = 1;
        ops[0].data.send_initial_metadata.metadata = &s->md;
    }
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->recv_initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    ops[5].data.recv_status_on_client.error_string = &s->error_string;

    s->start_ns = now_ns();
    grpc_call_error e = grpc_call_start_batch(s->call, ops, 6, s, NULL);
    if (e != GRPC_CALL_OK) {
        note_error(w, "grpc_call_start_batch failed: %s", grpc_call_error_to_string(e));
        grpc_metadata_array_destroy(&s->recv_initial);
        grpc_metadata_array_destroy(&s->trailing);
        grpc_byte_buffer_destroy(s->send);
        grpc_call_unref(s->call);
        s->call = NULL;
        return START_FAILED;
    }
    w->outstanding++;
    return START_OK;
}

/* -e: reads a varint at *p (< end); false when malformed. */
static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

/* -e: whether the response's top-level varint field cfg.expect_field holds
 * cfg.expect_value (the last occurrence wins, as protobuf parses; absent
 * is 0). A malformed message fails. */
static bool response_expected(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return false;
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    const uint8_t *p = GRPC_SLICE_START_PTR(all), *end = p + GRPC_SLICE_LENGTH(all);
    uint64_t value = 0;
    bool ok = true;
    while (ok && p < end) {
        uint64_t key, v;
        if (!get_varint(&p, end, &key)) {
            ok = false;
            break;
        }
        switch (key & 7) {
        case 0: /* varint */
            ok = get_varint(&p, end, &v);
            if (ok && (key >> 3) == cfg.expect_field)
                value = v;
            break;
        case 1: /* 64-bit */
            ok = end - p >= 8;
            p += ok ? 8 : 0;
            break;
        case 2: /* length-delimited */
            ok = get_varint(&p, end, &v) && v <= (uint64_t)(end - p);
            p += ok ? v : 0;
            break;
        case 5: /* 32-bit */
            ok = end - p >= 4;
            p += ok ? 4 : 0;
            break;
        default:
            ok = false;
        }
    }
    grpc_slice_unref(all);
    return ok && value == cfg.expect_value;
}

static void record_latency(worker *w, uint64_t ns)
{
    if (w->nlat == w->caplat) {
        size_t cap = w->caplat ? w->caplat * 2 : 65536;
        uint32_t *p = realloc(w->lat_us, cap * sizeof *p);
        if (p == NULL)
            return; /* figures lose a sample rather than the run */
        w->lat_us = p;
        w->caplat = cap;
    }
    uint64_t us = (ns + 500) / 1000;
    w->lat_us[w->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void finish_call(worker *w, slot *s, bool ok, uint64_t end_ns)
{
    w->outstanding--;
    bool good = ok && s->status == GRPC_STATUS_OK && s->recv != NULL;
    if (good && cfg.expect && !response_expected(s->recv)) {
        w->errors++;
        w->unexpected++;
        note_error(w, "OK, but field %u of the response is not %" PRIu64 " (-e)", cfg.expect_field,
                   cfg.expect_value);
    } else if (!good) {
        w->errors++;
        if (!ok) {
            w->errors_other++;
            note_error(w, "batch failed");
        } else if (s->status != GRPC_STATUS_OK) {
            if ((unsigned)s->status < N_CODES)
                w->errors_by_code[s->status]++;
            else
                w->errors_other++;
            if (w->first_error[0] == '\0') {
                char *d = grpc_slice_to_c_string(s->details);
                snprintf(w->first_error, sizeof w->first_error, "%s: %s",
                         (unsigned)s->status < N_CODES ? code_names[s->status] : "?", d);
                gpr_free(d);
            }
        } else {
            w->errors_other++;
            note_error(w, "status OK without a response message");
        }
    }
    atomic_fetch_add_explicit(&w->completed, 1, memory_order_relaxed);
    if (atomic_load_explicit(&phase, memory_order_relaxed) == PHASE_MEASURE) {
        atomic_fetch_add_explicit(&w->measured, 1, memory_order_relaxed);
        record_latency(w, end_ns - s->start_ns);
    }
    if (s->recv)
        grpc_byte_buffer_destroy(s->recv);
    grpc_byte_buffer_destroy(s->send);
    grpc_metadata_array_destroy(&s->recv_initial);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_slice_unref(s->details);
    if (s->error_string)
        gpr_free((void *)s->error_string);
    grpc_call_unref(s->call);
    s->call = NULL;
}

/* ---- connections ---------------------------------------------------------- */

static bool connect_all(worker *w)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_seconds(CONNECT_TIMEOUT, GPR_TIMESPAN));
    for (int i = 0; i < w->nchannels; i++) {
        for (;;) {
            grpc_connectivity_state st = grpc_channel_check_connectivity_state(w->channels[i], 1);
            if (st == GRPC_CHANNEL_READY)
                break;
            if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), deadline) >= 0) {
                note_error(w, "cannot connect to %s within %d s", cfg.target, CONNECT_TIMEOUT);
                return false;
            }
            int tag = 0;
            grpc_channel_watch_connectivity_state(w->channels[i], st, deadline, w->cq, &tag);
            grpc_event ev;
            do
                ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            while (ev.type == GRPC_OP_COMPLETE && ev.tag != &tag);
        }
    }
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    if (!connect_all(w)) {
        w->failed = true;
        return NULL;
    }
    for (int i = 0; i < w->nslots; i++) {
        int st = start_call(w, &w->slots[i]);
        if (st == START_NO_BODY)
            break;
        if (st == START_FAILED) {
            w->failed = true;
            w->errors++;
            w->errors_other++;
            break;
        }
    }
    uint64_t drain_since = 0;
    while (w->outstanding > 0) {
        grpc_event ev = grpc_completion_queue_next(
            w->cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN)),
            NULL);
        int ph = atomic_load_explicit(&phase, memory_order_relaxed);
        if (ev.type == GRPC_OP_COMPLETE) {
            slot *s = ev.tag;
            finish_call(w, s, ev.success != 0, now_ns());
            if (ph != PHASE_DRAIN && !w->failed) {
                if (start_call(w, s) == START_FAILED) {
                    w->failed = true;
                    w->errors++;
                    w->errors_other++;
                }
            }
        } else if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break; /* not expected before we shut it down */
        }
        if (ph == PHASE_DRAIN || w->failed) {
            if (drain_since == 0)
                drain_since = now_ns();
            else if (!w->cancelled && now_ns() - drain_since > DRAIN_GRACE_S * 1000000000ull) {
                for (int i = 0; i < w->nslots; i++)
                    if (w->slots[i].call)
                        grpc_call_cancel(w->slots[i].call, NULL);
                w->cancelled = true;
                note_error(w, "calls still outstanding %d s after the window: cancelled",
                           DRAIN_GRACE_S);
            }
        }
    }
    return NULL;
}

/* ---- input ---------------------------------------------------------------- */

static bool read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fxb-bench-auth: %s: %s\n", path, strerror(errno));
        return false;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || err) {
        free(buf);
        fprintf(stderr, "fxb-bench-auth: cannot read %s\n", path);
        return false;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return true;
}

static bool load_tokens(const char *path)
{
    char *data;
    size_t len;
    if (!read_file(path, &data, &len))
        return false;
    size_t cap = 0;
    for (char *line = data; line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        char *end = nl ? nl : data + len;
        char *e = end;
        while (e > line && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > line) {
            if (cfg.ntokens == cap) {
                cap = cap ? cap * 2 : 1024;
                grpc_slice *p = realloc(cfg.tokens, cap * sizeof *p);
                if (p == NULL) {
                    free(data);
                    return false;
                }
                cfg.tokens = p;
            }
            size_t n = 7 + (size_t)(e - line);
            grpc_slice sl = grpc_slice_malloc(n);
            memcpy(GRPC_SLICE_START_PTR(sl), "Bearer ", 7);
            memcpy(GRPC_SLICE_START_PTR(sl) + 7, line, (size_t)(e - line));
            cfg.tokens[cfg.ntokens++] = sl;
        }
        line = end + 1;
    }
    free(data);
    if (cfg.ntokens == 0) {
        fprintf(stderr, "fxb-bench-auth: %s holds no token\n", path);
        return false;
    }
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* -b: one hex-encoded body a line. */
static bool load_bodies(const char *path)
{
    char *data;
    size_t len;
    if (!read_file(path, &data, &len))
        return false;
    size_t cap = 0, lineno = 0;
    for (char *line = data; line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        char *end = nl ? nl : data + len;
        char *e = end;
        lineno++;
        while (e > line && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > line) {
            size_t n = (size_t)(e - line);
            if (n % 2 != 0) {
                fprintf(stderr, "fxb-bench-auth: %s:%zu: odd number of hex digits\n", path, lineno);
                free(data);
                return false;
            }
            if (cfg.nbodies == cap) {
                cap = cap ? cap * 2 : 1024;
                grpc_slice *p = realloc(cfg.bodies, cap * sizeof *p);
                if (p == NULL) {
                    free(data);
                    return false;
                }
                cfg.bodies = p;
            }
            grpc_slice sl = grpc_slice_malloc(n / 2);
            uint8_t *out = GRPC_SLICE_START_PTR(sl);
            for (size_t i = 0; i < n / 2; i++) {
                int hi = hex_digit(line[2 * i]), lo = hex_digit(line[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                    fprintf(stderr, "fxb-bench-auth: %s:%zu: not hex\n", path, lineno);
                    grpc_slice_unref(sl);
                    free(data);
                    return false;
                }
                out[i] = (uint8_t)(hi * 16 + lo);
            }
            cfg.bodies[cfg.nbodies++] = sl;
        }
        line = end + 1;
    }
    free(data);
    if (cfg.nbodies == 0) {
        fprintf(stderr, "fxb-bench-auth: %s holds no body\n", path);
        return false;
    }
    return true;
}

/* ---- figures -------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* nearest rank: the smallest value with at least q of the samples <= it */
static uint32_t pct(const uint32_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fxb-bench-auth [-c CONNS] [-m PER_CONN] [-t THREADS] [-d SECS | -n CALLS]\n"
            "                      [-w WARMUP_CALLS] [-p PID]... [-l LABEL]\n"
            "                      [-b BODIES_FILE [-o]] [-e FIELD=VALUE]\n"
            "                      TARGET METHOD BODY_FILE|- TOKEN_FILE|-\n"
            "  (BODY_FILE is - exactly when -b is given)\n");
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    cfg.conns = 10;
    cfg.per_conn = 10;
    cfg.threads = 1;
    cfg.duration_s = 10;
    cfg.label = "run";
    bool warmup_set = false;
    const char *bodies_path = NULL;
    int opt;
    uint64_t v;
    while ((opt = getopt(argc, argv, "c:m:t:d:n:w:p:l:b:oe:h")) != -1) {
        switch (opt) {
        case 'c':
            if (!parse_u64(optarg, 1, MAX_CONNS, &v))
                goto bad;
            cfg.conns = (int)v;
            break;
        case 'm':
            if (!parse_u64(optarg, 1, 10000, &v))
                goto bad;
            cfg.per_conn = (int)v;
            break;
        case 't':
            if (!parse_u64(optarg, 1, MAX_THREADS, &v))
                goto bad;
            cfg.threads = (int)v;
            break;
        case 'd': {
            char *end;
            cfg.duration_s = strtod(optarg, &end);
            if (end == optarg || *end || !(cfg.duration_s > 0 && cfg.duration_s < 86400))
                goto bad;
            cfg.ncalls = 0;
            break;
        }
        case 'n':
            if (!parse_u64(optarg, 1, UINT32_MAX, &cfg.ncalls))
                goto bad;
            break;
        case 'w':
            if (!parse_u64(optarg, 0, UINT32_MAX, &cfg.warmup))
                goto bad;
            warmup_set = true;
            break;
        case 'p':
            if (cfg.npids == MAX_PIDS || !parse_u64(optarg, 1, INT_MAX, &v))
                goto bad;
            cfg.pids[cfg.npids++] = (pid_t)v;
            break;
        case 'l':
            cfg.label = optarg;
            break;
        case 'b':
            bodies_path = optarg;
            break;
        case 'o':
            cfg.once = true;
            break;
        case 'e': {
            const char *eq = strchr(optarg, '=');
            char field[16];
            uint64_t f;
            if (eq == NULL || eq == optarg || (size_t)(eq - optarg) >= sizeof field)
                goto bad;
            memcpy(field, optarg, (size_t)(eq - optarg));
            field[eq - optarg] = '\0';
            if (!parse_u64(field, 1, 536870911, &f) || !parse_u64(eq + 1, 0, UINT64_MAX, &v))
                goto bad;
            cfg.expect = true;
            cfg.expect_field = (uint32_t)f;
            cfg.expect_value = v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            goto bad;
        }
    }
    if (argc - optind != 4)
        goto bad;
    if (cfg.threads > cfg.conns) {
        fprintf(stderr, "fxb-bench-auth: -t (%d) must be <= -c (%d)\n", cfg.threads, cfg.conns);
        return 2;
    }
    if (!warmup_set)
        cfg.warmup = (uint64_t)cfg.conns * (uint64_t)cfg.per_conn * 10;
    cfg.target = argv[optind];
    const char *method = argv[optind + 1];
    if (method[0] != '/') {
        fprintf(stderr, "fxb-bench-auth: METHOD must be a path like /pkg.Service/Method\n");
        return 2;
    }

    if (cfg.once && bodies_path == NULL) {
        fprintf(stderr, "fxb-bench-auth: -o needs -b\n");
        return 2;
    }
    if ((bodies_path != NULL) != (strcmp(argv[optind + 2], "-") == 0)) {
        fprintf(stderr, "fxb-bench-auth: BODY_FILE must be - exactly when -b is given\n");
        return 2;
    }
    char *body = NULL;
    size_t body_len = 0;
    if (bodies_path == NULL && !read_file(argv[optind + 2], &body, &body_len))
        return 1;
    if (strcmp(argv[optind + 3], "-") != 0 && !load_tokens(argv[optind + 3]))
        return 1;
    if (bodies_path != NULL && !load_bodies(bodies_path))
        return 1;

    grpc_init();
    cfg.method = grpc_slice_from_copied_string(method);
    cfg.body = grpc_slice_from_copied_buffer(body ? body : "", body_len);
    free(body);
    cfg.auth_key = grpc_slice_from_static_string("authorization");

    /* Separate connections: a local subchannel pool per channel (otherwise
     * channels to one target share a subchannel, i.e. one connection).
     * Retries off: the retry filter costs the client CPU on every call and
     * nothing here retries. */
    grpc_arg args[2];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ENABLE_RETRIES;
    args[1].value.integer = 0;
    grpc_channel_args chargs = {2, args};

    worker *ws = calloc((size_t)cfg.threads, sizeof *ws);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    int rc = 0;
    for (int t = 0; t < cfg.threads; t++) {
        worker *w = &ws[t];
        w->index = t;
        w->cq = grpc_completion_queue_create_for_next(NULL);
        w->nchannels = cfg.conns / cfg.threads + (t < cfg.conns % cfg.threads);
        w->channels = calloc((size_t)w->nchannels, sizeof *w->channels);
        w->nslots = w->nchannels * cfg.per_conn;
        w->slots = calloc((size_t)w->nslots, sizeof *w->slots);
        if (w->channels == NULL || w->slots == NULL) {
            fprintf(stderr, "fxb-bench-auth: out of memory\n");
            return 1;
        }
        for (int i = 0; i < w->nchannels; i++)
            w->channels[i] = grpc_channel_create(cfg.target, creds, &chargs);
        for (int i = 0; i < w->nslots; i++) {
            slot *s = &w->slots[i];
            s->w = w;
            s->channel = w->channels[i % w->nchannels];
            s->md.key = cfg.auth_key;
        }
        /* threads start at different places in the token list */
        w->next_token = cfg.ntokens ? (cfg.ntokens / (size_t)cfg.threads) * (size_t)t : 0;
    }
    grpc_channel_credentials_release(creds);

    for (int t = 0; t < cfg.threads; t++)
        if (pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]) != 0) {
            fprintf(stderr, "fxb-bench-auth: pthread_create failed\n");
            return 1;
        }

    /* warm-up, then the window */
    bool failed = false;
    for (;;) {
        uint64_t done = 0;
        for (int t = 0; t < cfg.threads; t++) {
            done += atomic_load(&ws[t].completed);
            failed |= ws[t].failed;
        }
        if (done >= cfg.warmup || failed || atomic_load(&exhausted))
            break;
        sleep_ns(1000000);
    }
    bool exhausted_in_warmup = atomic_load(&exhausted) != 0;
    int64_t pid_cpu0[MAX_PIDS];
    for (int i = 0; i < cfg.npids; i++)
        pid_cpu0[i] = cpu_ns_pid(cfg.pids[i]);
    int64_t steal0 = 0, steal1 = 0;
    int64_t machine_cpu0 = cpu_ns_machine(&steal0);
    uint64_t self_cpu0 = cpu_ns_self();
    uint64_t t0 = now_ns();
    atomic_store(&phase, PHASE_MEASURE);
    if (!failed) {
        if (cfg.ncalls == 0) {
            uint64_t end = t0 + (uint64_t)(cfg.duration_s * 1e9);
            /* -o: 1 ms steps, so the window closes soon after the last
             * body is sent */
            uint64_t step = cfg.once ? 1000000u : 50000000u;
            for (uint64_t n = now_ns(); n < end && !failed && !atomic_load(&exhausted);
                 n = now_ns()) {
                sleep_ns(end - n < step ? end - n : step);
                for (int t = 0; t < cfg.threads; t++)
                    failed |= ws[t].failed;
            }
        } else {
            for (;;) {
                uint64_t done = 0;
                for (int t = 0; t < cfg.threads; t++) {
                    done += atomic_load(&ws[t].measured);
                    failed |= ws[t].failed;
                }
                if (done >= cfg.ncalls || failed || atomic_load(&exhausted))
                    break;
                sleep_ns(200000);
            }
        }
    }
    atomic_store(&phase, PHASE_DRAIN);
    uint64_t t1 = now_ns();
    uint64_t self_cpu1 = cpu_ns_self();
    int64_t machine_cpu1 = cpu_ns_machine(&steal1);
    int64_t pid_cpu1[MAX_PIDS];
    for (int i = 0; i < cfg.npids; i++)
        pid_cpu1[i] = cpu_ns_pid(cfg.pids[i]);

    for (int t = 0; t < cfg.threads; t++)
        pthread_join(ws[t].thread, NULL);

    /* figures */
    uint64_t measured = 0, errors = 0, by_code[N_CODES] = {0}, other = 0, unexpected = 0;
    size_t nlat = 0;
    const char *first_error = NULL;
    for (int t = 0; t < cfg.threads; t++) {
        worker *w = &ws[t];
        measured += atomic_load(&w->measured);
        errors += w->errors;
        other += w->errors_other;
        unexpected += w->unexpected;
        for (int c = 0; c < N_CODES; c++)
            by_code[c] += w->errors_by_code[c];
        nlat += w->nlat;
        if (first_error == NULL && w->first_error[0])
            first_error = w->first_error;
        failed |= w->failed;
    }
    uint32_t *lat = NULL;
    if (!failed && exhausted_in_warmup) {
        fprintf(stderr,
                "fxb-bench-auth: the %zu bodies ran out during the warm-up (-o): "
                "give more bodies or a smaller -w\n",
                cfg.nbodies);
        rc = 1;
        goto shutdown;
    }
    if (failed) {
        /* no figures from a run that could not do what was asked */
        fprintf(stderr, "fxb-bench-auth: %s\n", first_error ? first_error : "failed");
        rc = 1;
        goto shutdown;
    }
    lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t k = 0;
    for (int t = 0; t < cfg.threads && lat; t++) {
        if (ws[t].nlat)
            memcpy(lat + k, ws[t].lat_us, ws[t].nlat * sizeof *lat);
        k += ws[t].nlat;
    }
    if (lat)
        qsort(lat, nlat, sizeof *lat, cmp_u32);
    else
        nlat = 0;
    double secs = (double)(t1 - t0) / 1e9;
    double rps = secs > 0 ? (double)measured / secs : 0;
    double client_cores = secs > 0 ? (double)(self_cpu1 - self_cpu0) / 1e9 / secs : 0;

    char token_desc[128];
    if (cfg.ntokens == 0)
        snprintf(token_desc, sizeof token_desc, "no token");
    else
        snprintf(token_desc, sizeof token_desc, "%zu distinct token%s in rotation", cfg.ntokens,
                 cfg.ntokens == 1 ? "" : "s");
    if (cfg.nbodies > 0) {
        size_t n = strlen(token_desc);
        snprintf(token_desc + n, sizeof token_desc - n, ", %zu bodies%s", cfg.nbodies,
                 cfg.once ? " (each once)" : " in rotation");
    }
    printf("%s: %s %s, %s, C=%d M=%d T=%d: %" PRIu64 " calls in %.2f s = %.0f req/s, "
           "p50 %.2f ms, p99 %.2f ms, max %.2f ms, errors %" PRIu64 "\n",
           cfg.label, cfg.target, method, token_desc, cfg.conns, cfg.per_conn, cfg.threads,
           measured, secs, rps, pct(lat, nlat, 0.50) / 1e3, pct(lat, nlat, 0.99) / 1e3,
           nlat ? lat[nlat - 1] / 1e3 : 0.0, errors);
    if (errors) {
        printf("%s: ERRORS:", cfg.label);
        for (int c = 1; c < N_CODES; c++)
            if (by_code[c])
                printf(" %s=%" PRIu64, code_names[c], by_code[c]);
        if (other)
            printf(" other=%" PRIu64, other);
        if (unexpected)
            printf(" unexpected_response=%" PRIu64, unexpected);
        printf("; first: %s\n", first_error ? first_error : "?");
    }
    printf("RESULT label=%s calls=%" PRIu64 " errors=%" PRIu64 " secs=%.3f rps=%.1f p50_us=%u "
           "p90_us=%u p99_us=%u p999_us=%u max_us=%u client_cores=%.3f",
           cfg.label, measured, errors, secs, rps, pct(lat, nlat, 0.50), pct(lat, nlat, 0.90),
           pct(lat, nlat, 0.99), pct(lat, nlat, 0.999), nlat ? lat[nlat - 1] : 0, client_cores);
    double known = client_cores;
    bool all_known = true;
    for (int i = 0; i < cfg.npids; i++) {
        if (pid_cpu0[i] < 0 || pid_cpu1[i] < 0) {
            all_known = false;
            continue;
        }
        double cpu = (double)(pid_cpu1[i] - pid_cpu0[i]) / 1e9;
        known += secs > 0 ? cpu / secs : 0;
        printf(" cpu%d_pid=%ld cpu%d_cores=%.3f cpu%d_us_per_call=%.2f", i, (long)cfg.pids[i], i,
               secs > 0 ? cpu / secs : 0, i, measured ? cpu * 1e6 / (double)measured : 0);
    }
    if (machine_cpu0 >= 0 && machine_cpu1 >= 0 && secs > 0) {
        double machine = (double)(machine_cpu1 - machine_cpu0) / 1e9 / secs;
        printf(" machine_cores=%.3f steal_cores=%.3f", machine,
               (double)(steal1 - steal0) / 1e9 / secs);
        /* everything else that ran during the window: the noise */
        if (all_known)
            printf(" other_cores=%.3f", machine > known ? machine - known : 0.0);
    }
    if (cfg.nbodies > 0) {
        uint64_t used = atomic_load(&next_call);
        printf(" bodies=%zu bodies_used=%" PRIu64 " exhausted=%d", cfg.nbodies,
               cfg.once && used > cfg.nbodies ? (uint64_t)cfg.nbodies : used,
               atomic_load(&exhausted));
    }
    if (cfg.expect)
        printf(" unexpected=%" PRIu64, unexpected);
    printf("\n");
    fflush(stdout);
    rc = errors ? 3 : 0;

shutdown:

    /* clean shutdown: every call has ended; channels, then each CQ drained */
    for (int t = 0; t < cfg.threads; t++) {
        worker *w = &ws[t];
        for (int i = 0; i < w->nchannels; i++)
            grpc_channel_destroy(w->channels[i]);
        grpc_completion_queue_shutdown(w->cq);
        grpc_event ev;
        do
            ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        while (ev.type != GRPC_QUEUE_SHUTDOWN);
        grpc_completion_queue_destroy(w->cq);
        free(w->channels);
        free(w->slots);
        free(w->lat_us);
    }
    free(ws);
    free(lat);
    for (size_t i = 0; i < cfg.ntokens; i++)
        grpc_slice_unref(cfg.tokens[i]);
    free(cfg.tokens);
    for (size_t i = 0; i < cfg.nbodies; i++)
        grpc_slice_unref(cfg.bodies[i]);
    free(cfg.bodies);
    grpc_slice_unref(cfg.method);
    grpc_slice_unref(cfg.body);
    grpc_shutdown();
    return rc;

bad:
    usage(stderr);
    return 2;
}
