/* Diagnostic methods. Echo blocks its worker while it sleeps (as a slow
 * handler would); Ticks uses worker timers so a slow stream holds no thread. */
#include "diag.h"

#include <string.h>
#include <time.h>

#include "fxb/v1/diag.pb-c.h"
#include "server/log.h"
#include "services/benefit/engine.h"
#include "services/filing/application.h"
#include "store/store.h"

static fxb_code echo(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__EchoRequest *req = (const Fxb__V1__EchoRequest *)req_msg;
    Fxb__V1__EchoResponse *resp = (Fxb__V1__EchoResponse *)resp_msg;
    if (req->sleep_ms > FXB_DIAG_MAX_SLEEP_MS)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "SLEEP_OUT_OF_RANGE", "参数超出范围",
                            "sleep_ms must be at most %u", FXB_DIAG_MAX_SLEEP_MS);
    uint64_t until = fxb_now_us() + (uint64_t)req->sleep_ms * 1000u;
    while (fxb_now_us() < until) {
        if (fxb_ctx_remaining_ms(ctx) == 0)
            return fxb_ctx_fail(ctx, FXB_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "请求已超时",
                                "deadline passed while sleeping");
        if (fxb_ctx_cancelled(ctx))
            return fxb_ctx_fail(ctx, FXB_CANCELLED, "CANCELLED", "请求已取消",
                                "call cancelled while sleeping");
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (req->touch_store) {
        uint64_t t0 = fxb_now_us();
        fxb_err err;
        redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "PING");
        if (r == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        freeReplyObject(r);
        resp->store_round_trip_us = (int64_t)(fxb_now_us() - t0);
    }
    resp->text = req->text;
    resp->remaining_ms = fxb_ctx_remaining_ms(ctx);
    resp->request_id = (char *)fxb_ctx_request_id(ctx);
    return FXB_OK;
}

/* --- Collect: client-streaming ------------------------------------------ */

typedef struct collect_state {
    uint32_t count;
    size_t len;
    char *joined; /* FXB_DIAG_MAX_JOINED + 1 bytes in the call arena */
} collect_state;

static fxb_next collect_start(fxb_ctx *ctx, const ProtobufCMessage *req)
{
    collect_state *st = fxb_arena_calloc(fxb_ctx_arena(ctx), 1, sizeof *st);
    if (st)
        st->joined = fxb_arena_alloc(fxb_ctx_arena(ctx), FXB_DIAG_MAX_JOINED + 1);
    if (st == NULL || st->joined == NULL) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                     "out of memory");
        return FXB_NEXT_FINISH;
    }
    st->joined[0] = '\0';
    fxb_ctx_set_user(ctx, st);
    return FXB_NEXT_CONTINUE;
}

static fxb_next collect_message(fxb_ctx *ctx, const ProtobufCMessage *msg)
{
    const Fxb__V1__CollectPart *part = (const Fxb__V1__CollectPart *)msg;
    collect_state *st = fxb_ctx_user(ctx);
    size_t n = strlen(part->text);
    if (st->count >= FXB_DIAG_MAX_PARTS || st->len + n > FXB_DIAG_MAX_JOINED) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "TOO_MUCH_DATA", "提交的内容过多",
                     "at most %u parts and %u bytes", FXB_DIAG_MAX_PARTS, FXB_DIAG_MAX_JOINED);
        return FXB_NEXT_FINISH;
    }
    memcpy(st->joined + st->len, part->text, n + 1);
    st->len += n;
    st->count++;
    return FXB_NEXT_CONTINUE;
}

static fxb_next collect_half_close(fxb_ctx *ctx, ProtobufCMessage *resp_msg)
{
    Fxb__V1__CollectResult *resp = (Fxb__V1__CollectResult *)resp_msg;
    collect_state *st = fxb_ctx_user(ctx);
    resp->count = st->count;
    resp->joined = st->joined;
    return FXB_NEXT_FINISH;
}

