/* InboxService handlers over the streams of store/inbox.h. Each unary call
 * is one script over the subject's two keys (same hash tag), so a page, its
 * read flags and the unread count are one consistent snapshot, and a read
 * mark only ever moves forward even under concurrent calls. Subscribe's
 * request check and subject resolution are here, shared with them; its
 * stream lives in push.c. Stream ids are
 * compared numerically (ms, then seq): as text "9-0" > "10-0". */
#include "services/inbox/inbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/grant.h"
#include "auth/scope.h"
#include "fxb/v1/inbox.pb-c.h"
#include "services/enterprise/enterprise.h"
#include "services/inbox/push.h"
#include "store/inbox.h"
#include "store/keys.h"
#include "store/store.h"

#define PAGE_DEFAULT  20
#define PAGE_MAX      100
#define SMALL_REQUEST 256
/* "<ms>-<seq>", both unsigned 64-bit decimals. */
#define ID_PART_MAX 20
#define ID_TEXT_MAX (2 * ID_PART_MAX + 1)

#define ZH_BUSY "系统繁忙，请稍后重试"

/* --- scripts ---------------------------------------------------------------- */

/* Shared by both scripts. Ids are canonical decimals (no leading zeros: what
 * Redis writes and what the handlers accept), so the longer part is the
 * larger and equal lengths compare as text. A missing or unreadable mark
 * reads as "0-0" (nothing read). unread_after counts ids above the mark, at
 * most max: the whole stream when the mark is older than its oldest entry,
 * else the entries from the mark on, minus the mark itself. */
#define LUA_IDS                                                                                    \
    "local function split(id)\n"                                                                   \
    "  local ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"                                        \
    "  if not ms or #ms > 20 or #seq > 20 then return nil end\n"                                   \
    "  if (#ms > 1 and ms:sub(1, 1) == '0') or (#seq > 1 and seq:sub(1, 1) == '0') then\n"         \
    "    return nil\n"                                                                             \
    "  end\n"                                                                                      \
    "  return ms, seq\n"                                                                           \
    "end\n"                                                                                        \
    "local function cmp_num(a, b)\n"                                                               \
    "  if #a ~= #b then return #a < #b and -1 or 1 end\n"                                          \
    "  if a == b then return 0 end\n"                                                              \
    "  return a < b and -1 or 1\n"                                                                 \
    "end\n"                                                                                        \
    "local function cmp(a, b)\n"                                                                   \
    "  local am, as = split(a)\n"                                                                  \
    "  local bm, bs = split(b)\n"                                                                  \
    "  local c = cmp_num(am, bm)\n"                                                                \
    "  if c ~= 0 then return c end\n"                                                              \
    "  return cmp_num(as, bs)\n"                                                                   \
    "end\n"                                                                                        \
    "local function marker_of(key)\n"                                                              \
    "  local m = redis.call('GET', key)\n"                                                         \
    "  if not m or not split(m) then return '0-0' end\n"                                           \
    "  return m\n"                                                                                 \
    "end\n"                                                                                        \
    "local function unread_after(key, marker, max)\n"                                              \
    "  local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)\n"                           \
    "  if #oldest == 0 then return 0 end\n"                                                        \
    "  local n\n"                                                                                  \
    "  if cmp(marker, oldest[1][1]) < 0 then\n"                                                    \
    "    n = redis.call('XLEN', key)\n"                                                            \
    "  else\n"                                                                                     \
    "    local r = redis.call('XRANGE', key, marker, '+', 'COUNT', max + 1)\n"                     \
    "    n = #r\n"                                                                                 \
    "    if n > 0 and r[1][1] == marker then n = n - 1 end\n"                                      \
    "  end\n"                                                                                      \
    "  if n > max then n = max end\n"                                                              \
    "  return n\n"                                                                                 \
    "end\n"

/* KEYS[1] inbox stream, KEYS[2] read mark; ARGV: end of the range ("+" or
 * "(<id>"; "" for an empty page), count, unread_only ("1"/"0"), max.
 * Returns {unread, mark, entries newest first}. With unread_only the range
 * stops at the mark (inclusive, then dropped). */
