/* Server reflection (v1alpha, what grpcurl and grpc_cli speak). The module
 * owns one read-only index of the embedded descriptor set and the sorted
 * list of registered services, both built by fxb_reflection_init before the
 * server starts; after that every worker reads them without locks. Each
 * request is answered at once, as the spec's one-response-per-request
 * protocol wants; the request logic (fxb_reflection_answer) is kept apart
 * from the stream callbacks so that it is testable without a runtime. */
#include "reflection.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "descindex.h"

extern const unsigned char fxb_descriptor_set[];
extern const size_t fxb_descriptor_set_len;

/* One response needs a few pointers per file of the set: 1 MiB is plenty
 * and bounds what a single request can make us allocate. */
#define REFL_ANSWER_ARENA_LIMIT (1024u * 1024u)

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest refl_request;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse refl_response;

/* The module state: written only by init/shutdown. */
static struct {
    fxb_descindex *index;
    char **services; /* sorted, unique */
    size_t n_services;
} g_refl;

/* --- init ---------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

static void free_services(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

fxb_code fxb_reflection_init(const char *const *service_names, size_t n, fxb_err *err)
{
    if (g_refl.index != NULL)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "REFLECTION_ALREADY_INITIALISED",
                           "服务器内部错误", "fxb_reflection_init called twice");
    if (n > FXB_REFLECTION_SERVICES_MAX || (n > 0 && service_names == NULL))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "REFLECTION_BAD_SERVICE_LIST",
                           "服务器内部错误", "service list NULL or longer than %u",
                           FXB_REFLECTION_SERVICES_MAX);

    fxb_descindex *ix =
        fxb_descindex_new((const uint8_t *)fxb_descriptor_set, fxb_descriptor_set_len, err);
    if (ix == NULL)
        return err ? err->code : FXB_INVALID_ARGUMENT;

    char **names = calloc(n ? n : 1, sizeof *names);
    if (names == NULL) {
        fxb_descindex_free(ix);
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "REFLECTION_OOM", "服务器内存不足",
                           "out of memory in fxb_reflection_init");
    }
    fxb_code rc = FXB_OK;
    size_t kept = 0;
    for (size_t i = 0; i < n && rc == FXB_OK; i++) {
        const char *name = service_names[i];
        fxb_symbol_kind kind;
        if (name == NULL || name[0] == '\0' || name[0] == '.' ||
            strlen(name) > FXB_REFLECTION_NAME_MAX) {
            rc = fxb_err_set(err, FXB_INVALID_ARGUMENT, "REFLECTION_BAD_SERVICE_LIST",
                             "服务器内部错误", "service name %zu is empty, dotted or too long", i);
        } else if (fxb_descindex_find_symbol(ix, name, &kind) == FXB_DESCINDEX_NONE ||
                   kind != FXB_SYMBOL_SERVICE) {
            rc = fxb_err_set(err, FXB_FAILED_PRECONDITION, "REFLECTION_SERVICE_NOT_DESCRIBED",
                             "服务器内部错误",
                             "service %s is not in the embedded descriptor set (add its proto "
                             "under proto/)",
                             name);
        } else if ((names[kept] = strdup(name)) == NULL) {
            rc = fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "REFLECTION_OOM", "服务器内存不足",
                             "out of memory in fxb_reflection_init");
        } else {
            kept++;
        }
    }
    if (rc != FXB_OK) {
        free_services(names, kept);
        fxb_descindex_free(ix);
        return rc;
    }

    qsort(names, kept, sizeof *names, cmp_str);
    size_t unique = 0;
    for (size_t i = 0; i < kept; i++) {
        if (unique > 0 && strcmp(names[unique - 1], names[i]) == 0)
            free(names[i]);
        else
            names[unique++] = names[i];
    }
    g_refl.index = ix;
    g_refl.services = names;
    g_refl.n_services = unique;
    return FXB_OK;
}

void fxb_reflection_shutdown(void)
{
    fxb_descindex_free(g_refl.index);
    free_services(g_refl.services, g_refl.n_services);
    g_refl.index = NULL;
    g_refl.services = NULL;
    g_refl.n_services = 0;
}

/* --- answering ----------------------------------------------------------- */