/* --- Ticks: server-streaming on timers ---------------------------------- */

typedef struct ticks_state {
    uint32_t next, count, interval_ms;
} ticks_state;

static fxb_next ticks_send(fxb_ctx *ctx)
{
    ticks_state *st = fxb_ctx_user(ctx);
    while (st->next < st->count) {
        Fxb__V1__Tick tick = FXB__V1__TICK__INIT;
        tick.seq = st->next + 1;
        fxb_code rc = fxb_ctx_send(ctx, &tick.base);
        if (rc == FXB_RESOURCE_EXHAUSTED)
            return FXB_NEXT_CONTINUE; /* on_writable resumes */
        if (rc != FXB_OK)
            return FXB_NEXT_FINISH;
        st->next++;
        if (st->interval_ms > 0 && st->next < st->count) {
            if (!fxb_ctx_after(ctx, st->interval_ms, NULL)) {
                fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "NO_TIMER", "系统繁忙，请稍后重试",
                             "cannot schedule a timer");
                return FXB_NEXT_FINISH;
            }
            return FXB_NEXT_CONTINUE;
        }
    }
    return FXB_NEXT_FINISH;
}

static fxb_next ticks_start(fxb_ctx *ctx, const ProtobufCMessage *req_msg)
{
    const Fxb__V1__TicksRequest *req = (const Fxb__V1__TicksRequest *)req_msg;
    if (req->count < 1 || req->count > FXB_DIAG_MAX_TICKS) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "COUNT_OUT_OF_RANGE", "参数超出范围",
                     "count must be in 1..%u", FXB_DIAG_MAX_TICKS);
        return FXB_NEXT_FINISH;
    }
    if (req->interval_ms > FXB_DIAG_MAX_INTERVAL_MS) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "INTERVAL_OUT_OF_RANGE", "参数超出范围",
                     "interval_ms must be at most %u", FXB_DIAG_MAX_INTERVAL_MS);
        return FXB_NEXT_FINISH;
    }
    ticks_state *st = fxb_arena_calloc(fxb_ctx_arena(ctx), 1, sizeof *st);
    if (st == NULL) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                     "out of memory");
        return FXB_NEXT_FINISH;
    }
    st->count = req->count;
    st->interval_ms = req->interval_ms;
    fxb_ctx_set_user(ctx, st);
    return ticks_send(ctx);
}

static fxb_next ticks_event(fxb_ctx *ctx, void *ev)
{
    return ticks_send(ctx);
}

static fxb_next ticks_writable(fxb_ctx *ctx)
{
    return ticks_send(ctx);
}

/* --- Chat: bidi echo ---------------------------------------------------- */

static fxb_next chat_message(fxb_ctx *ctx, const ProtobufCMessage *msg)
{
    const Fxb__V1__EchoRequest *req = (const Fxb__V1__EchoRequest *)msg;
    Fxb__V1__EchoResponse resp = FXB__V1__ECHO_RESPONSE__INIT;
    resp.text = req->text;
    resp.remaining_ms = fxb_ctx_remaining_ms(ctx);
    resp.request_id = (char *)fxb_ctx_request_id(ctx);
    /* the runtime stops reading while the out queue is full, so a send
     * from here always has room */
    if (fxb_ctx_send(ctx, &resp.base) != FXB_OK)
        return FXB_NEXT_FINISH;
    return FXB_NEXT_CONTINUE;
}

static fxb_next chat_half_close(fxb_ctx *ctx, ProtobufCMessage *resp)
{
    return FXB_NEXT_FINISH;
}

/* --- access probes ----------------------------------------------------- */

