/* The gRPC C core runtime. Each worker thread owns a completion queue and a
 * Redis connection; every call is requested on one worker's queue, so all of
 * a call's events and callbacks run on that worker, one at a time. Other
 * threads reach a call only through its worker's mailbox (fxb_ctx_post).
 * Every tag starts with a step function: the worker loop just calls it. */
#include "runtime.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "log.h"
#include "metrics.h"
#include "store/store.h"

#define REQUEST_ID_MAX   128
#define META_VALUE_MAX   8192
#define PATH_LOG_MAX     200
#define MAX_WORKER_TIMER 1000000

typedef struct rt_tag rt_tag;
typedef void (*rt_step)(rt_tag *tag, bool ok);
struct rt_tag {
    rt_step step;
};

typedef struct rt_method {
    const fxb_method *m;
    void *handle; /* from grpc_server_register_method */
    size_t index; /* metrics index */
} rt_method;

typedef struct fxb_worker fxb_worker;

/* A call requested in advance, waiting for a client. */
typedef struct rt_request {
    rt_tag tag;
    fxb_worker *w;
    const rt_method *method; /* NULL: unregistered (unknown method) */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* unregistered only */
} rt_request;

typedef struct out_msg {
    struct out_msg *next;
    grpc_byte_buffer *bb;
    size_t len;
} out_msg;

typedef struct mbox_item {
    struct mbox_item *next;
    fxb_ctx *ctx;
    void *event;
} mbox_item;

typedef struct rt_timer {
    int64_t due_us;
    uint64_t seq; /* FIFO among equal due times */
    fxb_ctx *ctx;
    void *event;
} rt_timer;

struct fxb_worker {
    fxb_server *srv;
    int index;
    pthread_t thread;
    bool thread_started;
    grpc_completion_queue *cq;
    fxb_store *store;
    pthread_mutex_t mu; /* guards the mailbox */
    mbox_item *mbox_head, *mbox_tail;
    atomic_bool mbox_nonempty;
    rt_timer *timers; /* binary min-heap, worker thread only */
    size_t n_timers, cap_timers;
    uint64_t timer_seq;
    uint64_t rng[2];
    /* Wake-up of a worker waiting on its queue when another thread posts
     * to its mailbox (fxb_ctx_post): the C core has no public alarm, but a
     * connectivity watch with a deadline of now on a lame channel completes
     * on the queue at once (within about a millisecond). At most one is
     * armed at a time; guarded by mu; closed before the queue shuts down. */
    rt_tag wake_tag;
    bool wake_armed;
    bool wake_closed;
};

struct fxb_server {
    fxb_config cfg;
    grpc_server *server;
    int port;
    const fxb_service *services[FXB_MAX_SERVICES];
    size_t n_services;
    rt_method methods[FXB_MAX_METHODS];
    size_t n_methods;
    fxb_worker *workers;
    int n_workers;
    fxb_authenticate_fn authenticate;
    void *auth_state;
    const fxb_delegation_ops *deleg_ops;
    void *deleg_state;
    atomic_bool stopping;
    atomic_bool forced; /* the grace period ended: in-flight calls must stop */
    /* requests armed plus calls not yet ended: worker queues may close only
     * when it is zero, or a late event could start a batch on a closed queue */
    atomic_long outstanding;
    /* A thread that only polls: network I/O goes on while every worker is
     * inside a handler (the C core polls from threads waiting on a queue). */
    grpc_completion_queue *poll_cq;
    pthread_t poll_thread;
    bool poll_started;
    /* the lame channel whose connectivity watches wake workers */
    grpc_channel *wake_channel;
    bool started;
    bool shut_down;
};

typedef enum ctx_flag {
    F_INITIAL_SENT = 1u << 0,
    F_STATUS_STARTED = 1u << 1,
    F_STATUS_DONE = 1u << 2,
    F_CLOSE_DONE = 1u << 3,
    F_CANCELLED = 1u << 4,
    F_FINISH = 1u << 5,      /* handler asked to finish */
    F_HALF_CLOSED = 1u << 6, /* client finished sending */
    F_RECV_PAUSED = 1u << 7, /* receive waits for the out queue to drain */
    F_WANT_WRITABLE = 1u << 8,
    F_ENDED = 1u << 9, /* on_end called, logged, grpc call released */
    F_IN_CALLBACK = 1u << 10,
    F_CLOSE_STARTED = 1u << 11,  /* RECV_CLOSE_ON_SERVER is outstanding or done */
    F_CLOSE_IN_FINAL = 1u << 12, /* it rides in the status batch (unary calls) */
    F_ACT_RECORDED = 1u << 13,   /* a delegated call's act is in the grant's log */
} ctx_flag;

struct fxb_ctx {
    atomic_int refs;
    atomic_bool ended; /* readable from other threads */
    fxb_worker *w;
    const rt_method *method; /* NULL for unknown methods */
    grpc_call *call;
    unsigned flags;
    int ops; /* batches outstanding */
    fxb_arena arena;
    fxb_arena scratch;
    grpc_metadata_array md;
    gpr_timespec deadline;
    uint64_t start_us;
    char request_id[REQUEST_ID_MAX + 1];
    char *authorization;
    char *user_agent;
    char *peer;
    char *unknown_path;
    fxb_err *err; /* the call's error, NULL while none (kept small: most calls succeed) */
    bool err_malloced;
    void *user;
    uint32_t n_received;
    fxb_caller *caller; /* NULL on public methods */
    /* a delegated caller whose token was valid, admitted or not: its act
     * goes to the grant's activity log */
    const fxb_caller *delegated;
    const char *act_item; /* the service item acted on, when known */

    out_msg *q_head, *q_tail;
    size_t q_len, q_bytes;
    grpc_byte_buffer *inflight; /* message of the outstanding send */

    rt_tag recv_tag, send_tag, close_tag;
    grpc_byte_buffer *recv_buf;
    int close_cancelled;

    grpc_metadata initial_md[1];
    grpc_metadata trailing_md[2];
    size_t n_trailing;
    bool client_rid; /* the client sent x-request-id: echo it at once */
    bool rid_in_initial;
    grpc_slice status_msg;
    bool has_status_msg;
};

static void ctx_step(fxb_ctx *ctx);
static void record_act(fxb_ctx *ctx, fxb_code code);
static void arm_request(fxb_worker *w, const rt_method *method, rt_request *reuse);

/* --- clocks ------------------------------------------------------------- */

uint64_t fxb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Development only (DiagService/SetClockOffset): shifts every wall-clock
 * reading of the process, so tests can cross grant ends and time limits. */
static _Atomic int64_t clock_offset_ms;

int64_t fxb_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
           atomic_load_explicit(&clock_offset_ms, memory_order_relaxed);
}

void fxb_clock_set_offset_ms(int64_t offset_ms)
{
    atomic_store(&clock_offset_ms, offset_ms);
}

int64_t fxb_clock_offset_ms(void)
{
    return atomic_load(&clock_offset_ms);
}

