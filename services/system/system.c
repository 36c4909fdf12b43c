/* GetInfo lets the app check compatibility and correct its clock: the
 * server time is read as late as possible, after the store round trip. */
#include "system.h"

#include <stdlib.h>

#include "fxb/v1/system.pb-c.h"
#include "store/keys.h"
#include "store/store.h"

static fxb_code get_info(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    Fxb__V1__GetInfoResponse *resp = (Fxb__V1__GetInfoResponse *)resp_msg;
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "GET %s", FXB_KEY_SCHEMA_VERSION);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    unsigned long version = 0;
    if (r->type == REDIS_REPLY_STRING)
        version = strtoul(r->str, NULL, 10);
    freeReplyObject(r);
    resp->server_version = FXB_VERSION;
    resp->schema_version = (uint32_t)version;
    resp->server_time_ms = fxb_wall_ms();
    return FXB_OK;
}

static const fxb_method methods[] = {
    {.path = "/fxb.v1.SystemService/GetInfo",
     .request = &fxb__v1__get_info_request__descriptor,
     .response = &fxb__v1__get_info_response__descriptor,
     .kind = FXB_RPC_UNARY,
     .unary = get_info,
     .access = {.kind = FXB_ACCESS_PUBLIC}},
};

const fxb_service fxb_system_service = {
    .name = "fxb.v1.SystemService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
