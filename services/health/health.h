/* grpc.health.v1.Health: SERVING while the store answers and the server is
 * not shutting down, NOT_SERVING otherwise. Check and Watch, per
 * https://github.com/grpc/grpc/blob/master/doc/health-checking.md. */
#ifndef FXB_HEALTH_H
#define FXB_HEALTH_H

#include <stdbool.h>

#include "server/handler.h"

extern const fxb_service fxb_health_service;

/* The service names Check/Watch know ("" means the whole server); copied.
 * Returns FXB_OK or FXB_RESOURCE_EXHAUSTED. Starts NOT_SERVING. */
fxb_code fxb_health_init(const char *const *names, size_t n);

/* Called by the store monitor; wakes every watcher when the status changes.
 * Ignored after fxb_health_shutdown. Thread-safe. */
void fxb_health_set_serving(bool serving);
bool fxb_health_serving(void);

/* NOT_SERVING for good: every watcher gets NOT_SERVING and its stream ends
 * with UNAVAILABLE. Thread-safe. */
void fxb_health_shutdown(void);

/* Releases the name list (after the server stopped). */
void fxb_health_cleanup(void);

#endif
