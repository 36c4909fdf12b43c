/* The contract between the runtime and the services. A service declares its
 * methods in a table of fxb_method and implements handlers against fxb_ctx;
 * it never sees gRPC core types. The runtime does unpack, access checks,
 * deadlines, logging, metrics and status for every method. */
#ifndef FXB_HANDLER_H
#define FXB_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "arena.h"
#include "status.h"

typedef struct fxb_ctx fxb_ctx;
typedef struct fxb_store fxb_store;
typedef struct fxb_config fxb_config;

typedef enum fxb_rpc_kind {
    FXB_RPC_UNARY = 0,
    FXB_RPC_CLIENT_STREAMING,
    FXB_RPC_SERVER_STREAMING,
    FXB_RPC_BIDI,
} fxb_rpc_kind;

/* Who may call a method. The runtime enforces the rule before the handler
 * runs: no or bad token -> UNAUTHENTICATED; valid but not allowed ->
 * PERMISSION_DENIED (or UNAUTHENTICATED reason STEP_UP_REQUIRED). */
typedef enum fxb_access_kind {
    FXB_ACCESS_PUBLIC = 0,    /* anyone; a token, if sent, is not looked at */
    FXB_ACCESS_SIGNED_IN = 1, /* a valid access token, plus the fields below */
} fxb_access_kind;

/* Roles, as carried in tokens. */
#define FXB_ROLE_CITIZEN   1u
#define FXB_ROLE_OFFICER   2u
#define FXB_ROLE_ADMIN     4u
#define FXB_ROLE_DATA_FEED 8u

#define FXB_LEVEL_PHONE     1 /* L1: phone verified */
#define FXB_LEVEL_REAL_NAME 2 /* L2: real-name verified */
#define FXB_LEVEL_REAL_FACE 3 /* L3: real person (face) verified */

typedef struct fxb_access {
    fxb_access_kind kind;
    int min_level;  /* FXB_LEVEL_*; 0 = any signed-in caller */
    uint32_t roles; /* caller must hold one of these roles; 0 = any role */
    /* For officer methods: the request field (string) naming the department
     * the call acts on; an officer of another department is refused, an
     * admin passes. NULL when the method is not department-scoped. */
    const char *dept_field;
    /* Delegation (ProxyService): whether a delegated token may call the
     * method at all, the capability its grant must hold (auth/scope.h, e.g.
     * "inbox.read"; required when delegable), and for item-specific methods
     * the request field (string) holding the service item code, which the
     * grant's item / category scopes must admit. Handlers that learn the
     * item from stored data call fxb_ctx_require_item instead. */
    bool delegable;
    const char *scope;
    const char *item_field;
    /* Step-up: the token's auth_time must be at most this many seconds old
     * (and min_level still applies). 0 = no step-up. */
    uint32_t step_up_s;
} fxb_access;

#define FXB_ID_MAX          64
#define FXB_DEPT_MAX        32
#define FXB_SCOPE_CLAIM_MAX 1024

/* The authenticated caller, as the handler sees it. Handlers never parse
 * tokens. */
typedef struct fxb_caller {
    bool signed_in;
    char account_id[FXB_ID_MAX + 1]; /* the subject (the principal when delegated) */
    char session_id[FXB_ID_MAX + 1];
    char token_id[FXB_ID_MAX + 1];
    int level;      /* FXB_LEVEL_* */
    uint32_t roles; /* FXB_ROLE_* bits */
    char dept[FXB_DEPT_MAX + 1];
    int64_t auth_time_s; /* last proof of presence */
    int64_t expires_s;   /* token expiry */
    /* Delegation: set when an agent acts for account_id (which is then the
     * principal: an account id, or an enterprise id "e" + 24 hex) under a
     * grant the runtime found active for this very call. */
    bool delegated;
    char agent_id[FXB_ID_MAX + 1];
    char grant_id[FXB_ID_MAX + 1];
    char scope[FXB_SCOPE_CLAIM_MAX + 1]; /* the grant's canonical scopes */
    bool grant_notify;                   /* the principal wants a notice per act */
    int64_t grant_expires_at_ms;         /* the grant record's expiry (activity log) */
} fxb_caller;

