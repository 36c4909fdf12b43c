/* fxb.v1.SystemService: server version, schema version and server time. */
#ifndef FXB_SYSTEM_H
#define FXB_SYSTEM_H

#include "server/handler.h"

extern const fxb_service fxb_system_service;

#endif
