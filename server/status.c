/* fxb_err helpers and the google.rpc.Status encoding that travels in
 * grpc-status-details-bin, so every client library can decode our errors. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *fxb_code_name(int code)
{
    if (code < 0 || code > FXB_UNAUTHENTICATED)
        return "UNKNOWN";
    return code_names[code];
}

/* Ends s at byte len or earlier so that no UTF-8 sequence is split. */
static void utf8_cut(char *s, size_t len)
{
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i > 0) {
        unsigned char lead = (unsigned char)s[i - 1];
        if (lead >= 0xC0) {
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (len - (i - 1) < need)
                len = i - 1;
        }
    }
    s[len] = '\0';
}

void fxb_utf8_truncate(char *s, size_t max)
{
    if (strlen(s) > max)
        utf8_cut(s, max);
}

static void copy_text(char *dst, size_t cap, const char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    size_t len = strlen(src);
    if (len >= cap) {
        memcpy(dst, src, cap - 1);
        utf8_cut(dst, cap - 1);
        return;
    }
    memcpy(dst, src, len + 1);
}

fxb_code fxb_err_set(fxb_err *err, fxb_code code, const char *reason, const char *message_zh,
                     const char *message_fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    err->retry_after_ms = 0;
    copy_text(err->reason, sizeof err->reason, reason);
    copy_text(err->message_zh, sizeof err->message_zh, message_zh);
    char buf[FXB_ERR_MESSAGE_MAX * 2];
    va_list ap;
    va_start(ap, message_fmt);
    vsnprintf(buf, sizeof buf, message_fmt ? message_fmt : "", ap);
    va_end(ap);
    copy_text(err->message, sizeof err->message, buf);
    return code;
}

void fxb_err_clear(fxb_err *err)
{
    memset(err, 0, sizeof *err);
}

void fxb_err_copy(fxb_err *dst, const fxb_err *src)
{
    memcpy(dst, src, sizeof *dst);
}

static unsigned char *pack_any(const ProtobufCMessage *m, const char *type,
                               Google__Protobuf__Any *any)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    unsigned char *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(m, buf);
    google__protobuf__any__init(any);
    any->type_url = (char *)type;
    any->value.data = buf;
    any->value.len = n;
    return buf;
}

unsigned char *fxb_err_pack_details(const fxb_err *err, size_t *len)
{
    Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
    info.reason = (char *)(err->reason[0] ? err->reason : fxb_code_name(err->code));
    info.domain = "fxb";
    Google__Rpc__LocalizedMessage loc = GOOGLE__RPC__LOCALIZED_MESSAGE__INIT;
    loc.locale = "zh-CN";
    loc.message = (char *)err->message_zh;
    Google__Protobuf__Duration delay = GOOGLE__PROTOBUF__DURATION__INIT;
    Google__Rpc__RetryInfo retry = GOOGLE__RPC__RETRY_INFO__INIT;

    Google__Protobuf__Any anys[3];
    Google__Protobuf__Any *anyp[3];
    unsigned char *bufs[3] = {NULL, NULL, NULL};
    size_t n = 0;
    bufs[n] = pack_any(&info.base, "type.googleapis.com/google.rpc.ErrorInfo", &anys[n]);
    if (bufs[n] == NULL)
        goto fail;
    n++;
    if (err->message_zh[0]) {
        bufs[n] = pack_any(&loc.base, "type.googleapis.com/google.rpc.LocalizedMessage", &anys[n]);
        if (bufs[n] == NULL)
            goto fail;
        n++;
    }
    if (err->retry_after_ms > 0) {
        delay.seconds = err->retry_after_ms / 1000;
        delay.nanos = (int32_t)((err->retry_after_ms % 1000) * 1000000);
        retry.retry_delay = &delay;
        bufs[n] = pack_any(&retry.base, "type.googleapis.com/google.rpc.RetryInfo", &anys[n]);
        if (bufs[n] == NULL)
            goto fail;
        n++;
    }
    for (size_t i = 0; i < n; i++)
        anyp[i] = &anys[i];

    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = (int32_t)err->code;
    st.message = (char *)err->message;
    st.n_details = n;
    st.details = anyp;
    size_t total = google__rpc__status__get_packed_size(&st);
    unsigned char *out = malloc(total ? total : 1);
    if (out != NULL) {
        google__rpc__status__pack(&st, out);
        *len = total;
    }
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    return out;
fail:
    for (size_t i = 0; i < 3; i++)
        free(bufs[i]);
    return NULL;
}