static gpr_timespec ms_from_now(int64_t ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* --- request ids -------------------------------------------------------- */

static uint64_t rng_next(fxb_worker *w)
{
    /* xorshift128+: ids need uniqueness, not secrecy */
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

static bool request_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

/* A UUID v4 in text form, written by hand: it runs on every call without
 * an x-request-id, and snprintf would be most of its cost. */
static void generate_request_id(fxb_worker *w, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = rng_next(w), b = rng_next(w);
    a = (a & ~0xF000ull) | 0x4000ull;       /* version 4 */
    b = (b & ~(3ull << 62)) | (2ull << 62); /* variant 10 */
    size_t o = 0;
    for (int i = 0; i < 32; i++) {
        uint64_t word = i < 16 ? a : b;
        int shift = 60 - 4 * (i % 16);
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[o++] = '-';
        out[o++] = hex[(word >> shift) & 0xF];
    }
    out[o] = '\0';
}

/* --- ctx lifetime ------------------------------------------------------- */

void fxb_ctx_ref(fxb_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

static void ctx_free(fxb_ctx *ctx)
{
    out_msg *m = ctx->q_head;
    while (m) {
        out_msg *n = m->next;
        grpc_byte_buffer_destroy(m->bb);
        free(m);
        m = n;
    }
    if (ctx->inflight)
        grpc_byte_buffer_destroy(ctx->inflight);
    if (ctx->recv_buf)
        grpc_byte_buffer_destroy(ctx->recv_buf);
    if (ctx->rid_in_initial)
        grpc_slice_unref(ctx->initial_md[0].value);
    for (size_t i = 0; i < ctx->n_trailing; i++)
        grpc_slice_unref(ctx->trailing_md[i].value);
    if (ctx->has_status_msg)
        grpc_slice_unref(ctx->status_msg);
    grpc_metadata_array_destroy(&ctx->md);
    free(ctx->authorization);
    free(ctx->user_agent);
    free(ctx->unknown_path);
    if (ctx->peer)
        gpr_free(ctx->peer);
    if (ctx->err_malloced)
        free(ctx->err);
    fxb_arena_free(&ctx->arena);
    fxb_arena_free(&ctx->scratch);
    free(ctx);
}

void fxb_ctx_unref(fxb_ctx *ctx)
{
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        ctx_free(ctx);
}

/* --- accessors for handlers --------------------------------------------- */

const fxb_caller *fxb_ctx_caller(fxb_ctx *ctx)
{
    static const fxb_caller nobody;
    return ctx->caller ? ctx->caller : &nobody;
}

fxb_arena *fxb_ctx_arena(fxb_ctx *ctx)
{
    return &ctx->arena;
}

fxb_store *fxb_ctx_store(fxb_ctx *ctx)
{
    return ctx->w->store;
}

const fxb_config *fxb_ctx_config(fxb_ctx *ctx)
{
    return &ctx->w->srv->cfg;
}

const fxb_method *fxb_ctx_method(fxb_ctx *ctx)
{
    return ctx->method ? ctx->method->m : NULL;
}

int64_t fxb_ctx_remaining_ms(fxb_ctx *ctx)
{
    if (ctx->deadline.tv_sec == INT64_MAX ||
        gpr_time_cmp(ctx->deadline, gpr_inf_future(ctx->deadline.clock_type)) == 0)
        return -1;
    gpr_timespec d = gpr_convert_clock_type(ctx->deadline, GPR_CLOCK_MONOTONIC);
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(d, now) <= 0)
        return 0;
    gpr_timespec left = gpr_time_sub(d, now);
    int64_t ms = left.tv_sec * 1000 + left.tv_nsec / 1000000;
    return ms > 0 ? ms : 1; /* still running: never report 0 */
}

bool fxb_ctx_shutting_down(fxb_ctx *ctx)
{
    return atomic_load(&ctx->w->srv->stopping);
}

bool fxb_ctx_cancelled(fxb_ctx *ctx)
{
    return (ctx->flags & F_CANCELLED) || fxb_ctx_remaining_ms(ctx) == 0 ||
           atomic_load(&ctx->w->srv->forced);
}

const char *fxb_ctx_request_id(fxb_ctx *ctx)
{
    return ctx->request_id;
}

const char *fxb_ctx_user_agent(fxb_ctx *ctx)
{
    return ctx->user_agent;
}

const char *fxb_ctx_authorization(fxb_ctx *ctx)
{
    return ctx->authorization;
}

const char *fxb_ctx_peer(fxb_ctx *ctx)
{
    /* fetched on demand: most calls never need it */
    if (ctx->peer == NULL && ctx->call)
        ctx->peer = grpc_call_get_peer(ctx->call);
    return ctx->peer ? ctx->peer : "";
}

void fxb_ctx_set_user(fxb_ctx *ctx, void *user)
{
    ctx->user = user;
}

void *fxb_ctx_user(fxb_ctx *ctx)
{
    return ctx->user;
}

/* The call's error record, made on first use. */
static fxb_err *ctx_err(fxb_ctx *ctx)
{
    if (ctx->err == NULL) {
        ctx->err = fxb_arena_alloc(&ctx->arena, sizeof *ctx->err);
        if (ctx->err == NULL) {
            /* the arena is exhausted: keep the error anyway */
            ctx->err = malloc(sizeof *ctx->err);
            ctx->err_malloced = ctx->err != NULL;
        }
        if (ctx->err == NULL) {
            static _Thread_local fxb_err fallback;
            ctx->err = &fallback;
        }
    }
    return ctx->err;
}

fxb_code fxb_ctx_fail_err(fxb_ctx *ctx, const fxb_err *err)
{
    fxb_err_copy(ctx_err(ctx), err);
    return err->code;
}

fxb_code fxb_ctx_fail(fxb_ctx *ctx, fxb_code code, const char *reason, const char *message_zh,
                      const char *message_fmt, ...)
{
    char buf[FXB_ERR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, message_fmt);
    vsnprintf(buf, sizeof buf, message_fmt, ap);
    va_end(ap);
    fxb_err_set(ctx_err(ctx), code, reason, message_zh, "%s", buf);
    return code;
}

/* --- outbound queue ----------------------------------------------------- */

/* Packs msg into a byte buffer; NULL on allocation failure. */
static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    *len = n;
    return bb;
}

/* Unpacks a received message into arena a; NULL when it is not a valid
 * message of desc. A message in one uncompressed slice (the usual case) is
 * read in place, without the copy readall makes. */
static ProtobufCMessage *unpack_bb(const ProtobufCMessageDescriptor *desc, fxb_arena *a,
                                   grpc_byte_buffer *bb)
{
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count <= 1) {
        const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
        if (sb->count == 0)
            return protobuf_c_message_unpack(desc, fxb_arena_allocator(a), 0, (const uint8_t *)"");
        return protobuf_c_message_unpack(desc, fxb_arena_allocator(a),
                                         GRPC_SLICE_LENGTH(sb->slices[0]),
                                         GRPC_SLICE_START_PTR(sb->slices[0]));
    }
    ProtobufCMessage *msg = NULL;
    grpc_byte_buffer_reader rd;
    if (grpc_byte_buffer_reader_init(&rd, bb)) {
        grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        msg = protobuf_c_message_unpack(desc, fxb_arena_allocator(a), GRPC_SLICE_LENGTH(s),
                                        GRPC_SLICE_START_PTR(s));
        grpc_slice_unref(s);
    }
    return msg;
}

static bool queue_full(const fxb_ctx *ctx)
{
    return ctx->q_len >= FXB_STREAM_MAX_QUEUED || ctx->q_bytes >= FXB_STREAM_MAX_QUEUED_BYTES;
}

static fxb_code enqueue(fxb_ctx *ctx, const ProtobufCMessage *msg)
{
    size_t len;
    out_msg *m = malloc(sizeof *m);
    if (m == NULL)
        return FXB_RESOURCE_EXHAUSTED;
    m->bb = pack_message(msg, &len);
    m->len = len;
    m->next = NULL;
    if (ctx->q_tail)
        ctx->q_tail->next = m;
    else
        ctx->q_head = m;
    ctx->q_tail = m;
    ctx->q_len++;
    ctx->q_bytes += len;
    return FXB_OK;
}

