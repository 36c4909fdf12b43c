/* fxb-bench-echo: the performance ceiling for fxb-server.
 *
 * A bare gRPC C-core server with the same threading shape as fxb-server (N
 * worker threads, one completion queue each, calls requested on every CQ)
 * that answers ANY method path by echoing the request message back with
 * status OK. It does no parsing, no auth, no metrics, no Redis: whatever
 * fxb-server costs on top of this is the framework's own overhead.
 *
 * Usage: fxb-bench-echo [--no-poller] [LISTEN [WORKERS [METHOD_PATH...]]]
 *   LISTEN       host:port, default 127.0.0.1:50052 (insecure)
 *   WORKERS      worker threads / CQs; default $FXB_WORKERS, else the number
 *                of online cores
 *   METHOD_PATH  optional paths (e.g. /fxb.v1.SystemService/GetInfo) to
 *                register with GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, so
 *                the request arrives with the call (as fxb-server does for
 *                unary methods). Every other path is served as an
 *                unregistered call: RECV_MESSAGE batch first, then the reply.
 *   --no-poller  do not start the extra polling thread. By default, like
 *                fxb-server, one more thread waits on a CQ of its own that
 *                has no calls requested on it, so that network I/O is polled
 *                while every worker is busy.
 *
 * Per call: requested -> [RECV_MESSAGE] -> one batch SEND_INITIAL_METADATA +
 * SEND_MESSAGE + SEND_STATUS_FROM_SERVER + RECV_CLOSE_ON_SERVER -> freed.
 * SIGINT/SIGTERM shut it down cleanly (order of NOTES-STACK.md). */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* sigwait, pthread_sigmask, clock_gettime */
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#define DEFAULT_LISTEN "127.0.0.1:50052"
#define MAX_WORKERS    256
#define MAX_REGISTERED 64
#define GRACE_SECONDS  5
/* Calls requested in advance per (CQ, method kind): enough that a burst of
 * new streams never waits for a re-arm. */
#define PREREQUESTED 16

typedef enum call_state {
    ST_REQUESTED = 0, /* waiting for a new call */
    ST_RECEIVING,     /* unregistered: RECV_MESSAGE in flight */
    ST_REPLYING,      /* reply batch in flight */
} call_state;

typedef struct echo_call {
    call_state state;
    int method; /* -1 = unregistered, else index into g.methods */
    size_t worker;
    grpc_call *call;
    grpc_call_details details; /* unregistered only */
    gpr_timespec deadline;     /* registered only */
    grpc_metadata_array request_md;
    grpc_byte_buffer *payload;
    int cancelled;
} echo_call;

typedef struct worker {
    pthread_t thread;
    grpc_completion_queue *cq;
    /* Taken around "check stopping + request a call" so that no call is
     * requested on a CQ after main has decided to stop. Uncontended except
     * at shutdown. */
    pthread_mutex_t arm_lock;
    bool stopping;
} worker;

static struct {
    grpc_server *server;
    worker workers[MAX_WORKERS];
    size_t n_workers;
    grpc_completion_queue *poll_cq; /* NULL with --no-poller */
    pthread_t poll_thread;
    void *methods[MAX_REGISTERED];
    size_t n_methods;
    /* shutdown notification, delivered on worker 0's CQ */
    pthread_mutex_t shut_lock;
    pthread_cond_t shut_cond;
    bool shut_done;
} g = {
    .shut_lock = PTHREAD_MUTEX_INITIALIZER,
    .shut_cond = PTHREAD_COND_INITIALIZER,
};

static char shutdown_tag; /* its address is the server-shutdown tag */

static void call_free(echo_call *c)
{
    if (c->call != NULL) {
        grpc_call_unref(c->call);
    }
    if (c->method < 0) {
        grpc_call_details_destroy(&c->details);
    }
    grpc_metadata_array_destroy(&c->request_md);
    if (c->payload != NULL) {
        grpc_byte_buffer_destroy(c->payload);
    }
    free(c);
}

/* Requests one new call of the given kind on worker w's CQ. Returns false
 * once the server is stopping (or on a request error). */