#define LUA_LIST                                                                                   \
    "local marker = marker_of(KEYS[2])\n"                                                          \
    "local page = {}\n"                                                                            \
    "if ARGV[1] ~= '' then\n"                                                                      \
    "  local start = '-'\n"                                                                        \
    "  if ARGV[3] == '1' then start = marker end\n"                                                \
    "  page = redis.call('XREVRANGE', KEYS[1], ARGV[1], start, 'COUNT', ARGV[2])\n"                \
    "  if ARGV[3] == '1' and #page > 0 and page[#page][1] == marker then\n"                        \
    "    page[#page] = nil\n"                                                                      \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "return {unread_after(KEYS[1], marker, tonumber(ARGV[4])), marker, page}\n"
static fxb_script list_script = FXB_SCRIPT("inbox_list", LUA_IDS LUA_LIST);

/* KEYS as above; ARGV: up_to id, max. Moves the mark to min(up_to, newest
 * id) when that is past it; an empty inbox keeps its mark. Returns the
 * unread count after. */
#define LUA_MARK                                                                                   \
    "local marker = marker_of(KEYS[2])\n"                                                          \
    "local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"                      \
    "if #newest > 0 then\n"                                                                        \
    "  local target = ARGV[1]\n"                                                                   \
    "  if cmp(target, newest[1][1]) > 0 then target = newest[1][1] end\n"                          \
    "  if cmp(target, marker) > 0 then\n"                                                          \
    "    redis.call('SET', KEYS[2], target)\n"                                                     \
    "    marker = target\n"                                                                        \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "return unread_after(KEYS[1], marker, tonumber(ARGV[2]))\n"
static fxb_script mark_script = FXB_SCRIPT("inbox_mark", LUA_IDS LUA_MARK);

/* --- helpers ---------------------------------------------------------------- */

typedef struct stream_id {
    uint64_t ms, seq;
} stream_id;

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code unexpected(fxb_ctx *ctx, const char *what)
{
    return fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                        "%s answered in an unexpected shape", what);
}

/* One decimal part of a stream id: 1..20 digits, no leading zero, fits 64
 * bits. */
static bool id_part(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > ID_PART_MAX || (n > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Parses "<ms>-<seq>" strictly: false for anything else. */
static bool id_parse(const char *s, stream_id *out)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, ID_TEXT_MAX + 1);
    if (n > ID_TEXT_MAX)
        return false;
    const char *dash = memchr(s, '-', n);
    if (dash == NULL)
        return false;
    size_t head = (size_t)(dash - s);
    return id_part(s, head, &out->ms) && id_part(dash + 1, n - head - 1, &out->seq);
}

static bool id_le(const stream_id *a, const stream_id *b)
{
    return a->ms < b->ms || (a->ms == b->ms && a->seq <= b->seq);
}

static fxb_code bad_id(fxb_ctx *ctx, const char *field)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MESSAGE_ID_INVALID", "消息标识无效",
                        "%s must be a message id \"<ms>-<seq>\" (unsigned decimals)", field);
}

/* The inbox a call reads: the caller's own (the principal's, for a
 * delegated caller) when enterprise_id is empty, else that enterprise's,
 * which an agent may name only when it is the principal and anyone else
 * only as its bound legal representative. *subject points into the caller
 * or the request. */
static fxb_code resolve_subject(fxb_ctx *ctx, const char *eid, const char **subject)
{
    const fxb_caller *c = fxb_ctx_caller(ctx);
    if (eid == NULL || eid[0] == '\0') {
        *subject = c->account_id;
        return FXB_OK;
    }
    const char *tag = fxb_inbox_tag(eid);
    if (tag == NULL || strcmp(tag, "e") != 0)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "ENTERPRISE_ID_INVALID", "企业标识无效",
                            "enterprise_id must be \"e\" followed by %d lower-case hex digits",
                            FXB_ENTERPRISE_ID_HEX);
    if (c->delegated) {
        if (strcmp(c->account_id, eid) != 0)
            return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_OUT_OF_SCOPE,
                                "该企业不在您的代办授权范围内",
                                "a delegated caller may read only its principal's inbox");
        *subject = eid;
        return FXB_OK;
    }
    const char *ekey = fxb_key_owned(fxb_ctx_arena(ctx), "e", eid, "enterprise");
    if (ekey == NULL)
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY, "an id cannot form a key");
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "HGET %s rep_account", ekey);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool rep = r->type == REDIS_REPLY_STRING && strcmp(r->str, c->account_id) == 0;
    freeReplyObject(r);
    if (!rep)
        return fxb_ctx_fail(ctx, FXB_PERMISSION_DENIED, FXB_ENTERPRISE_NOT_LEGAL_REP,
                            "您不是该企业已绑定的法定代表人，无法查看其消息",
                            "the caller is not the bound legal representative of this "
                            "enterprise");
    *subject = eid;
    return FXB_OK;
}