fxb_code fxb_ctx_send(fxb_ctx *ctx, const ProtobufCMessage *msg)
{
    if (ctx->flags & (F_CANCELLED | F_ENDED | F_FINISH))
        return FXB_CANCELLED;
    if (queue_full(ctx)) {
        ctx->flags |= F_WANT_WRITABLE;
        return FXB_RESOURCE_EXHAUSTED;
    }
    fxb_code rc = enqueue(ctx, msg);
    if (rc == FXB_OK && !(ctx->flags & F_IN_CALLBACK))
        ctx_step(ctx);
    return rc;
}

size_t fxb_ctx_send_queued(fxb_ctx *ctx)
{
    return ctx->q_len;
}

/* --- ending a call ------------------------------------------------------ */

static void ctx_end(fxb_ctx *ctx)
{
    if (ctx->flags & F_ENDED)
        return;
    ctx->flags |= F_ENDED;
    atomic_store(&ctx->ended, true);
    bool cancelled = (ctx->flags & F_CANCELLED) != 0;
    if (ctx->method && ctx->method->m->stream && ctx->method->m->stream->on_end)
        ctx->method->m->stream->on_end(ctx, cancelled);

    int code = cancelled ? FXB_CANCELLED : (ctx->err ? (int)ctx->err->code : FXB_OK);
    if (cancelled && ctx->err && ctx->err->code == FXB_DEADLINE_EXCEEDED)
        code = FXB_DEADLINE_EXCEEDED;
    else if (cancelled && fxb_ctx_remaining_ms(ctx) == 0)
        code = FXB_DEADLINE_EXCEEDED;
    record_act(ctx, (fxb_code)code);
    uint64_t dur = fxb_now_us() - ctx->start_us;
    const char *path = ctx->method ? ctx->method->m->path : "unknown";
    if (fxb_log_get_level() <= FXB_LOG_INFO || code != FXB_OK)
        fxb_log_rpc(ctx->request_id, ctx->method ? path : ctx->unknown_path, code,
                    ctx->err && code == (int)ctx->err->code ? ctx->err->reason : NULL, dur,
                    fxb_ctx_peer(ctx));
    fxb_metrics_observe(ctx->method ? ctx->method->index : ctx->w->srv->n_methods, code, dur);
    fxb_metrics_inflight_add(-1);
    atomic_fetch_sub(&ctx->w->srv->outstanding, 1);
    grpc_call_unref(ctx->call);
    ctx->call = NULL;
    fxb_ctx_unref(ctx);
}

static void maybe_end(fxb_ctx *ctx)
{
    if (ctx->ops > 0 || !(ctx->flags & F_CLOSE_DONE))
        return;
    if ((ctx->flags & F_STATUS_DONE) || (ctx->flags & F_CANCELLED))
        ctx_end(ctx);
}

/* --- batches ------------------------------------------------------------ */

static void start_batch(fxb_ctx *ctx, const grpc_op *ops, size_t n, rt_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(ctx->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* only a bug in this file can get here: treat the call as lost */
        fxb_log(FXB_LOG_ERROR, "grpc_call_start_batch failed: %d", (int)e);
        ctx->flags |= F_CANCELLED;
        return;
    }
    ctx->ops++;
}

/* A delegated call's act, once, before its status goes out: the principal
 * reading the activity log right after sees it. */
static void record_act(fxb_ctx *ctx, fxb_code code)
{
    if (ctx->delegated == NULL || (ctx->flags & F_ACT_RECORDED))
        return;
    ctx->flags |= F_ACT_RECORDED;
    fxb_server *srv = ctx->w->srv;
    if (srv->deleg_ops == NULL || srv->deleg_ops->record == NULL)
        return;
    const char *reason = ctx->err && code == ctx->err->code ? ctx->err->reason : NULL;
    srv->deleg_ops->record(srv->deleg_state, ctx, ctx->delegated, ctx->act_item, code, reason);
}

static void set_status_payload(fxb_ctx *ctx, grpc_op *op)
{
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->flags = 0;
    op->reserved = NULL;
    fxb_code code = ctx->err ? ctx->err->code : FXB_OK;
    op->data.send_status_from_server.status = (grpc_status_code)code;
    op->data.send_status_from_server.trailing_metadata_count = 0;
    op->data.send_status_from_server.status_details = NULL;
    if (code == FXB_OK)
        return;
    ctx->status_msg = grpc_slice_from_copied_string(ctx->err->message);
    ctx->has_status_msg = true;
    op->data.send_status_from_server.status_details = &ctx->status_msg;
    size_t len = 0;
    unsigned char *details = fxb_err_pack_details(ctx->err, &len);
    if (details) {
        grpc_metadata *m = &ctx->trailing_md[ctx->n_trailing++];
        m->key = grpc_slice_from_static_string("grpc-status-details-bin");
        m->value = grpc_slice_from_copied_buffer((const char *)details, len);
        free(details);
    }
    if (!ctx->rid_in_initial) {
        /* a failed call always tells the client the id it can quote */
        grpc_metadata *m = &ctx->trailing_md[ctx->n_trailing++];
        m->key = grpc_slice_from_static_string("x-request-id");
        m->value = grpc_slice_from_copied_string(ctx->request_id);
    }
    op->data.send_status_from_server.trailing_metadata_count = ctx->n_trailing;
    op->data.send_status_from_server.trailing_metadata = ctx->trailing_md;
}

static void add_initial_md(fxb_ctx *ctx, grpc_op *op)
{
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->flags = 0;
    op->reserved = NULL;
    /* A request id the client sent is echoed at once. One the server made
     * up goes back only with a failure (trailing metadata), where the user
     * needs it to quote: on every successful call it would cost about 0.8 us
     * of CPU and 50 bytes for nothing (it is in the log line either way). */
    op->data.send_initial_metadata.count = 0;
    if (ctx->client_rid) {
        ctx->initial_md[0].key = grpc_slice_from_static_string("x-request-id");
        ctx->initial_md[0].value = grpc_slice_from_copied_string(ctx->request_id);
        op->data.send_initial_metadata.count = 1;
        ctx->rid_in_initial = true;
    }
    op->data.send_initial_metadata.metadata = ctx->initial_md;
    op->data.send_initial_metadata.maybe_compression_level.is_set = 0;
    ctx->flags |= F_INITIAL_SENT;
}

/* Starts the next send if none is outstanding: the next queued message (with
 * the status too when it is the last one and the handler finished), or the
 * status alone. One send batch at a time keeps order and bounds memory. */
