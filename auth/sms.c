/* The SMS interface and its development sink. The sink is the one place in
 * fxb where a phone number and a code are written in clear, on purpose: it
 * stands in for the handset. Production refuses it at construction. */
#include "auth/sms.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/phone.h"

#define ZH_SMS_TEXT   "短信内容有误"
#define ZH_SMS_FAILED "短信发送失败，请稍后重试"
#define ZH_SMS_CONFIG "服务配置错误"
#define ZH_SMS_NOMEM  "系统繁忙，请稍后重试"

fxb_code fxb_sms_send(fxb_sms_sender *s, const char *phone, const char *text, fxb_err *err)
{
    if (s == NULL || s->ops == NULL || s->ops->send == NULL)
        return fxb_err_set(err, FXB_INTERNAL, FXB_SMS_SEND_FAILED, ZH_SMS_FAILED,
                           "no SMS sender configured");
    char bare[FXB_PHONE_LEN + 1];
    fxb_code rc = fxb_phone_normalize(phone, bare, err);
    if (rc != FXB_OK)
        return rc;
    size_t n = text == NULL ? 0 : strnlen(text, FXB_SMS_TEXT_MAX + 1);
    if (n == 0 || n > FXB_SMS_TEXT_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_SMS_TEXT_INVALID, ZH_SMS_TEXT,
                           "SMS text must be 1..%d bytes", FXB_SMS_TEXT_MAX);
    return s->ops->send(s, bare, text, err);
}

const char *fxb_sms_name(const fxb_sms_sender *s)
{
    return s != NULL && s->ops != NULL && s->ops->name != NULL ? s->ops->name : "";
}

void fxb_sms_free(fxb_sms_sender *s)
{
    if (s != NULL && s->ops != NULL && s->ops->free != NULL)
        s->ops->free(s);
}

/* ---- development sink ---------------------------------------------------- */

typedef struct dev_sender {
    fxb_sms_sender base;  /* first: the interface */
    pthread_mutex_t lock; /* one hiredis context serves every worker */
    fxb_store *store;
} dev_sender;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static fxb_code dev_send(fxb_sms_sender *self, const char *phone, const char *text, fxb_err *err)
{
    dev_sender *d = (dev_sender *)self;
    char maxlen[24];
    char at[24];
    snprintf(maxlen, sizeof maxlen, "%d", FXB_SMS_DEV_MAXLEN);
    snprintf(at, sizeof at, "%" PRId64, wall_ms());
    const char *argv[] = {"XADD",   FXB_SMS_DEV_STREAM,
                          "MAXLEN", "~",
                          maxlen,   "*",
                          "phone",  phone,
                          "text",   text,
                          "at_ms",  at};
    size_t lens[sizeof argv / sizeof argv[0]];
    for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++)
        lens[i] = strlen(argv[i]);

    fxb_err store_err;
    pthread_mutex_lock(&d->lock);
    redisReply *r =
        fxb_store_commandv(d->store, &store_err, (int)(sizeof argv / sizeof argv[0]), argv, lens);
    pthread_mutex_unlock(&d->lock);
    if (r == NULL)
        return fxb_err_set(err, FXB_UNAVAILABLE, FXB_SMS_SEND_FAILED, ZH_SMS_FAILED,
                           "dev SMS sink: %s", store_err.message);
    freeReplyObject(r);
    return FXB_OK;
}

static void dev_free(fxb_sms_sender *self)
{
    dev_sender *d = (dev_sender *)self;
    fxb_store_free(d->store);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const fxb_sms_sender_ops dev_ops = {.name = "dev", .send = dev_send, .free = dev_free};

fxb_sms_sender *fxb_sms_dev_new(const fxb_store_options *opt, bool production, fxb_err *err)
{
    if (production) {
        fxb_err_set(err, FXB_FAILED_PRECONDITION, FXB_SMS_DEV_IN_PRODUCTION, ZH_SMS_CONFIG,
                    "the development SMS sink stores numbers and codes in clear and is refused"
                    " when FXB_ENV=production; configure the SMS gateway");
        return NULL;
    }
    if (opt == NULL) {
        fxb_err_set(err, FXB_INTERNAL, FXB_SMS_SEND_FAILED, ZH_SMS_CONFIG,
                    "dev SMS sink: no store options");
        return NULL;
    }
    dev_sender *d = calloc(1, sizeof *d);
    if (d == NULL) {
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_SMS_NOMEM,
                    "out of memory creating the dev SMS sink");
        return NULL;
    }
    d->store = fxb_store_new(opt, err);
    if (d->store == NULL) {
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->lock, NULL);
    d->base.ops = &dev_ops;
    return &d->base;
}