/* Strict UTF-8: no overlong forms, surrogates or values past U+10FFFF. */
static bool utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned char c = *s;
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        s++;
        for (size_t i = 0; i < n; i++, s++) {
            if (*s < lo || *s > hi)
                return false;
            lo = 0x80;
            hi = 0xBF;
        }
    }
    return true;
}

static fxb_code set_error(fxb_arena *a, refl_response *resp, fxb_code code, const char *message)
{
    Grpc__Reflection__V1alpha__ErrorResponse *e = fxb_arena_alloc(a, sizeof *e);
    if (e == NULL)
        return FXB_RESOURCE_EXHAUSTED;
    grpc__reflection__v1alpha__error_response__init(e);
    e->error_code = (int32_t)code;
    e->error_message = (char *)message;
    resp->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp->error_response = e;
    return FXB_OK;
}

/* A name from the request is usable when it is set and bounded; otherwise
 * answers INVALID_ARGUMENT and returns false (*rc tells whether that answer
 * could be built). */
static bool check_name(fxb_arena *a, refl_response *resp, const char *name, const char *what,
                       fxb_code *rc)
{
    const char *msg = NULL;
    if (name == NULL || name[0] == '\0')
        msg = fxb_arena_printf(a, "%s is empty", what);
    else if (strnlen(name, FXB_REFLECTION_NAME_MAX + 1) > FXB_REFLECTION_NAME_MAX)
        msg = fxb_arena_printf(a, "%s is longer than %u bytes", what, FXB_REFLECTION_NAME_MAX);
    else
        return true;
    *rc = msg ? set_error(a, resp, FXB_INVALID_ARGUMENT, msg) : FXB_RESOURCE_EXHAUSTED;
    return false;
}

/* The string the request carries in its oneof, NULL when none. */
static const char *request_text(const refl_request *req)
{
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        return req->list_services;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        return req->file_by_filename;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        return req->file_containing_symbol;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        return req->file_containing_extension ? req->file_containing_extension->containing_type
                                              : NULL;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        return req->all_extension_numbers_of_type;
    default:
        return NULL;
    }
}

static fxb_code answer_files(fxb_arena *a, refl_response *resp, size_t file)
{
    size_t n_files = fxb_descindex_file_count(g_refl.index);
    size_t *order = fxb_arena_calloc(a, n_files, sizeof *order);
    Grpc__Reflection__V1alpha__FileDescriptorResponse *fr = fxb_arena_alloc(a, sizeof *fr);
    ProtobufCBinaryData *blobs = fxb_arena_calloc(a, n_files, sizeof *blobs);
    if (order == NULL || fr == NULL || blobs == NULL)
        return FXB_RESOURCE_EXHAUSTED;
    size_t n = fxb_descindex_closure(g_refl.index, file, order, n_files);
    for (size_t i = 0; i < n; i++) {
        const fxb_descfile *f = fxb_descindex_file(g_refl.index, order[i]);
        /* protobuf-c's bytes type is not const; the response is only packed. */
        blobs[i].data = (uint8_t *)f->data;
        blobs[i].len = f->len;
    }
    grpc__reflection__v1alpha__file_descriptor_response__init(fr);
    fr->n_file_descriptor_proto = n;
    fr->file_descriptor_proto = blobs;
    resp->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp->file_descriptor_response = fr;
    return FXB_OK;
}

static fxb_code answer_list_services(fxb_arena *a, refl_response *resp)
{
    size_t n = g_refl.n_services;
    Grpc__Reflection__V1alpha__ListServiceResponse *lr = fxb_arena_alloc(a, sizeof *lr);
    Grpc__Reflection__V1alpha__ServiceResponse **ptrs = fxb_arena_calloc(a, n, sizeof *ptrs);
    Grpc__Reflection__V1alpha__ServiceResponse *items = fxb_arena_calloc(a, n, sizeof *items);
    if (lr == NULL || ptrs == NULL || items == NULL)
        return FXB_RESOURCE_EXHAUSTED;
    for (size_t i = 0; i < n; i++) {
        grpc__reflection__v1alpha__service_response__init(&items[i]);
        items[i].name = g_refl.services[i];
        ptrs[i] = &items[i];
    }
    grpc__reflection__v1alpha__list_service_response__init(lr);
    lr->n_service = n;
    lr->service = ptrs;
    resp->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp->list_services_response = lr;
    return FXB_OK;
}

