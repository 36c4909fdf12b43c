/* fxb.v1.DiagService: one method of each RPC kind, for proving the runtime
 * (deadlines, cancellation, streaming, back-pressure, shutdown). Registered
 * only when FXB_DIAG=1, which the config refuses in production. */
#ifndef FXB_DIAG_H
#define FXB_DIAG_H

#include "server/handler.h"

#define FXB_DIAG_MAX_SLEEP_MS    30000u
#define FXB_DIAG_MAX_TICKS       10000u
#define FXB_DIAG_MAX_INTERVAL_MS 60000u
#define FXB_DIAG_MAX_PARTS       10000u
#define FXB_DIAG_MAX_JOINED      (1024u * 1024u)

extern const fxb_service fxb_diag_service;

#endif
