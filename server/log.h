/* Structured logs: one JSON object per line on stderr. One line per RPC
 * (time, level, request id, method, status, duration in µs, peer). Never a
 * token, secret or personal datum: callers pass only what is safe, and
 * strings are JSON-escaped and length-capped here. */
#ifndef FXB_LOG_H
#define FXB_LOG_H

#include <stdint.h>

#include "config.h"

/* Sets the minimum level (thread-safe). */
void fxb_log_set_level(fxb_log_level level);
fxb_log_level fxb_log_get_level(void);

/* A free-form event: {"time":"...Z","level":"info","msg":"...",<kv...>}.
 * The message is a printf format; keep personal data out of it. */
void fxb_log(fxb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The per-RPC line. reason may be NULL (OK calls). */
void fxb_log_rpc(const char *request_id, const char *method, int code, const char *reason,
                 uint64_t duration_us, const char *peer);

#endif