static bool request_one(size_t w, int method)
{
    worker *wk = &g.workers[w];
    echo_call *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        fprintf(stderr, "fxb-bench-echo: out of memory\n");
        return false;
    }
    c->state = ST_REQUESTED;
    c->method = method;
    c->worker = w;
    grpc_metadata_array_init(&c->request_md);
    if (method < 0) {
        grpc_call_details_init(&c->details);
    }

    grpc_call_error rc;
    pthread_mutex_lock(&wk->arm_lock);
    if (wk->stopping) {
        pthread_mutex_unlock(&wk->arm_lock);
        call_free(c);
        return false;
    }
    if (method < 0) {
        rc = grpc_server_request_call(g.server, &c->call, &c->details, &c->request_md, wk->cq,
                                      wk->cq, c);
    } else {
        rc =
            grpc_server_request_registered_call(g.server, g.methods[method], &c->call, &c->deadline,
                                                &c->request_md, &c->payload, wk->cq, wk->cq, c);
    }
    pthread_mutex_unlock(&wk->arm_lock);
    if (rc != GRPC_CALL_OK) {
        fprintf(stderr, "fxb-bench-echo: request call failed (%d)\n", (int)rc);
        call_free(c);
        return false;
    }
    return true;
}

static void start_reply(echo_call *c)
{
    if (c->payload == NULL) {
        /* The client half-closed without a message: answer an empty one. */
        c->payload = grpc_raw_byte_buffer_create(NULL, 0);
    }
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = 0;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->payload;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.trailing_metadata_count = 0;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[2].data.send_status_from_server.status_details = NULL;
    ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
    c->state = ST_REPLYING;
    if (grpc_call_start_batch(c->call, ops, 4, c, NULL) != GRPC_CALL_OK) {
        call_free(c);
    }
}

static void start_receive(echo_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->payload;
    c->state = ST_RECEIVING;
    if (grpc_call_start_batch(c->call, &op, 1, c, NULL) != GRPC_CALL_OK) {
        call_free(c);
    }
}

static void on_event(echo_call *c, bool ok)
{
    switch (c->state) {
    case ST_REQUESTED:
        if (!ok) {
            /* Pending requests fail with success = 0 at shutdown. */
            call_free(c);
            return;
        }
        request_one(c->worker, c->method); /* keep the pool of requests full */
        if (c->method < 0) {
            start_receive(c);
        } else {
            start_reply(c);
        }
        return;
    case ST_RECEIVING:
        if (!ok) {
            call_free(c);
            return;
        }
        start_reply(c);
        return;
    case ST_REPLYING:
        call_free(c);
        return;
    }
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(wk->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        if (ev.tag == &shutdown_tag) {
            pthread_mutex_lock(&g.shut_lock);
            g.shut_done = true;
            pthread_cond_signal(&g.shut_cond);
            pthread_mutex_unlock(&g.shut_lock);
            continue;
        }
        on_event(ev.tag, ev.success != 0);
    }
    return NULL;
}

static void *poller_main(void *arg)
{
    grpc_completion_queue *cq = arg;
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    return NULL;
}

static size_t default_workers(void)
{
    const char *env = getenv("FXB_WORKERS");
    if (env != NULL && *env != '\0') {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= MAX_WORKERS) {
            return (size_t)v;
        }
        fprintf(stderr, "fxb-bench-echo: ignoring FXB_WORKERS=%s (1..%d)\n", env, MAX_WORKERS);
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) {
        n = 1;
    }
    return n > MAX_WORKERS ? MAX_WORKERS : (size_t)n;
}

/* Waits for the shutdown tag until `until` (NULL: forever); true if seen. */
static bool wait_shutdown(const struct timespec *until)
{
    bool done;
    pthread_mutex_lock(&g.shut_lock);
    while (!g.shut_done) {
        if (until == NULL) {
            pthread_cond_wait(&g.shut_cond, &g.shut_lock);
        } else if (pthread_cond_timedwait(&g.shut_cond, &g.shut_lock, until) == ETIMEDOUT) {
            break;
        }
    }
    done = g.shut_done;
    pthread_mutex_unlock(&g.shut_lock);
    return done;
}