static fxb_code answer_extension_numbers(fxb_arena *a, refl_response *resp, const char *type)
{
    fxb_symbol_kind kind;
    if (fxb_descindex_find_symbol(g_refl.index, type, &kind) == FXB_DESCINDEX_NONE ||
        kind != FXB_SYMBOL_MESSAGE)
        return set_error(a, resp, FXB_NOT_FOUND, "type not found");
    size_t n = fxb_descindex_extension_numbers(g_refl.index, type, NULL, 0);
    Grpc__Reflection__V1alpha__ExtensionNumberResponse *er = fxb_arena_alloc(a, sizeof *er);
    int32_t *numbers = fxb_arena_calloc(a, n, sizeof *numbers);
    char *base = fxb_arena_strdup(a, type[0] == '.' ? type + 1 : type);
    if (er == NULL || numbers == NULL || base == NULL)
        return FXB_RESOURCE_EXHAUSTED;
    fxb_descindex_extension_numbers(g_refl.index, type, numbers, n);
    grpc__reflection__v1alpha__extension_number_response__init(er);
    er->base_type_name = base;
    er->n_extension_number = n;
    er->extension_number = numbers;
    resp->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
    resp->all_extension_numbers_response = er;
    return FXB_OK;
}

fxb_code fxb_reflection_answer(fxb_arena *a, const refl_request *req, refl_response *resp)
{
    grpc__reflection__v1alpha__server_reflection_response__init(resp);
    if (g_refl.index == NULL)
        return FXB_FAILED_PRECONDITION;
    if (req == NULL)
        return set_error(a, resp, FXB_INVALID_ARGUMENT, "empty request");

    fxb_code rc = FXB_OK;
    /* protobuf-c does not check proto3 strings when unpacking; echoing
     * invalid UTF-8 would break the client's parser, so refuse it first. */
    const char *text = request_text(req);
    if ((req->host != NULL && !utf8_valid(req->host)) || (text != NULL && !utf8_valid(text)))
        return set_error(a, resp, FXB_INVALID_ARGUMENT, "request text is not valid UTF-8");
    resp->valid_host = req->host;
    /* protobuf-c message fields are not const; the response is only packed. */
    resp->original_request = (refl_request *)req;

    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        return answer_list_services(a, resp);

    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME: {
        const char *name = req->file_by_filename;
        if (!check_name(a, resp, name, "file name", &rc))
            return rc;
        size_t file = fxb_descindex_find_file(g_refl.index, name);
        if (file == FXB_DESCINDEX_NONE)
            return set_error(a, resp, FXB_NOT_FOUND, "file not found");
        return answer_files(a, resp, file);
    }

    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: {
        const char *symbol = req->file_containing_symbol;
        if (!check_name(a, resp, symbol, "symbol", &rc))
            return rc;
        size_t file = fxb_descindex_find_symbol(g_refl.index, symbol, NULL);
        if (file == FXB_DESCINDEX_NONE)
            return set_error(a, resp, FXB_NOT_FOUND, "symbol not found");
        return answer_files(a, resp, file);
    }

    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION: {
        const Grpc__Reflection__V1alpha__ExtensionRequest *ext = req->file_containing_extension;
        if (ext == NULL)
            return set_error(a, resp, FXB_INVALID_ARGUMENT, "extension request is empty");
        if (!check_name(a, resp, ext->containing_type, "containing type", &rc))
            return rc;
        size_t file =
            fxb_descindex_find_extension(g_refl.index, ext->containing_type, ext->extension_number);
        if (file == FXB_DESCINDEX_NONE)
            return set_error(a, resp, FXB_NOT_FOUND, "extension not found");
        return answer_files(a, resp, file);
    }

    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
        const char *type = req->all_extension_numbers_of_type;
        if (!check_name(a, resp, type, "type name", &rc))
            return rc;
        return answer_extension_numbers(a, resp, type);
    }

    default:
        return set_error(a, resp, FXB_INVALID_ARGUMENT, "request names no query");
    }
}