static fxb_code probe(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ProbeRequest *req = (const Fxb__V1__ProbeRequest *)req_msg;
    Fxb__V1__ProbeResponse *resp = (Fxb__V1__ProbeResponse *)resp_msg;
    if (req->touch_store) {
        fxb_err err;
        redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "PING");
        if (r == NULL)
            return fxb_ctx_fail_err(ctx, &err);
        freeReplyObject(r);
    }
    const fxb_caller *c = fxb_ctx_caller(ctx);
    resp->account_id = (char *)c->account_id;
    resp->session_id = (char *)c->session_id;
    resp->assurance_level = (uint32_t)c->level;
    resp->roles = c->roles;
    resp->department = (char *)c->dept;
    resp->auth_time_s = c->auth_time_s;
    resp->agent_id = (char *)c->agent_id;
    resp->grant_id = (char *)c->grant_id;
    resp->scope = (char *)c->scope;
    return FXB_OK;
}

/* --- the application sweeper, on demand ----------------------------------- */

static fxb_code run_sweeper(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                            ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RunSweeperRequest *req = (const Fxb__V1__RunSweeperRequest *)req_msg;
    Fxb__V1__RunSweeperResponse *resp = (Fxb__V1__RunSweeperResponse *)resp_msg;
    size_t done = 0;
    fxb_err err;
    int64_t now = fxb_wall_ms();
    if (fxb_app_sweep(fxb_ctx_store(ctx), now, req->max ? req->max : 1000, &done, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    resp->swept = (uint32_t)done;
    resp->now_ms = now;
    return FXB_OK;
}

/* --- the benefit matching engine, synchronised ---------------------------- */

#define SYNC_TIMEOUT_DEFAULT_MS 10000
#define SYNC_TIMEOUT_MAX_MS     120000

static fxb_code sync_benefit_engine(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                    ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SyncBenefitEngineRequest *req =
        (const Fxb__V1__SyncBenefitEngineRequest *)req_msg;
    Fxb__V1__SyncBenefitEngineResponse *resp = (Fxb__V1__SyncBenefitEngineResponse *)resp_msg;
    if (req->timeout_ms > SYNC_TIMEOUT_MAX_MS)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "TIMEOUT_OUT_OF_RANGE", "参数超出范围",
                            "timeout_ms must be at most %u", SYNC_TIMEOUT_MAX_MS);
    int timeout = req->timeout_ms ? (int)req->timeout_ms : SYNC_TIMEOUT_DEFAULT_MS;
    /* never wait past the call's own deadline */
    int64_t left = fxb_ctx_remaining_ms(ctx);
    if (left >= 0 && left < timeout)
        timeout = (int)left;
    fxb_engine_status st;
    fxb_err err;
    if (fxb_engine_sync(req->recheck, timeout, &st, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    resp->leader = st.leader;
    resp->ready = st.ready;
    resp->persons = st.persons;
    resp->enterprises = st.enterprises;
    resp->policies = st.policies;
    resp->feed_id = fxb_arena_strdup(fxb_ctx_arena(ctx), st.feed_id);
    if (resp->feed_id == NULL)
        return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                            "out of memory");
    return FXB_OK;
}

/* --- the controllable clock ---------------------------------------------- */

#define CLOCK_OFFSET_MAX_MS (10LL * 366 * 24 * 3600 * 1000)

static fxb_code set_clock_offset(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SetClockOffsetRequest *req = (const Fxb__V1__SetClockOffsetRequest *)req_msg;
    Fxb__V1__SetClockOffsetResponse *resp = (Fxb__V1__SetClockOffsetResponse *)resp_msg;
    if (req->offset_ms > CLOCK_OFFSET_MAX_MS || req->offset_ms < -CLOCK_OFFSET_MAX_MS)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "CLOCK_OFFSET_INVALID", "参数无效",
                            "offset_ms must be within +-10 years");
    fxb_clock_set_offset_ms(req->offset_ms);
    fxb_log(FXB_LOG_WARN, "development clock offset set to %lld ms", (long long)req->offset_ms);
    resp->offset_ms = fxb_clock_offset_ms();
    resp->now_ms = fxb_wall_ms();
    return FXB_OK;
}

static const fxb_stream_ops collect_ops = {
    .on_start = collect_start,
    .on_message = collect_message,
    .on_half_close = collect_half_close,
};

static const fxb_stream_ops ticks_ops = {
    .on_start = ticks_start,
    .on_event = ticks_event,
    .on_writable = ticks_writable,
};

static const fxb_stream_ops chat_ops = {
    .on_message = chat_message,
    .on_half_close = chat_half_close,
};

static const fxb_method methods[] = {
    {.path = "/fxb.v1.DiagService/Echo",
     .request = &fxb__v1__echo_request__descriptor,
     .response = &fxb__v1__echo_response__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = echo,
     .access = {.kind = FXB_ACCESS_PUBLIC}},
    {.path = "/fxb.v1.DiagService/Collect",
     .request = &fxb__v1__collect_part__descriptor,
     .response = &fxb__v1__collect_result__descriptor,
     .kind = FXB_RPC_CLIENT_STREAMING,
     .stream = &collect_ops,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 64 * 1024, .max_messages = FXB_DIAG_MAX_PARTS + 1}},
    {.path = "/fxb.v1.DiagService/Ticks",
     .request = &fxb__v1__ticks_request__descriptor,
     .response = &fxb__v1__tick__descriptor,
     .kind = FXB_RPC_SERVER_STREAMING,
     .stream = &ticks_ops,
     .access = {.kind = FXB_ACCESS_PUBLIC}},
    {.path = "/fxb.v1.DiagService/Chat",
     .request = &fxb__v1__echo_request__descriptor,
     .response = &fxb__v1__echo_response__descriptor,
     .kind = FXB_RPC_BIDI,
     .stream = &chat_ops,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 64 * 1024}},
