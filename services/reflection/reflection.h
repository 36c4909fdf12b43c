/* grpc.reflection.v1alpha.ServerReflection: lets grpcurl, Postman and other
 * tools discover our services and download their descriptors at run time.
 * Served from the FileDescriptorSet embedded at build time; the answer to
 * each request is a pure function so that it is testable without a server. */
#ifndef FXB_REFLECTION_H
#define FXB_REFLECTION_H

#include <stddef.h>

#include "server/handler.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"

/* Bounds on what a client may ask and on what the runtime registers. */
#define FXB_REFLECTION_NAME_MAX     1024u /* bytes of a symbol, file or type name */
#define FXB_REFLECTION_SERVICES_MAX 256u  /* services passed to init */

/* One bidi method, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo". */
extern const fxb_service fxb_reflection_service;

/* Indexes the embedded descriptor set and records the names of the services
 * the server actually registered (what list_services answers, sorted, each
 * once). Every name must be a service in the descriptor set: a server cannot
 * advertise what it cannot describe. Call once before the server starts
 * (not thread-safe); everything after is read-only. Returns FXB_OK, or a code
 * with *err filled: INVALID_ARGUMENT (bad list or descriptor set),
 * FAILED_PRECONDITION (already initialised, or a name not described),
 * RESOURCE_EXHAUSTED (out of memory). On failure nothing is kept. */
fxb_code fxb_reflection_init(const char *const *service_names, size_t n, fxb_err *err);

/* Frees what init built. Call after the last call has ended. Idempotent. */
void fxb_reflection_shutdown(void);

/* Answers one request into *resp (initialised here), allocating from a:
 * valid_host and original_request echo the request (resp points into *req,
 * so req must outlive resp), and exactly one of the response fields is set.
 * A request the spec answers with an error gives an error_response with
 * error_code NOT_FOUND or INVALID_ARGUMENT and still returns FXB_OK. Returns
 * FXB_RESOURCE_EXHAUSTED when a is full, FXB_FAILED_PRECONDITION before
 * fxb_reflection_init. The file bytes in the response are owned by the
 * module and stay valid until fxb_reflection_shutdown. */
fxb_code fxb_reflection_answer(fxb_arena *a,
                               const Grpc__Reflection__V1alpha__ServerReflectionRequest *req,
                               Grpc__Reflection__V1alpha__ServerReflectionResponse *resp);

#endif