static void pump(fxb_ctx *ctx)
{
    if (ctx->inflight || (ctx->flags & (F_STATUS_STARTED | F_CANCELLED)))
        return;
    grpc_op ops[4];
    size_t n = 0;
    bool finish = (ctx->flags & F_FINISH) != 0;
    if (ctx->q_head == NULL && !finish)
        return;
    if (!(ctx->flags & F_INITIAL_SENT))
        add_initial_md(ctx, &ops[n++]);
    if (ctx->q_head) {
        out_msg *m = ctx->q_head;
        ctx->q_head = m->next;
        if (ctx->q_head == NULL)
            ctx->q_tail = NULL;
        ctx->q_len--;
        ctx->q_bytes -= m->len;
        ctx->inflight = m->bb;
        free(m);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].flags = 0;
        ops[n].reserved = NULL;
        ops[n].data.send_message.send_message = ctx->inflight;
        n++;
    }
    if (finish && ctx->q_head == NULL) {
        record_act(ctx, ctx->err ? ctx->err->code : FXB_OK);
        set_status_payload(ctx, &ops[n++]);
        ctx->flags |= F_STATUS_STARTED;
        if (!(ctx->flags & F_CLOSE_STARTED)) {
            /* one batch for a unary reply, as the core intends */
            memset(&ops[n], 0, sizeof ops[n]);
            ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[n].data.recv_close_on_server.cancelled = &ctx->close_cancelled;
            n++;
            ctx->flags |= F_CLOSE_STARTED | F_CLOSE_IN_FINAL;
        }
    }
    start_batch(ctx, ops, n, &ctx->send_tag);
}

static void on_send_done(rt_tag *tag, bool ok)
{
    fxb_ctx *ctx = (fxb_ctx *)((char *)tag - offsetof(fxb_ctx, send_tag));
    ctx->ops--;
    if (ctx->inflight) {
        grpc_byte_buffer_destroy(ctx->inflight);
        ctx->inflight = NULL;
    }
    if (!ok)
        ctx->flags |= F_CANCELLED;
    else if (ctx->flags & F_STATUS_STARTED)
        ctx->flags |= F_STATUS_DONE;
    if ((ctx->flags & F_CLOSE_IN_FINAL) && (ctx->flags & F_STATUS_STARTED)) {
        ctx->flags |= F_CLOSE_DONE;
        /* the client went away before our reply reached it */
        if (ctx->close_cancelled)
            ctx->flags |= F_CANCELLED;
    }
    ctx_step(ctx);
}

static void on_close_done(rt_tag *tag, bool ok)
{
    fxb_ctx *ctx = (fxb_ctx *)((char *)tag - offsetof(fxb_ctx, close_tag));
    ctx->ops--;
    ctx->flags |= F_CLOSE_DONE;
    /* cancelled: client cancel, deadline or broken connection. A call whose
     * status we already sent may also report it; that is not a cancel. */
    if (ctx->close_cancelled && !(ctx->flags & F_STATUS_DONE))
        ctx->flags |= F_CANCELLED;
    ctx_step(ctx);
}

static fxb_next run_callback_next(fxb_ctx *ctx, fxb_next next)
{
    if (next == FXB_NEXT_FINISH)
        ctx->flags |= F_FINISH;
    return next;
}

/* Queues a unary-style response and finishes the call. */
static void finish_with_response(fxb_ctx *ctx, const ProtobufCMessage *resp)
{
    if (resp && ctx->err == NULL && enqueue(ctx, resp) != FXB_OK)
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                     "server out of memory");
    ctx->flags |= F_FINISH;
}

static void arm_recv(fxb_ctx *ctx);

static void on_recv_done(rt_tag *tag, bool ok)
{
    fxb_ctx *ctx = (fxb_ctx *)((char *)tag - offsetof(fxb_ctx, recv_tag));
    ctx->ops--;
    const fxb_method *m = ctx->method->m;
    if (!ok || (ctx->flags & (F_CANCELLED | F_FINISH))) {
        if (ctx->recv_buf) {
            grpc_byte_buffer_destroy(ctx->recv_buf);
            ctx->recv_buf = NULL;
        }
        ctx_step(ctx);
        return;
    }
    ctx->flags |= F_IN_CALLBACK;
    if (ctx->recv_buf == NULL) {
        ctx->flags |= F_HALF_CLOSED;
        if (m->kind == FXB_RPC_CLIENT_STREAMING) {
            ProtobufCMessage *resp = fxb_arena_alloc(&ctx->arena, m->response->sizeof_message);
            if (resp == NULL) {
                fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                             "call memory limit reached");
                ctx->flags |= F_FINISH;
            } else {
                protobuf_c_message_init(m->response, resp);
                fxb_next next = m->stream->on_half_close(ctx, resp);
                if (next == FXB_NEXT_FINISH)
                    finish_with_response(ctx, ctx->err ? NULL : resp);
            }
        } else if (m->stream->on_half_close) {
            run_callback_next(ctx, m->stream->on_half_close(ctx, NULL));
        } else {
            ctx->flags |= F_FINISH;
        }
        ctx->flags &= ~F_IN_CALLBACK;
        ctx_step(ctx);
        return;
    }

    grpc_byte_buffer *bb = ctx->recv_buf;
    ctx->recv_buf = NULL;
    size_t limit =
        m->limits.max_request_bytes ? m->limits.max_request_bytes : ctx->w->srv->cfg.max_recv_bytes;
    size_t len = grpc_byte_buffer_length(bb);
    ctx->n_received++;
    if (len > limit) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE", "提交的内容过大",
                     "message of %zu bytes exceeds the limit of %zu bytes", len, limit);
        ctx->flags |= F_FINISH;
    } else if (m->limits.max_messages && ctx->n_received > m->limits.max_messages) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "TOO_MANY_MESSAGES", "提交的内容过多",
                     "more than %u messages on one stream", (unsigned)m->limits.max_messages);
        ctx->flags |= F_FINISH;
    } else {
        ProtobufCMessage *msg = unpack_bb(m->request, &ctx->scratch, bb);
        if (msg == NULL) {
            fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MALFORMED_REQUEST", "请求格式有误",
                         "message is not a valid %s", m->request->name);
            ctx->flags |= F_FINISH;
        } else {
            run_callback_next(ctx, m->stream->on_message(ctx, msg));
        }
        fxb_arena_reset(&ctx->scratch);
    }
    grpc_byte_buffer_destroy(bb);
    ctx->flags &= ~F_IN_CALLBACK;
    if (!(ctx->flags & F_FINISH)) {
        if (queue_full(ctx))
            ctx->flags |= F_RECV_PAUSED; /* back-pressure: read again once drained */
        else
            arm_recv(ctx);
    }
    ctx_step(ctx);
}

static void arm_recv(fxb_ctx *ctx)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &ctx->recv_buf;
    ctx->flags &= ~F_RECV_PAUSED;
    start_batch(ctx, &op, 1, &ctx->recv_tag);
}

/* The one place that moves a call forward after any event. */
static void ctx_step(fxb_ctx *ctx)
{
    if (ctx->flags & F_ENDED)
        return;
    if (!(ctx->flags & F_CANCELLED)) {
        const fxb_method *m = ctx->method ? ctx->method->m : NULL;
        if (m && m->stream && (ctx->flags & F_WANT_WRITABLE) && !queue_full(ctx) &&
            !(ctx->flags & F_FINISH)) {
            ctx->flags &= ~F_WANT_WRITABLE;
            if (m->stream->on_writable) {
                ctx->flags |= F_IN_CALLBACK;
                run_callback_next(ctx, m->stream->on_writable(ctx));
                ctx->flags &= ~F_IN_CALLBACK;
            }
        }
        if ((ctx->flags & F_RECV_PAUSED) && !queue_full(ctx) && !(ctx->flags & F_FINISH))
            arm_recv(ctx);
        pump(ctx);
    }
    maybe_end(ctx);
}

/* --- starting a call ---------------------------------------------------- */

static char *slice_dup_max(grpc_slice s, size_t max)
{
    size_t len = GRPC_SLICE_LENGTH(s);
    if (len > max)
        return NULL;
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, GRPC_SLICE_START_PTR(s), len);
        p[len] = '\0';
    }
    return p;
}