/* What a streaming callback wants next. */
typedef enum fxb_next {
    FXB_NEXT_CONTINUE = 0, /* keep the stream open */
    FXB_NEXT_FINISH = 1,   /* end the call with the status set on ctx (OK if none) */
} fxb_next;

/* Unary handler: fill *resp (already initialised from the method's response
 * descriptor, allocated in the call arena) and return FXB_OK, or return the
 * code from fxb_ctx_fail(). */
typedef fxb_code (*fxb_unary_fn)(fxb_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage *resp);

/* Streaming handlers are event callbacks, so a stream never holds a worker
 * thread while it waits. All callbacks of one call run on the same worker
 * thread, one at a time. Any callback may be NULL where it cannot happen. */
typedef struct fxb_stream_ops {
    /* Server-streaming: called with the single request. Client-streaming and
     * bidi: called with req == NULL when the call starts. */
    fxb_next (*on_start)(fxb_ctx *ctx, const ProtobufCMessage *req);
    /* Client-streaming and bidi: one call per message received. msg lives in
     * a scratch arena reset after the callback returns: copy what you keep
     * into fxb_ctx_arena(). */
    fxb_next (*on_message)(fxb_ctx *ctx, const ProtobufCMessage *msg);
    /* The client finished sending. Client-streaming: fill *resp (initialised
     * like a unary response) and return FINISH. */
    fxb_next (*on_half_close)(fxb_ctx *ctx, ProtobufCMessage *resp);
    /* An event posted with fxb_ctx_post() arrived on this call's worker. */
    fxb_next (*on_event)(fxb_ctx *ctx, void *event);
    /* The outbound queue drained below its bound after fxb_ctx_send() reported
     * it full. */
    fxb_next (*on_writable)(fxb_ctx *ctx);
    /* The call ended (finished, cancelled by the client, deadline, shutdown).
     * Called exactly once; release what the handler registered elsewhere. */
    void (*on_end)(fxb_ctx *ctx, bool cancelled);
    /* Frees an event posted with fxb_ctx_post() that was never delivered
     * because the call ended first; may be NULL for events needing no free. */
    void (*free_event)(void *event);
} fxb_stream_ops;

/* Per-method limits. Zero means the server-wide default. */
typedef struct fxb_limits {
    size_t max_request_bytes; /* per received message */
    uint32_t max_messages;    /* streams: messages a client may send */
} fxb_limits;

typedef struct fxb_method {
    const char *path; /* "/fxb.v1.SystemService/GetInfo" */
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    fxb_rpc_kind kind;
    fxb_unary_fn unary;           /* FXB_RPC_UNARY */
    const fxb_stream_ops *stream; /* every other kind */
    fxb_access access;
    fxb_limits limits;
} fxb_method;

/* A service: a name (as in the proto, "fxb.v1.SystemService") and its
 * methods. Services are registered before the server starts. */
typedef struct fxb_service {
    const char *name;
    const fxb_method *methods;
    size_t n_methods;
} fxb_service;

/* --- what a handler may ask of its call ------------------------------- */

/* The caller, checked by the runtime against the method's access rule
 * before any handler callback runs. signed_in is false on public methods. */
const fxb_caller *fxb_ctx_caller(fxb_ctx *ctx);

/* The call's arena: lives until the call ends. */
fxb_arena *fxb_ctx_arena(fxb_ctx *ctx);

/* This worker's Redis connection (never NULL; commands fail with UNAVAILABLE
 * when Redis is down). */
fxb_store *fxb_ctx_store(fxb_ctx *ctx);

const fxb_config *fxb_ctx_config(fxb_ctx *ctx);
const fxb_method *fxb_ctx_method(fxb_ctx *ctx);