/* --- the stream ---------------------------------------------------------- */

static fxb_next refl_on_start(fxb_ctx *ctx, const ProtobufCMessage *req)
{
    return FXB_NEXT_CONTINUE;
}

/* Each message is answered with its own small arena, freed before returning:
 * the call arena lives as long as the stream, which a tool may keep open for
 * many requests, and fxb_ctx_send has packed the response by then. */
static fxb_next refl_on_message(fxb_ctx *ctx, const ProtobufCMessage *msg)
{
    if (msg == NULL ||
        msg->descriptor != &grpc__reflection__v1alpha__server_reflection_request__descriptor) {
        fxb_ctx_fail(ctx, FXB_INTERNAL, "REFLECTION_BAD_MESSAGE", "服务器内部错误",
                     "reflection received a message of the wrong type");
        return FXB_NEXT_FINISH;
    }
    fxb_arena a;
    fxb_arena_init(&a, REFL_ANSWER_ARENA_LIMIT);
    refl_response resp;
    fxb_code rc = fxb_reflection_answer(&a, (const refl_request *)msg, &resp);
    if (rc == FXB_OK)
        rc = fxb_ctx_send(ctx, &resp.base);
    fxb_arena_free(&a);

    switch (rc) {
    case FXB_OK:
        return FXB_NEXT_CONTINUE;
    case FXB_CANCELLED: /* the call is over; nothing left to tell the client */
        return FXB_NEXT_FINISH;
    case FXB_RESOURCE_EXHAUSTED:
        /* One answer per request and a full outbound queue: the client sends
         * without reading. Ending the call bounds what it can make us hold. */
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "REFLECTION_CLIENT_NOT_READING",
                     "请求过于频繁，请稍后重试",
                     "reflection client sends requests without reading the answers");
        return FXB_NEXT_FINISH;
    case FXB_FAILED_PRECONDITION:
        fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "REFLECTION_NOT_READY", "服务暂不可用",
                     "server reflection is not initialised");
        return FXB_NEXT_FINISH;
    default:
        fxb_ctx_fail(ctx, FXB_INTERNAL, "REFLECTION_FAILED", "服务器内部错误",
                     "server reflection failed: %s", fxb_code_name(rc));
        return FXB_NEXT_FINISH;
    }
}

static fxb_next refl_on_half_close(fxb_ctx *ctx, ProtobufCMessage *resp)
{
    return FXB_NEXT_FINISH;
}

/* Never reached in practice (a full queue ends the call), but harmless. */
static fxb_next refl_on_writable(fxb_ctx *ctx)
{
    return FXB_NEXT_CONTINUE;
}

/* Nothing is registered outside the call. */
static void refl_on_end(fxb_ctx *ctx, bool cancelled) {}

static const fxb_stream_ops refl_stream_ops = {
    .on_start = refl_on_start,
    .on_message = refl_on_message,
    .on_half_close = refl_on_half_close,
    .on_writable = refl_on_writable,
    .on_end = refl_on_end,
};

static const fxb_method refl_methods[] = {
    {
        .path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        .request = &grpc__reflection__v1alpha__server_reflection_request__descriptor,
        .response = &grpc__reflection__v1alpha__server_reflection_response__descriptor,
        .kind = FXB_RPC_BIDI,
        .stream = &refl_stream_ops,
        .access = {.kind = FXB_ACCESS_PUBLIC},
        /* A request is a name of at most FXB_REFLECTION_NAME_MAX plus a host;
         * names somewhat over the bound still get an in-band error. */
        .limits = {.max_request_bytes = 64u * 1024u},
    },
};

const fxb_service fxb_reflection_service = {
    .name = "grpc.reflection.v1alpha.ServerReflection",
    .methods = refl_methods,
    .n_methods = sizeof refl_methods / sizeof refl_methods[0],
};
