/* fxb_store: one Redis connection (hiredis, synchronous), owned by one
 * thread. Connect and command timeouts; when Redis is unreachable commands
 * fail fast with FXB_UNAVAILABLE and the connection is retried with
 * exponential backoff on later commands, so the server keeps running and
 * recovers by itself when Redis returns. */
#ifndef FXB_STORE_H
#define FXB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

#include "server/status.h"

#define FXB_STORE_URL_MAX 512

typedef struct fxb_store_url {
    bool is_unix;
    char host[256]; /* tcp host, or the socket path when is_unix */
    int port;       /* tcp only */
    int db;         /* 0..15 */
} fxb_store_url;

/* Parses "redis://host:port/db" (port default 6379, db default 0) or
 * "unix:///path/to/sock" (optionally "?db=N"). Returns FXB_OK or
 * FXB_INVALID_ARGUMENT with a message naming what is wrong. */
fxb_code fxb_store_url_parse(const char *url, fxb_store_url *out, fxb_err *err);

typedef struct fxb_store_options {
    const char *url;
    int connect_timeout_ms; /* default 1000 */
    int command_timeout_ms; /* default 2000 */
    int backoff_min_ms;     /* default 50 */
    int backoff_max_ms;     /* default 2000 */
} fxb_store_options;

typedef struct fxb_store fxb_store;

/* Creates a store; tries to connect once but succeeds even when Redis is
 * down (later commands reconnect). Returns NULL only for a bad URL or out of
 * memory, with *err filled. Free with fxb_store_free. */
fxb_store *fxb_store_new(const fxb_store_options *opt, fxb_err *err);
void fxb_store_free(fxb_store *s);

/* Runs one command (hiredis printf-style format). Returns the reply, which
 * the caller frees with freeReplyObject, or NULL with *err set:
 * FXB_UNAVAILABLE (reason STORE_UNAVAILABLE) when Redis cannot be reached or
 * the connection broke, FXB_INTERNAL (reason STORE_ERROR) when Redis answered
 * with an error reply. */
redisReply *fxb_store_command(fxb_store *s, fxb_err *err, const char *fmt, ...);

/* Same with an argument vector (binary safe). */
redisReply *fxb_store_commandv(fxb_store *s, fxb_err *err, int argc, const char **argv,
                               const size_t *argvlen);

/* Pipelining: append n commands then read n replies. fxb_store_pipeline runs
 * cmds[i] (argc/argv/argvlen) and stores each reply in replies[i] (caller
 * frees each). On a connection failure all replies are NULL and *err is set.
 * An error reply of one command is returned as a reply of type
 * REDIS_REPLY_ERROR, not as a failure. */
typedef struct fxb_store_cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
} fxb_store_cmd;
fxb_code fxb_store_pipeline(fxb_store *s, fxb_err *err, size_t n, const fxb_store_cmd *cmds,
                            redisReply **replies);

/* Sends n commands and returns once they are written to Redis, without
 * waiting for their replies: for writes whose outcome the call does not
 * need (an activity log entry), saving a round trip. The replies are read
 * before the next command on this connection (or by fxb_store_drain); an
 * error reply or a lost connection then only counts in
 * fxb_store_error_count. FXB_OK once written; UNAVAILABLE (nothing or only
 * part sent: the connection is dropped) otherwise. */
fxb_code fxb_store_send(fxb_store *s, fxb_err *err, size_t n, const fxb_store_cmd *cmds);

/* Reads the replies of fxb_store_send commands still pending. */
void fxb_store_drain(fxb_store *s);

/* A Lua script known to the server. Declare them static; the SHA-1 is
 * computed on first use (thread-safe). */
typedef struct fxb_script {
    const char *name;   /* for logs and errors */
    const char *source; /* Lua */
    char sha[41];       /* filled lazily */
    int sha_state;      /* internal: 0 = not computed, 2 = ready */
} fxb_script;
#define FXB_SCRIPT(n, src)                                                                         \
    {                                                                                              \
        .name = (n), .source = (src)                                                               \
    }

/* Longest piece of a Redis error text copied into an fxb_err message. */
#define FXB_STORE_ERROR_TEXT_MAX 200

/* EVALSHA with NOSCRIPT fallback to EVAL (which also loads it). All keys
 * must be in keys[] so that Redis Cluster can route the script. Returns a
 * reply like fxb_store_command. arglens may be NULL (args are C strings).
 *
 * Business errors from scripts: a script that ends with
 *     return redis.error_reply("FXB <code> <REASON> <message>")
 * e.g. "FXB 10 VERSION_CONFLICT stale write", makes this return NULL with
 * err->code = <code> (decimal fxb_code, 1..16), err->reason = <REASON>
 * (A-Z, 0-9, _; starts with a letter; < FXB_ERR_REASON_MAX), err->message =
 * <message> (English, optional; defaults to the reason) and a generic
 * message_zh for the code that callers may replace. error({err = "FXB ..."})
 * works too (Redis 7 appends " script: <sha>, on @user_script:N." to those,
 * which is cut). Never put personal data in the text. These outcomes are not
 * counted in fxb_store_error_count. Any other script error is FXB_INTERNAL
 * reason STORE_ERROR with the first FXB_STORE_ERROR_TEXT_MAX bytes of the
 * Redis text in the message. */
redisReply *fxb_store_eval(fxb_store *s, fxb_err *err, fxb_script *script, int nkeys,
                           const char **keys, int nargs, const char **args, const size_t *arglens);

/* fxb_store_eval with n_extra more commands in the same round trip, after
 * the script (a read the caller needs next, saving a round trip):
 * extra_replies[i] receives each one's reply (the caller frees them; an
 * error reply is a reply), or NULL when they could not run (a lost
 * connection). When the script is
 * not cached (NOSCRIPT) the extras have already run when it runs by EVAL:
 * use this for extras whose result does not depend on the script (reads of
 * other keys). */
redisReply *fxb_store_eval_with(fxb_store *s, fxb_err *err, fxb_script *script, int nkeys,
                                const char **keys, int nargs, const char **args,
                                const size_t *arglens, size_t n_extra, const fxb_store_cmd *extra,
                                redisReply **extra_replies);

/* The value of field in an HGETALL reply (an array of field, value, ...),
 * or NULL when the field is absent, its value is not a string, or kv is
 * NULL / not an array. */
const char *fxb_store_hash_get(const redisReply *kv, const char *field);

/* The same read as a decimal integer; 0 when absent. */
int64_t fxb_store_hash_int(const redisReply *kv, const char *field);

/* PING with the command timeout. True when Redis answered PONG. */
bool fxb_store_ping(fxb_store *s);

/* True when the connection is currently established. */
bool fxb_store_connected(const fxb_store *s);

/* Process-wide count of Redis errors (connection failures, timeouts, error
 * replies), for metrics. */
uint64_t fxb_store_error_count(void);

#endif