/* Milliseconds left before the client's deadline (0 if passed), or -1 when
 * the call has no deadline. */
int64_t fxb_ctx_remaining_ms(fxb_ctx *ctx);

/* True once the client cancelled (as far as the worker has seen), the
 * deadline passed, or the shutdown grace period ended: a long handler should
 * stop. */
bool fxb_ctx_cancelled(fxb_ctx *ctx);

/* True when the server is draining for shutdown. */
bool fxb_ctx_shutting_down(fxb_ctx *ctx);

/* Longest authorization header kept: "Bearer " + the longest token the
 * auth layer accepts, with room to spare. A longer first header reads as ""
 * (present, unusable). */
#define FXB_AUTHORIZATION_MAX 8320

/* Request metadata. authorization is the raw value of the first such header
 * (NULL if absent), for the auth layer only: never log it. */
const char *fxb_ctx_request_id(fxb_ctx *ctx);
const char *fxb_ctx_user_agent(fxb_ctx *ctx);
const char *fxb_ctx_authorization(fxb_ctx *ctx);
const char *fxb_ctx_peer(fxb_ctx *ctx);

/* For methods acting on a service item known only from stored data (an
 * application's item): FXB_OK for an ordinary caller; for a delegated one,
 * FXB_OK when the grant's scopes admit the item (item:<code>, or
 * category:<its catalogue category>), else the call fails with
 * PERMISSION_DENIED OUT_OF_SCOPE (returned). The item is recorded in the
 * grant's activity log. */
fxb_code fxb_ctx_require_item(fxb_ctx *ctx, const char *item_code);

/* Records the call's final error and returns its code. message is English
 * (printf format), message_zh what the app shows. */
fxb_code fxb_ctx_fail(fxb_ctx *ctx, fxb_code code, const char *reason, const char *message_zh,
                      const char *message_fmt, ...) __attribute__((format(printf, 5, 6)));

/* Records a prepared error; returns its code. */
fxb_code fxb_ctx_fail_err(fxb_ctx *ctx, const fxb_err *err);

/* Streams: queues a response message (packed at once, so msg may be freed or
 * reused after return). Returns FXB_OK, FXB_RESOURCE_EXHAUSTED when the
 * outbound queue is full (on_writable follows when it drains), or
 * FXB_CANCELLED when the call already ended. */
fxb_code fxb_ctx_send(fxb_ctx *ctx, const ProtobufCMessage *msg);

/* Number of messages queued and not yet written to the transport. */
size_t fxb_ctx_send_queued(fxb_ctx *ctx);

/* Reference counting for code that keeps a ctx beyond a callback (watch
 * lists). Thread-safe. */
void fxb_ctx_ref(fxb_ctx *ctx);
void fxb_ctx_unref(fxb_ctx *ctx);

/* From any thread: deliver event to the call's on_event on its worker.
 * Returns false (and frees nothing) when the call has already ended; the
 * caller keeps ownership of event in that case. */
bool fxb_ctx_post(fxb_ctx *ctx, void *event);

/* Handler-owned state for the call, allocated by the handler (usually from
 * the arena). */
void fxb_ctx_set_user(fxb_ctx *ctx, void *user);
void *fxb_ctx_user(fxb_ctx *ctx);

/* Timers for stream handlers: deliver event to on_event after ms
 * milliseconds on the call's worker (or free_event it if the call ends
 * first). Returns false when the call already ended (event not taken). */
bool fxb_ctx_after(fxb_ctx *ctx, int64_t ms, void *event);

/* Monotonic clock in microseconds. */
uint64_t fxb_now_us(void);
/* Wall clock, UTC epoch milliseconds (plus the development clock offset). */
int64_t fxb_wall_ms(void);

/* The development clock offset (DiagService/SetClockOffset only): every
 * fxb_wall_ms reading of the process is shifted by it. 0 in production. */
void fxb_clock_set_offset_ms(int64_t offset_ms);
int64_t fxb_clock_offset_ms(void);

#endif
