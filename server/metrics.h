/* Prometheus text exposition (version 0.0.4) of fxb's RPC metrics, served by
 * libmicrohttpd on its own listener (default 127.0.0.1:9464, GET /metrics).
 * Recording is lock-free (atomics) so workers never contend on it. */
#ifndef FXB_METRICS_H
#define FXB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define FXB_METRICS_MAX_METHODS 512

/* Registers the method paths (copied) before any recording; index i of this
 * list is the method index used by fxb_metrics_observe. Index n_methods is
 * reserved for calls to unknown methods (label method="unknown"). Returns
 * FXB_OK, or FXB_INVALID_ARGUMENT when n > FXB_METRICS_MAX_METHODS. Call once;
 * fxb_metrics_shutdown releases it. */
fxb_code fxb_metrics_init(size_t n_methods, const char *const *paths);
void fxb_metrics_shutdown(void);

/* One finished RPC: method index (or n_methods for unknown), gRPC status
 * code, duration in microseconds. Thread-safe, allocation-free. */
void fxb_metrics_observe(size_t method, int code, uint64_t duration_us);

/* In-flight calls gauge. */
void fxb_metrics_inflight_add(int delta);

/* Source of the Redis error counter (fxb_store_error_count), read at render
 * time. */
void fxb_metrics_set_redis_errors_source(uint64_t (*fn)(void));

/* Renders the exposition into a malloc'd NUL-terminated buffer (caller
 * frees); NULL on allocation failure. Metric names:
 *   fxb_rpc_total{method,code}            counter
 *   fxb_rpc_duration_seconds{method}      histogram (buckets 100us..10s)
 *   fxb_rpc_in_flight                     gauge
 *   fxb_redis_errors_total                counter
 * code is the status name ("OK", "NOT_FOUND"); only nonzero fxb_rpc_total
 * series and only methods with observations in the histogram are listed. */
char *fxb_metrics_render(size_t *len);

/* Starts the HTTP listener on "host:port" (IPv4 or [IPv6]). Returns FXB_OK or
 * FXB_UNAVAILABLE / FXB_INVALID_ARGUMENT with a message. Serves only GET
 * /metrics (404 otherwise, 405 for other methods). The host must be a numeric
 * address or "localhost" (= 127.0.0.1); "off" starts nothing and returns
 * FXB_OK; a second call while listening is FXB_FAILED_PRECONDITION.
 * fxb_metrics_stop joins the HTTP thread and closes the socket. */
fxb_code fxb_metrics_listen(const char *hostport, fxb_err *err);
void fxb_metrics_stop(void);

#endif
