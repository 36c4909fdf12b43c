/* The single error vocabulary of fxb: gRPC status codes, and fxb_err, the
 * value every layer returns on failure. The runtime turns an fxb_err into a
 * gRPC status with google.rpc.Status details (ErrorInfo + zh-CN message). */
#ifndef FXB_STATUS_H
#define FXB_STATUS_H

#include <stddef.h>

/* Same numbers as grpc_status_code; services use these so that they never
 * include gRPC core headers. */
typedef enum fxb_code {
    FXB_OK = 0,
    FXB_CANCELLED = 1,
    FXB_UNKNOWN = 2,
    FXB_INVALID_ARGUMENT = 3,
    FXB_DEADLINE_EXCEEDED = 4,
    FXB_NOT_FOUND = 5,
    FXB_ALREADY_EXISTS = 6,
    FXB_PERMISSION_DENIED = 7,
    FXB_RESOURCE_EXHAUSTED = 8,
    FXB_FAILED_PRECONDITION = 9,
    FXB_ABORTED = 10,
    FXB_OUT_OF_RANGE = 11,
    FXB_UNIMPLEMENTED = 12,
    FXB_INTERNAL = 13,
    FXB_UNAVAILABLE = 14,
    FXB_DATA_LOSS = 15,
    FXB_UNAUTHENTICATED = 16,
} fxb_code;

#define FXB_ERR_REASON_MAX  64
#define FXB_ERR_MESSAGE_MAX 512

/* An error as a value. reason is a stable UPPER_SNAKE token for programs;
 * message is English for developers; message_zh is what the app shows.
 * retry_after_ms > 0 adds a google.rpc.RetryInfo. Fixed-size so that it can
 * live on the stack and be copied freely. */
typedef struct fxb_err {
    fxb_code code;
    long long retry_after_ms;
    char reason[FXB_ERR_REASON_MAX];
    char message[FXB_ERR_MESSAGE_MAX];
    char message_zh[FXB_ERR_MESSAGE_MAX];
} fxb_err;

/* Name of a code as gRPC spells it ("INVALID_ARGUMENT"); "UNKNOWN" for
 * values out of range. */
const char *fxb_code_name(int code);

/* Fills *err (if not NULL) and returns code, so a caller can write
 * `return fxb_err_set(err, FXB_NOT_FOUND, "ITEM_NOT_FOUND", "no item", "...")`.
 * message may be a printf format taking the trailing arguments; message_zh
 * is copied as is. Over-long text is truncated at a UTF-8 boundary. */
fxb_code fxb_err_set(fxb_err *err, fxb_code code, const char *reason, const char *message_zh,
                     const char *message_fmt, ...) __attribute__((format(printf, 5, 6)));

/* Resets to OK with empty text. */
void fxb_err_clear(fxb_err *err);

/* Copies src into dst (both may not be NULL). */
void fxb_err_copy(fxb_err *dst, const fxb_err *src);

/* Serializes err as a google.rpc.Status (code, message, details: ErrorInfo
 * with domain "fxb", LocalizedMessage zh-CN, RetryInfo when set) into a
 * malloc'd buffer the caller frees. Returns NULL on allocation failure. */
unsigned char *fxb_err_pack_details(const fxb_err *err, size_t *len);

/* Truncates a string in place to at most max bytes without splitting a UTF-8
 * sequence. */
void fxb_utf8_truncate(char *s, size_t max);

#endif