static char *slice_dup_capped(grpc_slice s)
{
    return slice_dup_max(s, META_VALUE_MAX);
}

static void read_metadata(fxb_ctx *ctx)
{
    bool have_id = false, have_auth = false;
    for (size_t i = 0; i < ctx->md.count; i++) {
        const grpc_metadata *md = &ctx->md.metadata[i];
        if (grpc_slice_str_cmp(md->key, "authorization") == 0 && !have_auth) {
            /* only the first header counts; one too long to be ours is
             * present but unusable (so: malformed, not missing) */
            have_auth = true;
            ctx->authorization = slice_dup_max(md->value, FXB_AUTHORIZATION_MAX);
            if (ctx->authorization == NULL)
                ctx->authorization = strdup("");
        } else if (grpc_slice_str_cmp(md->key, "user-agent") == 0 && ctx->user_agent == NULL) {
            ctx->user_agent = slice_dup_capped(md->value);
        } else if (grpc_slice_str_cmp(md->key, "x-request-id") == 0 && !have_id) {
            size_t len = GRPC_SLICE_LENGTH(md->value);
            const char *p = (const char *)GRPC_SLICE_START_PTR(md->value);
            if (request_id_ok(p, len)) {
                memcpy(ctx->request_id, p, len);
                ctx->request_id[len] = '\0';
                have_id = true;
            }
        }
    }
    ctx->client_rid = have_id;
    if (!have_id)
        generate_request_id(ctx->w, ctx->request_id);
}

static fxb_ctx *ctx_new(rt_request *req)
{
    fxb_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return NULL;
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->ended, false);
    ctx->w = req->w;
    ctx->method = req->method;
    ctx->call = req->call;
    ctx->md = req->md; /* takes the array over */
    ctx->deadline = req->deadline;
    ctx->start_us = fxb_now_us();
    fxb_arena_init(&ctx->arena, 0);
    fxb_arena_init(&ctx->scratch, 0);
    ctx->recv_tag.step = on_recv_done;
    ctx->send_tag.step = on_send_done;
    ctx->close_tag.step = on_close_done;
    return ctx;
}

static void start_close_watch(fxb_ctx *ctx)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &ctx->close_cancelled;
    ctx->flags |= F_CLOSE_STARTED;
    start_batch(ctx, &op, 1, &ctx->close_tag);
}

/* Unpacks the first message delivered with the call. NULL with the call's
 * error set on failure. */
static ProtobufCMessage *unpack_initial(fxb_ctx *ctx, grpc_byte_buffer *payload)
{
    const fxb_method *m = ctx->method->m;
    if (payload == NULL) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MISSING_REQUEST", "请求格式有误",
                     "the call carried no request message");
        return NULL;
    }
    size_t limit =
        m->limits.max_request_bytes ? m->limits.max_request_bytes : ctx->w->srv->cfg.max_recv_bytes;
    size_t len = grpc_byte_buffer_length(payload);
    if (len > limit) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE", "提交的内容过大",
                     "message of %zu bytes exceeds the limit of %zu bytes", len, limit);
        return NULL;
    }
    ProtobufCMessage *msg = unpack_bb(m->request, &ctx->arena, payload);
    if (msg == NULL)
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MALFORMED_REQUEST", "请求格式有误",
                     "request is not a valid %s", m->request->name);
    return msg;
}

static void run_unary(fxb_ctx *ctx, const ProtobufCMessage *req)
{
    const fxb_method *m = ctx->method->m;
    ProtobufCMessage *resp = fxb_arena_alloc(&ctx->arena, m->response->sizeof_message);
    if (resp == NULL) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                     "call memory limit reached");
        ctx->flags |= F_FINISH;
        return;
    }
    protobuf_c_message_init(m->response, resp);
    fxb_code code = m->unary(ctx, req, resp);
    if (code != FXB_OK && (ctx->err == NULL || ctx->err->code != code))
        fxb_ctx_fail(ctx, code, fxb_code_name(code), "系统错误，请稍后重试",
                     "the handler failed with %s", fxb_code_name(code));
    if (code == FXB_OK && ctx->err) {
        /* an error recorded but not returned is not the outcome */
        if (ctx->err_malloced)
            free(ctx->err);
        ctx->err = NULL;
        ctx->err_malloced = false;
    }
    finish_with_response(ctx, code == FXB_OK ? resp : NULL);
}

/* Token and rule check (level, role, step-up) before anything of the
 * request is parsed. False with the call's error set when refused. */
static bool authorize(fxb_ctx *ctx)
{
    const fxb_method *m = ctx->method->m;
    if (m->access.kind == FXB_ACCESS_PUBLIC)
        return true;
    fxb_server *srv = ctx->w->srv;
    fxb_err err;
    fxb_err_clear(&err);
    if (srv->authenticate == NULL) {
        /* fail closed: a protected method without an authenticator */
        fxb_ctx_fail(ctx, FXB_UNAUTHENTICATED, "AUTH_UNAVAILABLE", "请先登录",
                     "authentication is not configured on this server");
        return false;
    }
    fxb_caller *caller = fxb_arena_calloc(&ctx->arena, 1, sizeof *caller);
    if (caller == NULL) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                     "out of memory");
        return false;
    }
    fxb_code rc = srv->authenticate(srv->auth_state, ctx, m, caller, &err);
    if (caller->delegated && caller->grant_id[0] != '\0')
        ctx->delegated = caller;
    if (rc != FXB_OK) {
        if (err.code == FXB_OK)
            fxb_err_set(&err, FXB_UNAUTHENTICATED, "UNAUTHENTICATED", "请先登录",
                        "authentication failed");
        fxb_ctx_fail_err(ctx, &err);
        return false;
    }
    ctx->caller = caller;
    return true;
}

static const char *string_field(const fxb_method *m, const char *name, const ProtobufCMessage *req)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->request, name);
    return f ? *(char *const *)((const char *)req + f->offset) : NULL;
}

fxb_code fxb_ctx_require_item(fxb_ctx *ctx, const char *item_code)
{
    const fxb_caller *c = ctx->caller;
    if (c == NULL || !c->delegated)
        return FXB_OK;
    if (item_code != NULL && ctx->act_item == NULL)
        ctx->act_item = fxb_arena_strdup(&ctx->arena, item_code);
    fxb_server *srv = ctx->w->srv;
    fxb_err err;
    fxb_err_clear(&err);
    if (srv->deleg_ops == NULL || srv->deleg_ops->check_item == NULL)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, "OUT_OF_SCOPE", "超出代办授权范围",
                            "item scopes cannot be checked on this server");
    if (srv->deleg_ops->check_item(srv->deleg_state, ctx, c, item_code ? item_code : "", &err) !=
        FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

/* Department scope: an officer acts only on their own department's matters;
 * an admin on any. The department is the request field the method names.
 * Item scope: a delegated caller acts only on items its grant admits. */
static bool authorize_request(fxb_ctx *ctx, const ProtobufCMessage *req)
{
    const fxb_method *m = ctx->method->m;
    if (m->access.kind == FXB_ACCESS_PUBLIC || req == NULL)
        return true;
    if (m->access.item_field && ctx->caller && ctx->caller->delegated &&
        fxb_ctx_require_item(ctx, string_field(m, m->access.item_field, req)) != FXB_OK)
        return false;
    if (m->access.dept_field == NULL)
        return true;
    const fxb_caller *caller = fxb_ctx_caller(ctx);
    if (caller->roles & FXB_ROLE_ADMIN)
        return true;
    const char *dept = string_field(m, m->access.dept_field, req);
    if (!(caller->roles & FXB_ROLE_OFFICER) || dept == NULL || caller->dept[0] == '\0' ||
        strcmp(dept, caller->dept) != 0) {
        fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, "DEPARTMENT_MISMATCH", "无权办理其他部门的事项",
                     "the caller may act only for their own department");
        return false;
    }
    return true;
}