/* keys[0] the subject's inbox stream, keys[1] its read mark. */
static fxb_code inbox_keys(fxb_ctx *ctx, const char *subject, const char *keys[2])
{
    const char *tag = fxb_inbox_tag(subject);
    fxb_arena *a = fxb_ctx_arena(ctx);
    keys[0] = tag ? fxb_key_owned(a, tag, subject, "inbox") : NULL;
    keys[1] = tag ? fxb_key_owned(a, tag, subject, "inbox:read") : NULL;
    if (keys[0] == NULL || keys[1] == NULL)
        return fxb_ctx_fail(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                            "the subject's id cannot form a key");
    return FXB_OK;
}

/* A stream entry's field, "" when absent. */
static const char *field_of(const redisReply *kv, const char *name)
{
    const char *v = fxb_store_hash_get(kv, name);
    return v != NULL ? v : "";
}

/* One stream entry ([id, [field, value, ...]]) into *m, strings in the
 * arena. False on a malformed entry or out of memory (*oom). */
static bool fill_message(fxb_arena *a, const redisReply *e, const stream_id *marker,
                         Fxb__V1__InboxMessage *m, bool *oom)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    const redisReply *kv = e->element[1];
    stream_id id;
    fxb__v1__inbox_message__init(m);
    m->message_id = fxb_arena_strdup(a, e->element[0]->str);
    m->kind = fxb_arena_strdup(a, field_of(kv, "kind"));
    m->title = fxb_arena_strdup(a, field_of(kv, "title"));
    m->body = fxb_arena_strdup(a, field_of(kv, "body"));
    m->ref = fxb_arena_strdup(a, field_of(kv, "ref"));
    m->at_ms = strtoll(field_of(kv, "at_ms"), NULL, 10);
    m->read = id_parse(e->element[0]->str, &id) && id_le(&id, marker);
    if (m->message_id == NULL || m->kind == NULL || m->title == NULL || m->body == NULL ||
        m->ref == NULL) {
        *oom = true;
        return false;
    }
    return true;
}

/* --- ListMessages ----------------------------------------------------------- */

static fxb_code list_messages(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListMessagesRequest *req = (const Fxb__V1__ListMessagesRequest *)req_msg;
    Fxb__V1__ListMessagesResponse *resp = (Fxb__V1__ListMessagesResponse *)resp_msg;
    if (req->page_size > PAGE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_SIZE_INVALID",
                            "每页条数应在1到100之间", "page_size must be 1..%d (0 = %d)", PAGE_MAX,
                            PAGE_DEFAULT);
    uint32_t page_size = req->page_size ? req->page_size : PAGE_DEFAULT;
    const char *before = req->before_id ? req->before_id : "";
    stream_id before_id = {0, 0};
    if (before[0] != '\0' && !id_parse(before, &before_id))
        return bad_id(ctx, "before_id");
    const char *subject = NULL;
    fxb_code rc = resolve_subject(ctx, req->enterprise_id, &subject);
    if (rc != FXB_OK)
        return rc;
    const char *keys[2];
    if (inbox_keys(ctx, subject, keys) != FXB_OK)
        return FXB_INTERNAL;

    /* Redis refuses the range "(0-0": nothing lies before it, "" says so */
    char end[ID_TEXT_MAX + 2] = "+";
    if (before[0] != '\0' && before_id.ms == 0 && before_id.seq == 0)
        end[0] = '\0';
    else if (before[0] != '\0')
        snprintf(end, sizeof end, "(%s", before);
    char count[16], max[16];
    snprintf(count, sizeof count, "%" PRIu32, page_size + 1);
    snprintf(max, sizeof max, "%d", FXB_INBOX_MAX);
    const char *args[] = {end, count, req->unread_only ? "1" : "0", max};
    fxb_err err;
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, &list_script, 2, keys, 4, args, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    stream_id marker;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[0]->integer < 0 ||
        r->element[1]->type != REDIS_REPLY_STRING || !id_parse(r->element[1]->str, &marker) ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return unexpected(ctx, "the inbox list script");
    }
    const redisReply *page = r->element[2];
    size_t n = page->elements < page_size ? page->elements : page_size;
    fxb_arena *a = fxb_ctx_arena(ctx);
    Fxb__V1__InboxMessage **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    Fxb__V1__InboxMessage *items = fxb_arena_calloc(a, n ? n : 1, sizeof *items);
    if (list == NULL || items == NULL) {
        freeReplyObject(r);
        return out_of_memory(ctx);
    }
    bool oom = false;
    for (size_t i = 0; i < n; i++) {
        if (!fill_message(a, page->element[i], &marker, &items[i], &oom)) {
            freeReplyObject(r);
            return oom ? out_of_memory(ctx) : unexpected(ctx, "XREVRANGE of an inbox");
        }
        list[i] = &items[i];
    }
    resp->messages = list;
    resp->n_messages = n;
    resp->unread = (uint64_t)r->element[0]->integer;
    if (page->elements > page_size && n > 0)
        resp->next_before_id = list[n - 1]->message_id;
    freeReplyObject(r);
    return FXB_OK;
}