int main(int argc, char **argv)
{
    const char *prog = argv[0];
    bool poller = true;
    while (argc > 1 && argv[1][0] == '-' && argv[1][1] == '-') {
        if (strcmp(argv[1], "--help") == 0) {
            printf("usage: %s [--no-poller] [LISTEN [WORKERS [METHOD_PATH...]]]\n"
                   "  LISTEN default " DEFAULT_LISTEN ", WORKERS default $FXB_WORKERS or cores;\n"
                   "  echoes any request message back with status OK.\n",
                   prog);
            return 0;
        } else if (strcmp(argv[1], "--no-poller") == 0) {
            poller = false;
        } else if (strcmp(argv[1], "--") == 0) {
            argv++;
            argc--;
            break;
        } else {
            fprintf(stderr, "fxb-bench-echo: unknown option %s (see --help)\n", argv[1]);
            return 2;
        }
        argv++;
        argc--;
    }
    const char *listen = argc > 1 ? argv[1] : DEFAULT_LISTEN;
    g.n_workers = default_workers();
    if (argc > 2) {
        char *end;
        long v = strtol(argv[2], &end, 10);
        if (*end != '\0' || v < 1 || v > MAX_WORKERS) {
            fprintf(stderr, "fxb-bench-echo: WORKERS must be 1..%d\n", MAX_WORKERS);
            return 2;
        }
        g.n_workers = (size_t)v;
    }
    if (argc - 3 > MAX_REGISTERED) {
        fprintf(stderr, "fxb-bench-echo: at most %d method paths\n", MAX_REGISTERED);
        return 2;
    }

    /* Block the stop signals before any thread exists (gRPC's included), so
     * only sigwait in main sees them. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);

    grpc_init();

    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
    args[0].value.integer = 1000; /* fxb-server's default */
    grpc_channel_args chargs = {.num_args = 1, .args = args};
    g.server = grpc_server_create(&chargs, NULL);

    for (int i = 3; i < argc; i++) {
        g.methods[g.n_methods] = grpc_server_register_method(
            g.server, argv[i], NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (g.methods[g.n_methods] == NULL) {
            fprintf(stderr, "fxb-bench-echo: cannot register %s\n", argv[i]);
            return 1;
        }
        g.n_methods++;
    }
    for (size_t w = 0; w < g.n_workers; w++) {
        g.workers[w].cq = grpc_completion_queue_create_for_next(NULL);
        pthread_mutex_init(&g.workers[w].arm_lock, NULL);
        grpc_server_register_completion_queue(g.server, g.workers[w].cq, NULL);
    }
    if (poller) {
        g.poll_cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(g.server, g.poll_cq, NULL);
    }

    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(g.server, listen, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        fprintf(stderr, "fxb-bench-echo: cannot listen on %s\n", listen);
        return 1;
    }
    grpc_server_start(g.server);
    if (g.poll_cq != NULL && pthread_create(&g.poll_thread, NULL, poller_main, g.poll_cq) != 0) {
        fprintf(stderr, "fxb-bench-echo: cannot start the poller thread\n");
        return 1;
    }

    for (size_t w = 0; w < g.n_workers; w++) {
        for (int k = 0; k < PREREQUESTED; k++) {
            request_one(w, -1);
            for (size_t m = 0; m < g.n_methods; m++) {
                request_one(w, (int)m);
            }
        }
        if (pthread_create(&g.workers[w].thread, NULL, worker_main, &g.workers[w]) != 0) {
            fprintf(stderr, "fxb-bench-echo: cannot start worker %zu\n", w);
            return 1;
        }
    }
    fprintf(stderr, "fxb-bench-echo: listening on %s (port %d), %zu workers%s, %zu registered\n",
            listen, port, g.n_workers, g.poll_cq != NULL ? " + poller" : "", g.n_methods);

    int sig = 0;
    while (sigwait(&stop_set, &sig) != 0) {
    }
    fprintf(stderr, "fxb-bench-echo: signal %d, shutting down\n", sig);

    /* 1. stop re-arming requests */
    for (size_t w = 0; w < g.n_workers; w++) {
        pthread_mutex_lock(&g.workers[w].arm_lock);
        g.workers[w].stopping = true;
        pthread_mutex_unlock(&g.workers[w].arm_lock);
    }
    /* 2. shutdown and wait for the tag, cancelling calls after the grace */
    grpc_server_shutdown_and_notify(g.server, g.workers[0].cq, &shutdown_tag);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += GRACE_SECONDS;
    if (!wait_shutdown(&until)) {
        grpc_server_cancel_all_calls(g.server);
        wait_shutdown(NULL);
    }
    /* 3. shut every CQ down; the workers drain them until GRPC_QUEUE_SHUTDOWN */
    for (size_t w = 0; w < g.n_workers; w++) {
        grpc_completion_queue_shutdown(g.workers[w].cq);
    }
    for (size_t w = 0; w < g.n_workers; w++) {
        pthread_join(g.workers[w].thread, NULL);
    }
    if (g.poll_cq != NULL) {
        grpc_completion_queue_shutdown(g.poll_cq);
        pthread_join(g.poll_thread, NULL);
    }
    /* 4. destroy */
    grpc_server_destroy(g.server);
    for (size_t w = 0; w < g.n_workers; w++) {
        grpc_completion_queue_destroy(g.workers[w].cq);
        pthread_mutex_destroy(&g.workers[w].arm_lock);
    }
    if (g.poll_cq != NULL) {
        grpc_completion_queue_destroy(g.poll_cq);
    }
    grpc_shutdown();
    return 0;
}
