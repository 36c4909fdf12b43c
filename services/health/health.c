/* Health state is one atomic plus a watcher list. Watchers are calls living
 * on worker threads; a status change is posted to each, never sent from the
 * monitor thread, so each stream is touched only by its own worker. */
#include "health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#define HEALTH_MAX_NAMES    64
#define HEALTH_MAX_WATCHERS 10000
#define EV_SERVING          ((void *)(intptr_t)1)
#define EV_NOT_SERVING      ((void *)(intptr_t)2)
#define EV_SHUTDOWN         ((void *)(intptr_t)3)

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

static char *names[HEALTH_MAX_NAMES];
static size_t n_names;
static atomic_bool serving;
static atomic_bool down_for_good;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fxb_ctx **watchers;
static size_t n_watchers, cap_watchers;

typedef struct watch_state {
    bool known;
    int last_sent; /* serving_status */
} watch_state;

fxb_code fxb_health_init(const char *const *list, size_t n)
{
    if (n > HEALTH_MAX_NAMES)
        return FXB_RESOURCE_EXHAUSTED;
    for (size_t i = 0; i < n; i++) {
        names[i] = strdup(list[i]);
        if (names[i] == NULL)
            return FXB_RESOURCE_EXHAUSTED;
        n_names = i + 1;
    }
    atomic_store(&serving, false);
    atomic_store(&down_for_good, false);
    return FXB_OK;
}

void fxb_health_cleanup(void)
{
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    n_names = 0;
    pthread_mutex_lock(&mu);
    free(watchers);
    watchers = NULL;
    n_watchers = cap_watchers = 0;
    pthread_mutex_unlock(&mu);
}

static bool known_service(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return true;
    for (size_t i = 0; i < n_names; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

bool fxb_health_serving(void)
{
    return atomic_load(&serving) && !atomic_load(&down_for_good);
}

/* Posts ev to every watcher; caller holds mu. */
static void broadcast(void *ev)
{
    for (size_t i = 0; i < n_watchers; i++)
        fxb_ctx_post(watchers[i], ev);
}

void fxb_health_set_serving(bool on)
{
    pthread_mutex_lock(&mu);
    if (!atomic_load(&down_for_good) && atomic_exchange(&serving, on) != on)
        broadcast(on ? EV_SERVING : EV_NOT_SERVING);
    pthread_mutex_unlock(&mu);
}

void fxb_health_shutdown(void)
{
    pthread_mutex_lock(&mu);
    atomic_store(&down_for_good, true);
    broadcast(EV_SHUTDOWN);
    pthread_mutex_unlock(&mu);
}

static serving_status current(void)
{
    return fxb_health_serving()
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static fxb_code check(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)req_msg;
    Grpc__Health__V1__HealthCheckResponse *resp = (Grpc__Health__V1__HealthCheckResponse *)resp_msg;
    if (!known_service(req->service))
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, "UNKNOWN_SERVICE", "未知的服务",
                            "unknown service name (%zu bytes)", strlen(req->service));
    resp->status = current();
    return FXB_OK;
}

static fxb_code send_status(fxb_ctx *ctx, int status)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (serving_status)status;
    return fxb_ctx_send(ctx, &resp.base);
}

static fxb_next watch_start(fxb_ctx *ctx, const ProtobufCMessage *req_msg)
{
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)req_msg;
    watch_state *st = fxb_arena_calloc(fxb_ctx_arena(ctx), 1, sizeof *st);
    if (st == NULL) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                     "out of memory");
        return FXB_NEXT_FINISH;
    }
    fxb_ctx_set_user(ctx, st);
    st->known = known_service(req->service);
    pthread_mutex_lock(&mu);
    if (n_watchers == cap_watchers) {
        size_t cap = cap_watchers ? cap_watchers * 2 : 16;
        fxb_ctx **w = cap <= HEALTH_MAX_WATCHERS ? realloc(watchers, cap * sizeof *w) : NULL;
        if (w == NULL) {
            pthread_mutex_unlock(&mu);
            fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS", "系统繁忙，请稍后重试",
                         "too many health watchers");
            return FXB_NEXT_FINISH;
        }
        watchers = w;
        cap_watchers = cap;
    }
    fxb_ctx_ref(ctx);
    watchers[n_watchers++] = ctx;
    /* read under the lock so no change slips between this send and the
     * registration */
    int status = st->known
                     ? (int)current()
                     : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    bool gone = atomic_load(&down_for_good);
    pthread_mutex_unlock(&mu);
    st->last_sent = status;
    send_status(ctx, status);
    if (gone) {
        fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "SHUTTING_DOWN", "服务正在重启，请稍后重试",
                     "the server is shutting down");
        return FXB_NEXT_FINISH;
    }
    return FXB_NEXT_CONTINUE;
}

static fxb_next watch_event(fxb_ctx *ctx, void *ev)
{
    watch_state *st = fxb_ctx_user(ctx);
    if (ev == EV_SHUTDOWN) {
        if (st->known &&
            st->last_sent != GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING)
            send_status(ctx, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
        fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "SHUTTING_DOWN", "服务正在重启，请稍后重试",
                     "the server is shutting down");
        return FXB_NEXT_FINISH;
    }
    if (!st->known)
        return FXB_NEXT_CONTINUE;
    int status = (int)current();
    if (status != st->last_sent) {
        /* a watcher that does not read gets only the latest status once it
         * drains: skipping intermediate flaps is allowed by the protocol */
        if (send_status(ctx, status) == FXB_OK)
            st->last_sent = status;
    }
    return FXB_NEXT_CONTINUE;
}

static fxb_next watch_writable(fxb_ctx *ctx)
{
    return watch_event(ctx, EV_SERVING);
}

static void watch_end(fxb_ctx *ctx, bool cancelled)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n_watchers; i++) {
        if (watchers[i] == ctx) {
            watchers[i] = watchers[--n_watchers];
            pthread_mutex_unlock(&mu);
            fxb_ctx_unref(ctx);
            return;
        }
    }
    pthread_mutex_unlock(&mu);
}

static const fxb_stream_ops watch_ops = {
    .on_start = watch_start,
    .on_event = watch_event,
    .on_writable = watch_writable,
    .on_end = watch_end,
};

static const fxb_method methods[] = {
    {.path = "/grpc.health.v1.Health/Check",
     .request = &grpc__health__v1__health_check_request__descriptor,
     .response = &grpc__health__v1__health_check_response__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = check,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 1024}},
    {.path = "/grpc.health.v1.Health/Watch",
     .request = &grpc__health__v1__health_check_request__descriptor,
     .response = &grpc__health__v1__health_check_response__descriptor,
     .kind = FXB_RPC_SERVER_STREAMING,
     .stream = &watch_ops,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 1024}},
};

const fxb_service fxb_health_service = {
    .name = "grpc.health.v1.Health",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
