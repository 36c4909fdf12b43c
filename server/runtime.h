/* The gRPC server runtime: listener, worker threads (one completion queue and
 * one Redis connection each), the per-call state machines, and graceful
 * shutdown. Services plug in through server/handler.h. */
#ifndef FXB_RUNTIME_H
#define FXB_RUNTIME_H

#include <stdbool.h>

#include "config.h"
#include "handler.h"

#define FXB_MAX_SERVICES 32
#define FXB_MAX_METHODS  256
/* Calls requested in advance per method on each worker's queue. */
#define FXB_REQUESTS_PER_METHOD 4
/* Outbound stream bound: messages queued and not yet written. */
#define FXB_STREAM_MAX_QUEUED       64
#define FXB_STREAM_MAX_QUEUED_BYTES (8u * 1024u * 1024u)
/* Worker wake-up period for posted events and timers. */
#define FXB_WORKER_TICK_MS 20

typedef struct fxb_server fxb_server;

/* Creates a server from a validated config; nothing is bound yet. NULL with
 * *err on failure. Free with fxb_server_free. */
fxb_server *fxb_server_new(const fxb_config *cfg, fxb_err *err);

/* Adds a service; its method table must outlive the server. Before start. */
fxb_code fxb_server_add_service(fxb_server *s, const fxb_service *svc, fxb_err *err);

/* Decides who calls a non-public method and whether its access rule admits
 * them (token, session, level, role, step-up; the runtime itself checks the
 * department field). Runs on the worker before the request is unpacked.
 * Returns FXB_OK with *caller filled, or the refusal in *err. */
typedef fxb_code (*fxb_authenticate_fn)(void *state, fxb_ctx *ctx, const fxb_method *m,
                                        fxb_caller *caller, fxb_err *err);

/* Installs the authenticator (before start). Without one, every non-public
 * method is refused with UNAUTHENTICATED. */
void fxb_server_set_authenticator(fxb_server *s, fxb_authenticate_fn fn, void *state);

/* Delegated calls (ProxyService grants). check_item decides whether the
 * caller's grant admits acting on a service item (fxb_ctx_require_item and
 * methods with an item_field); record appends the call's act — method,
 * item (NULL when none), final code and reason — to the grant's activity
 * log, once per call, before its status is sent (or when it ends
 * cancelled). Both run on the call's worker. */
typedef struct fxb_delegation_ops {
    fxb_code (*check_item)(void *state, fxb_ctx *ctx, const fxb_caller *caller, const char *item,
                           fxb_err *err);
    void (*record)(void *state, fxb_ctx *ctx, const fxb_caller *caller, const char *item,
                   fxb_code code, const char *reason);
} fxb_delegation_ops;

/* Installs the delegation hooks (before start). Without them, item checks
 * refuse delegated callers and nothing is recorded. */
void fxb_server_set_delegation(fxb_server *s, const fxb_delegation_ops *ops, void *state);

/* Names of the services added so far (for reflection and health). */
size_t fxb_server_service_names(const fxb_server *s, const char **names, size_t cap);

/* Binds the listener, registers methods, starts the workers. */
fxb_code fxb_server_start(fxb_server *s, fxb_err *err);

/* Port actually bound (useful with port 0). */
int fxb_server_port(const fxb_server *s);

/* Graceful shutdown: stop accepting, let in-flight calls finish within
 * grace_ms, cancel the rest, drain and stop the workers. Blocks. Call from
 * the main thread once. */
void fxb_server_shutdown(fxb_server *s, int grace_ms);

/* True once shutdown began. */
bool fxb_server_stopping(const fxb_server *s);

/* Destroys a server (after shutdown, or one never started). */
void fxb_server_free(fxb_server *s);

#endif
