/* GetInfo lets the app check compatibility and correct its clock. It needs
 * no store round trip: the server serves only while the store's schema is
 * exactly the one it was built for (the monitor in main.c checks), so that
 * version is the schema version. It keeps answering while Redis is down, when
 * the app most needs to know the server is alive. */
#include "system.h"

#include "fxb/v1/system.pb-c.h"
#include "store/migrate.h"

static fxb_code get_info(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    Fxb__V1__GetInfoResponse *resp = (Fxb__V1__GetInfoResponse *)resp_msg;
    resp->server_version = FXB_VERSION;
    resp->schema_version = (uint32_t)fxb_migrate_latest();
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