/* --- MarkRead --------------------------------------------------------------- */

static fxb_code mark_read(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__MarkReadRequest *req = (const Fxb__V1__MarkReadRequest *)req_msg;
    Fxb__V1__MarkReadResponse *resp = (Fxb__V1__MarkReadResponse *)resp_msg;
    stream_id up_to;
    if (!id_parse(req->up_to_id, &up_to))
        return bad_id(ctx, "up_to_id");
    const char *subject = NULL;
    fxb_code rc = resolve_subject(ctx, req->enterprise_id, &subject);
    if (rc != FXB_OK)
        return rc;
    const char *keys[2];
    if (inbox_keys(ctx, subject, keys) != FXB_OK)
        return FXB_INTERNAL;
    char max[16];
    snprintf(max, sizeof max, "%d", FXB_INBOX_MAX);
    const char *args[] = {req->up_to_id, max};
    fxb_err err;
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, &mark_script, 2, keys, 2, args, NULL);
    if (r == NULL)
        return fxb_ctx_fail_err(ctx, &err);
    bool ok = r->type == REDIS_REPLY_INTEGER && r->integer >= 0;
    if (ok)
        resp->unread = (uint64_t)r->integer;
    freeReplyObject(r);
    if (!ok)
        return unexpected(ctx, "the inbox mark script");
    return FXB_OK;
}

/* --- Subscribe --------------------------------------------------------------- */

/* Checks the request and resolves the subject as ListMessages does; the
 * stream itself (registry, replay, live reads) is push.c's. */
static fxb_next subscribe_start(fxb_ctx *ctx, const ProtobufCMessage *req_msg)
{
    const Fxb__V1__SubscribeRequest *req = (const Fxb__V1__SubscribeRequest *)req_msg;
    const char *after = req->after_id ? req->after_id : "";
    stream_id after_id;
    if (after[0] != '\0' && !id_parse(after, &after_id)) {
        bad_id(ctx, "after_id");
        return FXB_NEXT_FINISH;
    }
    const char *subject = NULL;
    if (resolve_subject(ctx, req->enterprise_id, &subject) != FXB_OK)
        return FXB_NEXT_FINISH;
    return fxb_inbox_push_subscribe(ctx, subject, after);
}

static const fxb_stream_ops subscribe_ops = {
    .on_start = subscribe_start,
    .on_event = fxb_inbox_push_on_event,
    .on_writable = fxb_inbox_push_on_writable,
    .on_end = fxb_inbox_push_on_end,
};

/* --- method table ----------------------------------------------------------- */

/* The caller's own inbox, or the principal's through a delegated token
 * whose grant holds inbox.read. */
#define INBOX_READER                                                                               \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .delegable = true, .scope = FXB_CAP_INBOX_READ               \
    }

static const fxb_method methods[] = {
    {.path = "/fxb.v1.InboxService/ListMessages",
     .request = &fxb__v1__list_messages_request__descriptor,
     .response = &fxb__v1__list_messages_response__descriptor,
     .unary = list_messages,
     .access = INBOX_READER,
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.InboxService/MarkRead",
     .request = &fxb__v1__mark_read_request__descriptor,
     .response = &fxb__v1__mark_read_response__descriptor,
     .unary = mark_read,
     .access = INBOX_READER,
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.InboxService/Subscribe",
     .request = &fxb__v1__subscribe_request__descriptor,
     .response = &fxb__v1__inbox_message__descriptor,
     .kind = FXB_RPC_SERVER_STREAMING,
     .stream = &subscribe_ops,
     .access = INBOX_READER,
     .limits = {.max_request_bytes = SMALL_REQUEST}},
};

const fxb_service fxb_inbox_service = {
    .name = "fxb.v1.InboxService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