#define PROBE(name, ...)                                                                           \
    {                                                                                              \
        .path = "/fxb.v1.DiagService/" name, .request = &fxb__v1__probe_request__descriptor,       \
        .response = &fxb__v1__probe_response__descriptor, .unary = probe,                          \
        .access = {.kind = FXB_ACCESS_SIGNED_IN, __VA_ARGS__}, .limits = {                         \
            .max_request_bytes = 1024                                                              \
        }                                                                                          \
    }
    PROBE("ProbeSignedIn", .min_level = 0),
    PROBE("ProbeRealName", .min_level = FXB_LEVEL_REAL_NAME),
    PROBE("ProbeRealPerson", .min_level = FXB_LEVEL_REAL_FACE),
    PROBE("ProbeStepUp", .step_up_s = 600),
    PROBE("ProbeOfficer", .roles = FXB_ROLE_OFFICER | FXB_ROLE_ADMIN, .dept_field = "department"),
    PROBE("ProbeAdmin", .roles = FXB_ROLE_ADMIN),
    PROBE("ProbeDelegated", .delegable = true, .scope = "inbox.read"),
    PROBE("ProbeItem", .delegable = true, .scope = "filing.submit", .item_field = "item_code"),
    {.path = "/fxb.v1.DiagService/SetClockOffset",
     .request = &fxb__v1__set_clock_offset_request__descriptor,
     .response = &fxb__v1__set_clock_offset_response__descriptor,
     .unary = set_clock_offset,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 64}},
    {.path = "/fxb.v1.DiagService/RunSweeper",
     .request = &fxb__v1__run_sweeper_request__descriptor,
     .response = &fxb__v1__run_sweeper_response__descriptor,
     .unary = run_sweeper,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 64}},
    {.path = "/fxb.v1.DiagService/SyncBenefitEngine",
     .request = &fxb__v1__sync_benefit_engine_request__descriptor,
     .response = &fxb__v1__sync_benefit_engine_response__descriptor,
     .unary = sync_benefit_engine,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 64}},
};

const fxb_service fxb_diag_service = {
    .name = "fxb.v1.DiagService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
