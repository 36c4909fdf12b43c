/* Structured logs: one JSON object per line on stderr. One line per RPC
 * (time, level, request id, method, status, duration in µs, peer). Never a
 * token, secret or personal datum: callers pass only what is safe, and
 * strings are JSON-escaped and length-capped here. */
#ifndef FXB_LOG_H
#define FXB_LOG_H

#include <stdint.h>

#include "config.h"

/* A line is written with one write(2) of at most FXB_LOG_LINE_MAX bytes
 * (<= PIPE_BUF, so lines from threads never interleave on a pipe). Each string
 * value is capped at FXB_LOG_FIELD_MAX bytes as written (escaped); a line
 * with a capped value carries "truncated":true. */
#define FXB_LOG_LINE_MAX  4096
#define FXB_LOG_FIELD_MAX 256

/* Sets the minimum level (thread-safe). */
void fxb_log_set_level(fxb_log_level level);
fxb_log_level fxb_log_get_level(void);

/* Sets the file descriptor lines are written to (default 2, stderr); for
 * tests. The descriptor stays owned by the caller. */
void fxb_log_set_fd(int fd);

/* A free-form event: {"time":"...Z","level":"info","msg":"...",<kv...>}.
 * The message is a printf format; keep personal data out of it. */
void fxb_log(fxb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The per-RPC line: {"time","level","msg":"rpc","request_id","method","code",
 * "status","reason" (only when non-empty),"duration_us","peer"}. Level is
 * "warn" for server-side faults (UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS)
 * and "info" otherwise, so that the level filter applies to RPC lines too.
 * reason may be NULL (OK calls); NULL strings are written as "". */
void fxb_log_rpc(const char *request_id, const char *method, int code, const char *reason,
                 uint64_t duration_us, const char *peer);

#endif