static void start_call(fxb_ctx *ctx, grpc_byte_buffer *payload)
{
    fxb_metrics_inflight_add(1);
    read_metadata(ctx);
    /* streams learn of a client cancel from this; unary calls fold it into
     * the reply batch (their handler runs to completion anyway) */
    if (ctx->method && ctx->method->m->kind != FXB_RPC_UNARY)
        start_close_watch(ctx);
    ctx->flags |= F_IN_CALLBACK;

    if (ctx->method == NULL) {
        fxb_ctx_fail(ctx, FXB_UNIMPLEMENTED, "UNKNOWN_METHOD", "不支持的服务", "unknown method %s",
                     ctx->unknown_path);
        ctx->flags |= F_FINISH;
    } else if (fxb_ctx_remaining_ms(ctx) == 0) {
        fxb_ctx_fail(ctx, FXB_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "请求已超时",
                     "the call's deadline passed before it could run");
        ctx->flags |= F_FINISH;
    } else if (!authorize(ctx)) {
        ctx->flags |= F_FINISH;
    } else {
        const fxb_method *m = ctx->method->m;
        switch (m->kind) {
        case FXB_RPC_UNARY: {
            ProtobufCMessage *msg = unpack_initial(ctx, payload);
            if (msg && authorize_request(ctx, msg))
                run_unary(ctx, msg);
            else
                ctx->flags |= F_FINISH;
            break;
        }
        case FXB_RPC_SERVER_STREAMING: {
            ProtobufCMessage *msg = unpack_initial(ctx, payload);
            if (msg && authorize_request(ctx, msg))
                run_callback_next(ctx, m->stream->on_start(ctx, msg));
            else
                ctx->flags |= F_FINISH;
            break;
        }
        case FXB_RPC_CLIENT_STREAMING:
        case FXB_RPC_BIDI:
            if (m->stream->on_start)
                run_callback_next(ctx, m->stream->on_start(ctx, NULL));
            if (!(ctx->flags & F_FINISH))
                arm_recv(ctx);
            break;
        }
    }
    ctx->flags &= ~F_IN_CALLBACK;
    ctx_step(ctx);
}

static void on_request(rt_tag *tag, bool ok)
{
    rt_request *req = (rt_request *)tag;
    fxb_worker *w = req->w;
    fxb_server *srv = w->srv;
    if (!ok) {
        /* the server is shutting down: pending requests fail, that is normal */
        grpc_metadata_array_destroy(&req->md);
        if (req->method == NULL)
            grpc_call_details_destroy(&req->details);
        free(req);
        atomic_fetch_sub(&srv->outstanding, 1);
        return;
    }
    fxb_ctx *ctx = ctx_new(req);
    if (ctx == NULL) {
        grpc_call_cancel_with_status(req->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory",
                                     NULL);
        grpc_call_unref(req->call);
        grpc_metadata_array_destroy(&req->md);
        if (req->payload)
            grpc_byte_buffer_destroy(req->payload);
        if (req->method == NULL)
            grpc_call_details_destroy(&req->details);
        atomic_fetch_sub(&srv->outstanding, 1);
        if (atomic_load(&srv->stopping))
            free(req);
        else
            arm_request(w, req->method, req);
        return;
    }
    if (req->method == NULL) {
        char *path = slice_dup_capped(req->details.method);
        if (path && strlen(path) > PATH_LOG_MAX)
            path[PATH_LOG_MAX] = '\0';
        for (char *p = path; p && *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || *p == '"')
                *p = '?';
        ctx->unknown_path = path ? path : strdup("?");
        ctx->deadline = req->details.deadline;
        grpc_call_details_destroy(&req->details);
    }
    grpc_byte_buffer *payload = req->payload;
    /* the struct is free again (ctx took the metadata): arm the next call
     * with it before running this one */
    if (atomic_load(&srv->stopping))
        free(req);
    else
        arm_request(w, req->method, req);
    start_call(ctx, payload);
    if (payload)
        grpc_byte_buffer_destroy(payload);
}

static void arm_request(fxb_worker *w, const rt_method *method, rt_request *reuse)
{
    rt_request *req = reuse;
    if (req)
        memset(req, 0, sizeof *req);
    else
        req = calloc(1, sizeof *req);
    if (req == NULL) {
        fxb_log(FXB_LOG_ERROR, "out of memory arming a call request");
        return;
    }
    req->tag.step = on_request;
    req->w = w;
    req->method = method;
    grpc_metadata_array_init(&req->md);
    grpc_call_error e;
    if (method == NULL) {
        grpc_call_details_init(&req->details);
        e = grpc_server_request_call(w->srv->server, &req->call, &req->details, &req->md, w->cq,
                                     w->cq, req);
    } else {
        bool with_payload =
            method->m->kind == FXB_RPC_UNARY || method->m->kind == FXB_RPC_SERVER_STREAMING;
        e = grpc_server_request_registered_call(
            w->srv->server, method->handle, &req->call, &req->deadline, &req->md,
            with_payload ? &req->payload : NULL, w->cq, w->cq, req);
    }
    if (e == GRPC_CALL_OK) {
        atomic_fetch_add(&w->srv->outstanding, 1);
    } else {
        fxb_log(FXB_LOG_ERROR, "requesting a call failed: %d", (int)e);
        grpc_metadata_array_destroy(&req->md);
        if (method == NULL)
            grpc_call_details_destroy(&req->details);
        free(req);
    }
}

/* --- mailbox and timers ------------------------------------------------- */

bool fxb_ctx_post(fxb_ctx *ctx, void *event)
{
    if (atomic_load(&ctx->ended))
        return false;
    mbox_item *it = malloc(sizeof *it);
    if (it == NULL)
        return false;
    fxb_ctx_ref(ctx);
    it->ctx = ctx;
    it->event = event;
    it->next = NULL;
    fxb_worker *w = ctx->w;
    pthread_mutex_lock(&w->mu);
    if (w->mbox_tail)
        w->mbox_tail->next = it;
    else
        w->mbox_head = it;
    w->mbox_tail = it;
    atomic_store(&w->mbox_nonempty, true);
    /* the worker may be waiting on its queue for up to a tick: wake it */
    if (!w->wake_armed && !w->wake_closed && w->srv->wake_channel != NULL &&
        !pthread_equal(pthread_self(), w->thread)) {
        w->wake_armed = true;
        grpc_channel_watch_connectivity_state(w->srv->wake_channel, GRPC_CHANNEL_TRANSIENT_FAILURE,
                                              gpr_now(GPR_CLOCK_MONOTONIC), w->cq, &w->wake_tag);
    }
    pthread_mutex_unlock(&w->mu);
    return true;
}

/* The wake-up watch completed: the next one may be armed. The worker loop
 * drains the mailbox after every event, so whatever was posted before this
 * point is delivered now and whatever comes after arms a new wake-up. */
static void wake_step(rt_tag *tag, bool ok)
{
    (void)ok;
    fxb_worker *w = (fxb_worker *)((char *)tag - offsetof(fxb_worker, wake_tag));
    pthread_mutex_lock(&w->mu);
    w->wake_armed = false;
    pthread_mutex_unlock(&w->mu);
}

