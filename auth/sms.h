/* Sending text messages. fxb_sms_sender is an interface (a vtable) so that
 * the development sink below and the production HTTP gateway adaptor are
 * interchangeable; callers only use fxb_sms_send / fxb_sms_free. A sender is
 * shared by all worker threads: implementations must be thread-safe. */
#ifndef FXB_SMS_H
#define FXB_SMS_H

#include <stdbool.h>
#include <stddef.h>

#include "server/status.h"
#include "store/store.h"

/* Longest text accepted, in bytes: a long SMS is at most a few concatenated
 * segments of 70 characters (3 bytes each in UTF-8). */
#define FXB_SMS_TEXT_MAX 600

/* The development sink's stream, its approximate length cap, and its
 * fields: phone (bare 11 digits), text, at_ms (UTC epoch ms). */
#define FXB_SMS_DEV_STREAM "fxb:dev:sms"
#define FXB_SMS_DEV_MAXLEN 1000

/* fxb_err reasons. */
#define FXB_SMS_DEV_IN_PRODUCTION "SMS_DEV_IN_PRODUCTION" /* FAILED_PRECONDITION */
#define FXB_SMS_TEXT_INVALID      "SMS_TEXT_INVALID"      /* INVALID_ARGUMENT */
#define FXB_SMS_SEND_FAILED       "SMS_SEND_FAILED"       /* UNAVAILABLE */

typedef struct fxb_sms_sender fxb_sms_sender;

typedef struct fxb_sms_sender_ops {
    const char *name; /* "dev", "http", ...: for logs and metrics */
    /* Sends text to phone (bare, already validated by fxb_sms_send).
     * Returns FXB_OK or an error in *err; never logs phone or text. */
    fxb_code (*send)(fxb_sms_sender *self, const char *phone, const char *text, fxb_err *err);
    /* Releases self and everything it owns. */
    void (*free)(fxb_sms_sender *self);
} fxb_sms_sender_ops;

/* Implementations embed this as their first member. */
struct fxb_sms_sender {
    const fxb_sms_sender_ops *ops;
};

/* Normalises phone (fxb_phone_normalize: INVALID_ARGUMENT PHONE_INVALID),
 * checks text (1..FXB_SMS_TEXT_MAX bytes, else INVALID_ARGUMENT
 * SMS_TEXT_INVALID) and hands both to the sender. */
fxb_code fxb_sms_send(fxb_sms_sender *s, const char *phone, const char *text, fxb_err *err);

/* Name of the implementation ("dev"); "" for NULL. */
const char *fxb_sms_name(const fxb_sms_sender *s);

/* Frees a sender of any kind. NULL is a no-op. */
void fxb_sms_free(fxb_sms_sender *s);

/* The development sink: each message becomes an entry of FXB_SMS_DEV_STREAM
 * (XADD MAXLEN ~ FXB_SMS_DEV_MAXLEN) on its own Redis connection (opt->url,
 * guarded by a mutex), so that tests and developers can read the codes. It
 * stores the plain number and text: that is why it is refused, NULL with
 * FAILED_PRECONDITION reason SMS_DEV_IN_PRODUCTION, when production is true.
 * NULL also for a bad store URL or out of memory. A failed XADD is
 * UNAVAILABLE reason SMS_SEND_FAILED. */
fxb_sms_sender *fxb_sms_dev_new(const fxb_store_options *opt, bool production, fxb_err *err);

#endif
