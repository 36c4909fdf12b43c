/* The sweeper thread: every interval it runs fxb_app_sweep on its own
 * Redis connection, ending applications whose correction, supplement or
 * rectification deadline passed. Several servers may run one each: the
 * timers are claimed one by one (application.c). It waits on a condition
 * variable, so stopping it does not wait for the interval to end. Its logs
 * carry counts and reasons only, never ids of people. */
#include "services/filing/filing.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "server/log.h"
#include "services/filing/application.h"

#define SWEEP_MAX 1000 /* applications ended per run at most */

struct fxb_sweeper {
    fxb_store *store;
    int interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
};

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *sweeper_main(void *arg)
{
    fxb_sweeper *sw = arg;
    pthread_mutex_lock(&sw->mu);
    while (!sw->stopping) {
        struct timespec until;
        deadline_after(&until, sw->interval_ms);
        while (!sw->stopping) {
            int rc = pthread_cond_timedwait(&sw->cv, &sw->mu, &until);
            if (rc == ETIMEDOUT)
                break;
        }
        if (sw->stopping)
            break;
        pthread_mutex_unlock(&sw->mu);
        size_t done = 0;
        fxb_err err;
        fxb_err_clear(&err);
        if (fxb_app_sweep(sw->store, fxb_wall_ms(), SWEEP_MAX, &done, &err) != FXB_OK)
            fxb_log(FXB_LOG_WARN, "sweeper: run failed: %s", err.reason);
        else if (done > 0)
            fxb_log(FXB_LOG_INFO, "sweeper: %zu application(s) ended by their deadline", done);
        pthread_mutex_lock(&sw->mu);
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

fxb_sweeper *fxb_sweeper_start(const fxb_config *cfg, int interval_ms, fxb_err *err)
{
    if (cfg == NULL || interval_ms <= 0) {
        fxb_err_set(err, FXB_INVALID_ARGUMENT, "SWEEPER_CONFIG_INVALID", "系统错误",
                    "the sweeper needs a configuration and a positive interval");
        return NULL;
    }
    fxb_sweeper *sw = calloc(1, sizeof *sw);
    if (sw == NULL) {
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统错误", "out of memory");
        return NULL;
    }
    sw->interval_ms = interval_ms;
    fxb_store_options so = {.url = cfg->redis_url,
                            .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                            .command_timeout_ms = cfg->redis_command_timeout_ms};
    sw->store = fxb_store_new(&so, err);
    if (sw->store == NULL) {
        free(sw);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sw->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&sw->mu, NULL);
    if (pthread_create(&sw->thread, NULL, sweeper_main, sw) != 0) {
        pthread_cond_destroy(&sw->cv);
        pthread_mutex_destroy(&sw->mu);
        fxb_store_free(sw->store);
        free(sw);
        fxb_err_set(err, FXB_INTERNAL, "THREAD_START_FAILED", "系统错误",
                    "the sweeper thread could not start");
        return NULL;
    }
    return sw;
}

void fxb_sweeper_stop(fxb_sweeper *sw)
{
    if (sw == NULL)
        return;
    pthread_mutex_lock(&sw->mu);
    sw->stopping = true;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    pthread_cond_destroy(&sw->cv);
    pthread_mutex_destroy(&sw->mu);
    fxb_store_free(sw->store);
    free(sw);
}