static void deliver(fxb_ctx *ctx, void *event)
{
    const fxb_stream_ops *ops = ctx->method ? ctx->method->m->stream : NULL;
    if ((ctx->flags & (F_ENDED | F_CANCELLED | F_FINISH)) || ops == NULL || ops->on_event == NULL) {
        if (ops && ops->free_event)
            ops->free_event(event);
        return;
    }
    ctx->flags |= F_IN_CALLBACK;
    run_callback_next(ctx, ops->on_event(ctx, event));
    ctx->flags &= ~F_IN_CALLBACK;
    ctx_step(ctx);
}

static void drain_mailbox(fxb_worker *w)
{
    if (!atomic_load(&w->mbox_nonempty))
        return;
    pthread_mutex_lock(&w->mu);
    mbox_item *it = w->mbox_head;
    w->mbox_head = w->mbox_tail = NULL;
    atomic_store(&w->mbox_nonempty, false);
    pthread_mutex_unlock(&w->mu);
    while (it) {
        mbox_item *next = it->next;
        deliver(it->ctx, it->event);
        fxb_ctx_unref(it->ctx);
        free(it);
        it = next;
    }
}

static bool timer_less(const rt_timer *a, const rt_timer *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

bool fxb_ctx_after(fxb_ctx *ctx, int64_t ms, void *event)
{
    fxb_worker *w = ctx->w;
    if (ctx->flags & F_ENDED)
        return false;
    if (w->n_timers == w->cap_timers) {
        size_t cap = w->cap_timers ? w->cap_timers * 2 : 64;
        if (cap > MAX_WORKER_TIMER)
            return false;
        rt_timer *t = realloc(w->timers, cap * sizeof *t);
        if (t == NULL)
            return false;
        w->timers = t;
        w->cap_timers = cap;
    }
    if (ms < 0)
        ms = 0;
    rt_timer t = {.due_us = (int64_t)fxb_now_us() + ms * 1000,
                  .seq = w->timer_seq++,
                  .ctx = ctx,
                  .event = event};
    fxb_ctx_ref(ctx);
    size_t i = w->n_timers++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(&t, &w->timers[parent]))
            break;
        w->timers[i] = w->timers[parent];
        i = parent;
    }
    w->timers[i] = t;
    return true;
}

static rt_timer timer_pop(fxb_worker *w)
{
    rt_timer top = w->timers[0];
    rt_timer last = w->timers[--w->n_timers];
    size_t i = 0, n = w->n_timers;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const rt_timer *best = &last;
        if (l < n && timer_less(&w->timers[l], best)) {
            m = l;
            best = &w->timers[l];
        }
        if (r < n && timer_less(&w->timers[r], best))
            m = r;
        if (m == i)
            break;
        w->timers[i] = w->timers[m];
        i = m;
    }
    if (n > 0)
        w->timers[i] = last;
    return top;
}

static void run_timers(fxb_worker *w)
{
    if (w->n_timers == 0)
        return;
    int64_t now = (int64_t)fxb_now_us();
    while (w->n_timers > 0 && w->timers[0].due_us <= now) {
        rt_timer t = timer_pop(w);
        deliver(t.ctx, t.event);
        fxb_ctx_unref(t.ctx);
    }
}

/* --- workers ------------------------------------------------------------ */

static void *poller_main(void *arg)
{
    fxb_server *s = arg;
    while (grpc_completion_queue_next(s->poll_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    return NULL;
}

static void *worker_main(void *arg)
{
    fxb_worker *w = arg;
    for (;;) {
        int64_t wait_ms = FXB_WORKER_TICK_MS;
        if (w->n_timers > 0) {
            int64_t until = (w->timers[0].due_us - (int64_t)fxb_now_us()) / 1000;
            if (until < wait_ms)
                wait_ms = until < 0 ? 0 : until;
        }
        grpc_event ev = grpc_completion_queue_next(w->cq, ms_from_now(wait_ms), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            rt_tag *tag = ev.tag;
            tag->step(tag, ev.success != 0);
        }
        drain_mailbox(w);
        run_timers(w);
    }
    /* Calls are all ended by now; what remains are undelivered events. */
    drain_mailbox(w);
    while (w->n_timers > 0) {
        rt_timer t = timer_pop(w);
        deliver(t.ctx, t.event);
        fxb_ctx_unref(t.ctx);
    }
    return NULL;
}

/* --- server ------------------------------------------------------------- */

fxb_server *fxb_server_new(const fxb_config *cfg, fxb_err *err)
{
    fxb_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统错误", "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    atomic_init(&s->stopping, false);
    atomic_init(&s->forced, false);
    atomic_init(&s->outstanding, 0);
    return s;
}

/* A dept_field / item_field (NULL = none) names a single string field of
 * a request the runtime unpacks before the handler. */
static bool request_field_ok(const fxb_method *m, const char *name)
{
    if (name == NULL)
        return true;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->request, name);
    return f != NULL && f->type == PROTOBUF_C_TYPE_STRING &&
           f->label != PROTOBUF_C_LABEL_REPEATED && m->kind != FXB_RPC_CLIENT_STREAMING &&
           m->kind != FXB_RPC_BIDI;
}

fxb_code fxb_server_add_service(fxb_server *s, const fxb_service *svc, fxb_err *err)
{
    if (s->started || s->n_services == FXB_MAX_SERVICES ||
        s->n_methods + svc->n_methods > FXB_MAX_METHODS)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "TOO_MANY_SERVICES", "系统错误",
                           "cannot add service %s", svc->name);
    for (size_t i = 0; i < svc->n_methods; i++) {
        const fxb_method *m = &svc->methods[i];
        bool stream = m->kind != FXB_RPC_UNARY;
        if (m->path == NULL || m->request == NULL || m->response == NULL ||
            (stream && m->stream == NULL) || (!stream && m->unary == NULL) ||
            (m->kind == FXB_RPC_SERVER_STREAMING && m->stream->on_start == NULL) ||
            ((m->kind == FXB_RPC_CLIENT_STREAMING || m->kind == FXB_RPC_BIDI) &&
             m->stream->on_message == NULL) ||
            (m->kind == FXB_RPC_CLIENT_STREAMING && m->stream->on_half_close == NULL))
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BAD_METHOD_TABLE", "系统错误",
                               "method %zu of %s is incomplete", i, svc->name);
        if (!request_field_ok(m, m->access.dept_field) ||
            !request_field_ok(m, m->access.item_field))
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BAD_METHOD_TABLE", "系统错误",
                               "method %s: dept_field and item_field must name a string field "
                               "of a unary or server-streaming request",
                               m->path);
        if (m->access.delegable &&
            (m->access.kind != FXB_ACCESS_SIGNED_IN || m->access.scope == NULL ||
             m->access.scope[0] == '\0' || m->access.step_up_s > 0))
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BAD_METHOD_TABLE", "系统错误",
                               "method %s: a delegable method is signed-in, names the scope "
                               "a grant must hold, and needs no step-up",
                               m->path);
        for (size_t j = 0; j < s->n_methods; j++)
            if (strcmp(s->methods[j].m->path, m->path) == 0)
                return fxb_err_set(err, FXB_ALREADY_EXISTS, "DUPLICATE_METHOD", "系统错误",
                                   "method %s declared twice", m->path);
    }
    for (size_t i = 0; i < svc->n_methods; i++) {
        s->methods[s->n_methods].m = &svc->methods[i];
        s->methods[s->n_methods].index = s->n_methods;
        s->n_methods++;
    }
    s->services[s->n_services++] = svc;
    return FXB_OK;
}

void fxb_server_set_authenticator(fxb_server *s, fxb_authenticate_fn fn, void *state)
{
    s->authenticate = fn;
    s->auth_state = state;
}

void fxb_server_set_delegation(fxb_server *s, const fxb_delegation_ops *ops, void *state)
{
    s->deleg_ops = ops;
    s->deleg_state = state;
}

size_t fxb_server_service_names(const fxb_server *s, const char **names, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_services && n < cap; i++)
        names[n++] = s->services[i]->name;
    return n;
}

int fxb_server_port(const fxb_server *s)
{
    return s->port;
}

bool fxb_server_stopping(const fxb_server *s)
{
    return atomic_load(&s->stopping);
}

static fxb_code start_fail(fxb_err *err, const char *what, const char *arg)
{
    return fxb_err_set(err, FXB_UNAVAILABLE, "START_FAILED", "服务启动失败", "%s%s", what, arg);
}

fxb_code fxb_server_start(fxb_server *s, fxb_err *err)
{
    const fxb_config *cfg = &s->cfg;
    grpc_arg args[6];
    args[0] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                         .value.integer = (int)cfg->max_recv_bytes};
    args[1] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
                         .value.integer = cfg->max_concurrent_streams};
    args[2] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_KEEPALIVE_TIME_MS,
                         .value.integer = cfg->keepalive_time_ms};
    args[3] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                         .value.integer = cfg->keepalive_timeout_ms};
    /* accept client pings no more often than every 10 s without calls */
    args[4] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                         .value.integer = 10000};
    args[5] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                         .value.integer = 64 * 1024 * 1024};
    grpc_channel_args chargs = {.num_args = 6, .args = args};

    s->server = grpc_server_create(&chargs, NULL);
    for (size_t i = 0; i < s->n_methods; i++) {
        rt_method *rm = &s->methods[i];
        bool with_payload = rm->m->kind == FXB_RPC_UNARY || rm->m->kind == FXB_RPC_SERVER_STREAMING;
        rm->handle = grpc_server_register_method(
            s->server, rm->m->path, NULL,
            with_payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
        if (rm->handle == NULL)
            return start_fail(err, "cannot register method ", rm->m->path);
    }

    s->n_workers = cfg->workers;
    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    if (s->workers == NULL)
        return start_fail(err, "out of memory", "");
    uint64_t seed[2];
    for (int i = 0; i < s->n_workers; i++) {
        fxb_worker *w = &s->workers[i];
        w->srv = s;
        w->index = i;
        pthread_mutex_init(&w->mu, NULL);
        atomic_init(&w->mbox_nonempty, false);
        if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
            seed[0] = fxb_now_us() ^ (uint64_t)(uintptr_t)w;
            seed[1] = (uint64_t)fxb_wall_ms() * 2654435761u + 1;
        }
        w->rng[0] = seed[0] | 1;
        w->rng[1] = seed[1];
        w->cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, w->cq, NULL);
        w->wake_tag.step = wake_step;
        fxb_store_options so = {.url = cfg->redis_url,
                                .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                                .command_timeout_ms = cfg->redis_command_timeout_ms};
        w->store = fxb_store_new(&so, err);
        if (w->store == NULL)
            return err->code;
    }

    s->poll_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->poll_cq, NULL);
    s->wake_channel =
        grpc_lame_client_channel_create("fxb-wake", GRPC_STATUS_UNAVAILABLE, "worker wake-up");

    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, cfg->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0)
        return start_fail(err, "cannot listen on (address in use or invalid): ", cfg->listen);

    grpc_server_start(s->server);
    s->started = true;
    if (pthread_create(&s->poll_thread, NULL, poller_main, s) != 0)
        return start_fail(err, "cannot start the poller thread", "");
    s->poll_started = true;
    for (int i = 0; i < s->n_workers; i++) {
        fxb_worker *w = &s->workers[i];
        for (size_t j = 0; j < s->n_methods; j++)
            for (int k = 0; k < FXB_REQUESTS_PER_METHOD; k++)
                arm_request(w, &s->methods[j], NULL);
        arm_request(w, NULL, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return start_fail(err, "cannot start worker thread", "");
        w->thread_started = true;
    }
    return FXB_OK;
}

void fxb_server_shutdown(fxb_server *s, int grace_ms)
{
    if (!s->started || s->shut_down)
        return;
    s->shut_down = true;
    atomic_store(&s->stopping, true);

    grpc_completion_queue *scq = grpc_completion_queue_create_for_pluck(NULL);
    int shutdown_tag;
    grpc_server_shutdown_and_notify(s->server, scq, &shutdown_tag);
    grpc_event ev = grpc_completion_queue_pluck(scq, &shutdown_tag, ms_from_now(grace_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        fxb_log(FXB_LOG_WARN, "shutdown grace period of %d ms ended: cancelling remaining calls",
                grace_ms);
        atomic_store(&s->forced, true);
        grpc_server_cancel_all_calls(s->server);
        grpc_completion_queue_pluck(scq, &shutdown_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    /* the only tag of this pluck queue is consumed: it is empty */
    grpc_completion_queue_shutdown(scq);
    grpc_completion_queue_pluck(scq, &shutdown_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_completion_queue_destroy(scq);

    /* The core counts a cancelled call as done, but a worker may still be
     * inside its handler and about to start a batch on it, and failed
     * requests may still wait in the queues: wait until every request and
     * call has been seen to its end before the queues close. */
    while (atomic_load(&s->outstanding) > 0) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < s->n_workers; i++) {
        /* no wake-up may be armed on a queue that is shutting down; one
         * armed before completes at once and is consumed by the loop */
        fxb_worker *w = &s->workers[i];
        pthread_mutex_lock(&w->mu);
        w->wake_closed = true;
        pthread_mutex_unlock(&w->mu);
        grpc_completion_queue_shutdown(w->cq);
    }
    if (s->poll_cq)
        grpc_completion_queue_shutdown(s->poll_cq);
    if (s->poll_started) {
        pthread_join(s->poll_thread, NULL);
        s->poll_started = false;
    }
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].thread_started) {
            pthread_join(s->workers[i].thread, NULL);
            s->workers[i].thread_started = false;
        }
}

void fxb_server_free(fxb_server *s)
{
    if (s == NULL)
        return;
    if (s->started && !s->shut_down)
        fxb_server_shutdown(s, 0);
    if (s->server)
        grpc_server_destroy(s->server);
    for (int i = 0; s->workers && i < s->n_workers; i++) {
        fxb_worker *w = &s->workers[i];
        if (w->cq) {
            if (!s->started) {
                grpc_completion_queue_shutdown(w->cq);
                while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                           .type != GRPC_QUEUE_SHUTDOWN)
                    ;
            }
            grpc_completion_queue_destroy(w->cq);
        }
        if (w->store)
            fxb_store_free(w->store);
        free(w->timers);
        pthread_mutex_destroy(&w->mu);
    }
    if (s->poll_cq) {
        if (!s->started) {
            grpc_completion_queue_shutdown(s->poll_cq);
            while (grpc_completion_queue_next(s->poll_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
        }
        grpc_completion_queue_destroy(s->poll_cq);
    }
    if (s->wake_channel)
        grpc_channel_destroy(s->wake_channel);
    free(s->workers);
    free(s);
}
