/* Server reflection without a server: the descriptor index against the real
 * embedded descriptor set and against small hand-built sets, and the answer
 * to each kind of reflection request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "services/reflection/descindex.h"
#include "services/reflection/reflection.h"

extern const unsigned char fxb_descriptor_set[];
extern const size_t fxb_descriptor_set_len;

typedef Google__Protobuf__FileDescriptorProto fdp;
typedef Grpc__Reflection__V1alpha__ServerReflectionRequest refl_request;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse refl_response;

#define RESP_CASE(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x
#define REQ_CASE(x)  GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x

static const char *const registered[] = {
    "grpc.reflection.v1alpha.ServerReflection",
    "fxb.v1.SystemService",
    "grpc.health.v1.Health",
    "fxb.v1.SystemService", /* listed twice: answered once */
    "fxb.v1.DiagService",
};
#define N_REGISTERED (sizeof registered / sizeof registered[0])

/* --- helpers -------------------------------------------------------------- */

static fxb_descindex *real_index(void)
{
    fxb_err err;
    fxb_err_clear(&err);
    fxb_descindex *ix = fxb_descindex_new(fxb_descriptor_set, fxb_descriptor_set_len, &err);
    if (ix == NULL)
        fail_msg("index of the embedded set: %s", err.message);
    return ix;
}

static uint8_t *pack_set(fdp **files, size_t n, size_t *len)
{
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = n;
    set.file = files;
    *len = google__protobuf__file_descriptor_set__get_packed_size(&set);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    google__protobuf__file_descriptor_set__pack(&set, buf);
    return buf;
}

/* Builds an index from hand-made files; NULL (with *err) when refused. */
static fxb_descindex *index_of(fdp **files, size_t n, fxb_err *err)
{
    size_t len;
    uint8_t *buf = pack_set(files, n, &len);
    fxb_descindex *ix = fxb_descindex_new(buf, len, err);
    free(buf); /* the index keeps its own copy */
    return ix;
}

static void file_init(fdp *f, const char *name, const char *package)
{
    google__protobuf__file_descriptor_proto__init(f);
    f->name = (char *)name;
    f->package = (char *)package;
}

static void message_init(Google__Protobuf__DescriptorProto *m, const char *name)
{
    google__protobuf__descriptor_proto__init(m);
    m->name = (char *)name;
}

static void extension_init(Google__Protobuf__FieldDescriptorProto *f, const char *name,
                           const char *extendee, int32_t number)
{
    google__protobuf__field_descriptor_proto__init(f);
    f->name = (char *)name;
    f->extendee = (char *)extendee;
    f->has_number = 1;
    f->number = number;
}

static const char *file_name_at(const fxb_descindex *ix, size_t i)
{
    const fxb_descfile *f = fxb_descindex_file(ix, i);
    return f ? f->name : "(none)";
}

static void assert_symbol(const fxb_descindex *ix, const char *symbol, const char *file,
                          fxb_symbol_kind kind)
{
    fxb_symbol_kind got = (fxb_symbol_kind)-1;
    size_t i = fxb_descindex_find_symbol(ix, symbol, &got);
    if (i == FXB_DESCINDEX_NONE)
        fail_msg("symbol %s not found", symbol);
    assert_string_equal(file_name_at(ix, i), file);
    assert_int_equal(got, kind);
}

static refl_request name_request(int which, const char *name)
{
    refl_request r = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    r.message_request_case = which;
    switch (which) {
    case REQ_CASE(FILE_BY_FILENAME):
        r.file_by_filename = (char *)name;
        break;
    case REQ_CASE(FILE_CONTAINING_SYMBOL):
        r.file_containing_symbol = (char *)name;
        break;
    case REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE):
        r.all_extension_numbers_of_type = (char *)name;
        break;
    case REQ_CASE(LIST_SERVICES):
        r.list_services = (char *)name;
        break;
    default:
        break;
    }
    return r;
}

/* Answers req into *resp from *a, asserting the call itself succeeds. */
static void answer(fxb_arena *a, const refl_request *req, refl_response *resp)
{
    assert_int_equal(fxb_reflection_answer(a, req, resp), FXB_OK);
}

static void assert_error_response(const refl_response *resp, fxb_code code)
{
    assert_int_equal(resp->message_response_case, RESP_CASE(ERROR_RESPONSE));
    assert_non_null(resp->error_response);
    assert_int_equal(resp->error_response->error_code, code);
    assert_non_null(resp->error_response->error_message);
    assert_true(resp->error_response->error_message[0] != '\0');
}

/* Asserts the response carries exactly the named files, in order, and that
 * each blob is a FileDescriptorProto of that name. */
static void assert_files(const refl_response *resp, const char *const *names, size_t n)
{
    assert_int_equal(resp->message_response_case, RESP_CASE(FILE_DESCRIPTOR_RESPONSE));
    const Grpc__Reflection__V1alpha__FileDescriptorResponse *fr = resp->file_descriptor_response;
    assert_non_null(fr);
    assert_int_equal(fr->n_file_descriptor_proto, n);
    for (size_t i = 0; i < n; i++) {
        fdp *f = google__protobuf__file_descriptor_proto__unpack(
            NULL, fr->file_descriptor_proto[i].len, fr->file_descriptor_proto[i].data);
        assert_non_null(f);
        assert_string_equal(f->name, names[i]);
        google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
    }
}

static void assert_symbol_answer(const char *symbol, const char *const *files, size_t n)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(REQ_CASE(FILE_CONTAINING_SYMBOL), symbol);
    refl_response resp;
    answer(&a, &req, &resp);
    assert_files(&resp, files, n);
    fxb_arena_free(&a);
}

static void assert_request_error(int which, const char *name, fxb_code code)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(which, name);
    refl_response resp;
    answer(&a, &req, &resp);
    assert_error_response(&resp, code);
    fxb_arena_free(&a);
}

/* --- the index over the embedded set --------------------------------------- */

static void test_index_holds_every_proto_and_its_imports(void **state)
{
    fxb_descindex *ix = real_index();
    static const char *const files[] = {
        "fxb/v1/system.proto",         "fxb/v1/diag.proto",
        "grpc/health/v1/health.proto", "grpc/reflection/v1alpha/reflection.proto",
        "google/rpc/status.proto",     "google/rpc/error_details.proto",
        "google/protobuf/any.proto",   "google/protobuf/duration.proto",
        "fxb/v1/auth.proto",           "fxb/v1/accessibility.proto",
        "fxb/v1/identity.proto",       "fxb/v1/enterprise.proto",
        "fxb/v1/inbox.proto",          "fxb/v1/proxy.proto",
        "fxb/v1/catalog.proto",        "fxb/v1/calendar.proto",
        "fxb/v1/material.proto",       "fxb/v1/filing.proto",
        "fxb/v1/officer.proto",        "fxb/v1/rating.proto",
        "fxb/v1/appointment.proto",    "fxb/v1/profile.proto",
        "fxb/v1/benefit.proto",
    };
    assert_int_equal(fxb_descindex_file_count(ix), sizeof files / sizeof files[0]);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t at = fxb_descindex_find_file(ix, files[i]);
        assert_true(at != FXB_DESCINDEX_NONE);
        assert_string_equal(file_name_at(ix, at), files[i]);
    }
    assert_int_equal(fxb_descindex_find_file(ix, "fxb/v1/nope.proto"), FXB_DESCINDEX_NONE);
    assert_int_equal(fxb_descindex_find_file(ix, "system.proto"), FXB_DESCINDEX_NONE);
    assert_int_equal(fxb_descindex_find_file(ix, ""), FXB_DESCINDEX_NONE);
    fxb_descindex_free(ix);
}

static void test_index_serves_the_bytes_protoc_wrote(void **state)
{
    fxb_descindex *ix = real_index();
    for (size_t i = 0; i < fxb_descindex_file_count(ix); i++) {
        const fxb_descfile *f = fxb_descindex_file(ix, i);
        assert_non_null(memmem(fxb_descriptor_set, fxb_descriptor_set_len, f->data, f->len));
        fdp *p = google__protobuf__file_descriptor_proto__unpack(NULL, f->len, f->data);
        assert_non_null(p);
        assert_string_equal(p->name, f->name);
        google__protobuf__file_descriptor_proto__free_unpacked(p, NULL);
    }
    assert_null(fxb_descindex_file(ix, fxb_descindex_file_count(ix)));
    fxb_descindex_free(ix);
}

static void test_index_finds_every_kind_of_symbol(void **state)
{
    fxb_descindex *ix = real_index();
    const char *sys = "fxb/v1/system.proto", *health = "grpc/health/v1/health.proto";
    assert_symbol(ix, "fxb.v1.SystemService", sys, FXB_SYMBOL_SERVICE);
    assert_symbol(ix, "fxb.v1.SystemService.GetInfo", sys, FXB_SYMBOL_METHOD);
    assert_symbol(ix, "fxb.v1.GetInfoResponse", sys, FXB_SYMBOL_MESSAGE);
    assert_symbol(ix, "fxb.v1.GetInfoResponse.server_version", sys, FXB_SYMBOL_FIELD);
    assert_symbol(ix, "grpc.health.v1.HealthCheckResponse", health, FXB_SYMBOL_MESSAGE);
    assert_symbol(ix, "grpc.health.v1.HealthCheckResponse.ServingStatus", health, FXB_SYMBOL_ENUM);
    /* enum values are siblings of their enum, as in C++ */
    assert_symbol(ix, "grpc.health.v1.HealthCheckResponse.SERVING", health, FXB_SYMBOL_ENUM_VALUE);
    assert_symbol(ix, "grpc.reflection.v1alpha.ServerReflectionRequest.message_request",
                  "grpc/reflection/v1alpha/reflection.proto", FXB_SYMBOL_ONEOF);
    assert_symbol(ix, "fxb.v1.DiagService.Chat", "fxb/v1/diag.proto", FXB_SYMBOL_METHOD);
    assert_symbol(ix, "google.rpc.Status", "google/rpc/status.proto", FXB_SYMBOL_MESSAGE);
    assert_symbol(ix, "google.protobuf.Any", "google/protobuf/any.proto", FXB_SYMBOL_MESSAGE);
    assert_symbol(ix, ".fxb.v1.GetInfoRequest", sys, FXB_SYMBOL_MESSAGE);
    fxb_descindex_free(ix);
}

static void test_index_knows_no_packages_prefixes_or_strangers(void **state)
{
    fxb_descindex *ix = real_index();
    static const char *const unknown[] = {
        "fxb.v1",
        "fxb",
        "fxb.v1.GetInfo",
        "fxb.v1.SystemService.",
        "fxb.v1.systemservice",
        "SystemService",
        "..fxb.v1.SystemService",
        "",
        "fxb.v1.NoSuchThing",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        assert_int_equal(fxb_descindex_find_symbol(ix, unknown[i], NULL), FXB_DESCINDEX_NONE);
    assert_int_equal(fxb_descindex_find_symbol(ix, NULL, NULL), FXB_DESCINDEX_NONE);
    fxb_descindex_free(ix);
}

static void test_index_closure_is_file_then_imports(void **state)
{
    fxb_descindex *ix = real_index();
    size_t n_files = fxb_descindex_file_count(ix);
    size_t *out = calloc(n_files, sizeof *out);
    assert_non_null(out);

    size_t n = fxb_descindex_closure(ix, fxb_descindex_find_file(ix, "google/rpc/status.proto"),
                                     out, n_files);
    assert_int_equal(n, 2);
    assert_string_equal(file_name_at(ix, out[0]), "google/rpc/status.proto");
    assert_string_equal(file_name_at(ix, out[1]), "google/protobuf/any.proto");

    n = fxb_descindex_closure(ix, fxb_descindex_find_file(ix, "fxb/v1/system.proto"), out, n_files);
    assert_int_equal(n, 1);
    assert_string_equal(file_name_at(ix, out[0]), "fxb/v1/system.proto");

    /* out of range, or no room for the whole closure */
    assert_int_equal(fxb_descindex_closure(ix, n_files, out, n_files), 0);
    assert_int_equal(fxb_descindex_closure(ix, FXB_DESCINDEX_NONE, out, n_files), 0);
    assert_int_equal(
        fxb_descindex_closure(ix, fxb_descindex_find_file(ix, "google/rpc/status.proto"), out, 1),
        0);
    free(out);
    fxb_descindex_free(ix);
}

static void test_index_real_set_declares_no_extensions(void **state)
{
    fxb_descindex *ix = real_index();
    assert_int_equal(fxb_descindex_extension_numbers(ix, "fxb.v1.GetInfoResponse", NULL, 0), 0);
    assert_int_equal(fxb_descindex_find_extension(ix, "fxb.v1.GetInfoResponse", 1),
                     FXB_DESCINDEX_NONE);
    fxb_descindex_free(ix);
}

/* --- the index over hand-built sets ---------------------------------------- */

/* a.proto <- b.proto, c.proto <- d.proto (a diamond), with extensions in b,
 * nesting and the root package in c. */
static void test_index_handles_extensions_nesting_root_package_and_diamonds(void **state)
{
    fdp a, b, c, d;
    file_init(&a, "a.proto", "ext");
    file_init(&b, "b.proto", "ext");
    file_init(&c, "c.proto", NULL);
    file_init(&d, "d.proto", "ext.more");

    Google__Protobuf__DescriptorProto base, holder, root, inner;
    message_init(&base, "Base");
    Google__Protobuf__DescriptorProto *a_msgs[] = {&base};
    a.n_message_type = 1;
    a.message_type = a_msgs;
    Google__Protobuf__EnumValueDescriptorProto red =
        GOOGLE__PROTOBUF__ENUM_VALUE_DESCRIPTOR_PROTO__INIT;
    red.name = "RED";
    Google__Protobuf__EnumValueDescriptorProto *colors[] = {&red};
    Google__Protobuf__EnumDescriptorProto color = GOOGLE__PROTOBUF__ENUM_DESCRIPTOR_PROTO__INIT;
    color.name = "Color";
    color.n_value = 1;
    color.value = colors;
    Google__Protobuf__EnumDescriptorProto *a_enums[] = {&color};
    a.n_enum_type = 1;
    a.enum_type = a_enums;

    char *b_deps[] = {"a.proto"};
    b.n_dependency = 1;
    b.dependency = b_deps;
    Google__Protobuf__FieldDescriptorProto tag, note;
    extension_init(&tag, "tag", ".ext.Base", 100);
    extension_init(&note, "note", ".ext.Base", 101);
    Google__Protobuf__FieldDescriptorProto *b_exts[] = {&tag};
    b.n_extension = 1;
    b.extension = b_exts;
    message_init(&holder, "Holder");
    Google__Protobuf__FieldDescriptorProto *holder_exts[] = {&note};
    holder.n_extension = 1;
    holder.extension = holder_exts;
    Google__Protobuf__DescriptorProto *b_msgs[] = {&holder};
    b.n_message_type = 1;
    b.message_type = b_msgs;

    c.dependency = b_deps; /* also imports a.proto */
    c.n_dependency = 1;
    message_init(&root, "Root");
    message_init(&inner, "Inner");
    Google__Protobuf__DescriptorProto *root_nested[] = {&inner};
    root.n_nested_type = 1;
    root.nested_type = root_nested;
    Google__Protobuf__DescriptorProto *c_msgs[] = {&root};
    c.n_message_type = 1;
    c.message_type = c_msgs;

    char *d_deps[] = {"b.proto", "c.proto"};
    d.n_dependency = 2;
    d.dependency = d_deps;

    fdp *files[] = {&a, &b, &c, &d};
    fxb_err err;
    fxb_err_clear(&err);
    fxb_descindex *ix = index_of(files, 4, &err);
    if (ix == NULL)
        fail_msg("refused: %s", err.message);

    assert_symbol(ix, "ext.Base", "a.proto", FXB_SYMBOL_MESSAGE);
    assert_symbol(ix, "ext.Color", "a.proto", FXB_SYMBOL_ENUM);
    assert_symbol(ix, "ext.RED", "a.proto", FXB_SYMBOL_ENUM_VALUE);
    assert_symbol(ix, "ext.tag", "b.proto", FXB_SYMBOL_EXTENSION);
    assert_symbol(ix, "ext.Holder.note", "b.proto", FXB_SYMBOL_EXTENSION);
    assert_symbol(ix, "Root", "c.proto", FXB_SYMBOL_MESSAGE);
    assert_symbol(ix, "Root.Inner", "c.proto", FXB_SYMBOL_MESSAGE);
    assert_symbol(ix, ".Root.Inner", "c.proto", FXB_SYMBOL_MESSAGE);

    assert_string_equal(file_name_at(ix, fxb_descindex_find_extension(ix, "ext.Base", 101)),
                        "b.proto");
    assert_string_equal(file_name_at(ix, fxb_descindex_find_extension(ix, ".ext.Base", 100)),
                        "b.proto");
    assert_int_equal(fxb_descindex_find_extension(ix, "ext.Base", 102), FXB_DESCINDEX_NONE);
    assert_int_equal(fxb_descindex_find_extension(ix, "ext.Holder", 101), FXB_DESCINDEX_NONE);
    int32_t numbers[4] = {0};
    assert_int_equal(fxb_descindex_extension_numbers(ix, "ext.Base", numbers, 4), 2);
    assert_int_equal(numbers[0], 100);
    assert_int_equal(numbers[1], 101);
    assert_int_equal(fxb_descindex_extension_numbers(ix, "ext.Base", numbers, 1), 2);
    assert_int_equal(fxb_descindex_extension_numbers(ix, "ext.Bas", NULL, 0), 0);

    size_t out[4];
    size_t n = fxb_descindex_closure(ix, fxb_descindex_find_file(ix, "d.proto"), out, 4);
    assert_int_equal(n, 4);
    assert_string_equal(file_name_at(ix, out[0]), "d.proto");
    assert_string_equal(file_name_at(ix, out[1]), "b.proto");
    assert_string_equal(file_name_at(ix, out[2]), "c.proto");
    assert_string_equal(file_name_at(ix, out[3]), "a.proto");
    fxb_descindex_free(ix);
}

static void test_index_skips_unknown_fields_of_the_set(void **state)
{
    fdp a;
    file_init(&a, "a.proto", "p");
    fdp *files[] = {&a};
    size_t len;
    uint8_t *packed = pack_set(files, 1, &len);
    /* field 2 varint, field 3 fixed32, field 4 fixed64, field 5 bytes, then the file */
    static const uint8_t prefix[] = {0x10, 0x01, 0x1D, 1, 2, 3, 4,    0x21, 1,    2,
                                     3,    4,    5,    6, 7, 8, 0x2A, 0x02, 0xAB, 0xCD};
    uint8_t *buf = malloc(sizeof prefix + len);
    assert_non_null(buf);
    memcpy(buf, prefix, sizeof prefix);
    memcpy(buf + sizeof prefix, packed, len);
    fxb_err err;
    fxb_descindex *ix = fxb_descindex_new(buf, sizeof prefix + len, &err);
    assert_non_null(ix);
    assert_int_equal(fxb_descindex_file_count(ix), 1);
    assert_string_equal(file_name_at(ix, 0), "a.proto");
    fxb_descindex_free(ix);
    free(buf);
    free(packed);
}

static void test_index_of_an_empty_set_is_empty(void **state)
{
    fxb_err err;
    fxb_descindex *ix = fxb_descindex_new(NULL, 0, &err);
    assert_non_null(ix);
    assert_int_equal(fxb_descindex_file_count(ix), 0);
    assert_int_equal(fxb_descindex_find_file(ix, "a.proto"), FXB_DESCINDEX_NONE);
    assert_int_equal(fxb_descindex_find_symbol(ix, "a", NULL), FXB_DESCINDEX_NONE);
    fxb_descindex_free(ix);
    fxb_descindex_free(NULL);
}

static void assert_refused(fdp **files, size_t n, const char *why)
{
    fxb_err err;
    fxb_err_clear(&err);
    assert_null(index_of(files, n, &err));
    assert_int_equal(err.code, FXB_INVALID_ARGUMENT);
    if (strstr(err.message, why) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", why, err.message);
}

static void test_index_refuses_an_import_missing_from_the_set(void **state)
{
    fdp a;
    file_init(&a, "a.proto", "p");
    char *deps[] = {"missing.proto"};
    a.n_dependency = 1;
    a.dependency = deps;
    fdp *files[] = {&a};
    assert_refused(files, 1, "missing.proto");
}

static void test_index_refuses_a_symbol_defined_twice(void **state)
{
    fdp a, b;
    file_init(&a, "a.proto", "p");
    file_init(&b, "b.proto", "p");
    Google__Protobuf__DescriptorProto m;
    message_init(&m, "M");
    Google__Protobuf__DescriptorProto *msgs[] = {&m};
    a.n_message_type = b.n_message_type = 1;
    a.message_type = b.message_type = msgs;
    fdp *files[] = {&a, &b};
    assert_refused(files, 2, "p.M");
}

static void test_index_refuses_a_file_listed_twice(void **state)
{
    fdp a, b;
    file_init(&a, "a.proto", "p");
    file_init(&b, "a.proto", "q");
    fdp *files[] = {&a, &b};
    assert_refused(files, 2, "a.proto");
}

static void test_index_refuses_an_extension_declared_twice(void **state)
{
    fdp a;
    file_init(&a, "a.proto", "p");
    Google__Protobuf__FieldDescriptorProto x, y;
    extension_init(&x, "x", ".p.M", 7);
    extension_init(&y, "y", ".p.M", 7);
    Google__Protobuf__FieldDescriptorProto *exts[] = {&x, &y};
    a.n_extension = 2;
    a.extension = exts;
    fdp *files[] = {&a};
    assert_refused(files, 1, "extension 7");
}

static void test_index_refuses_messages_nested_too_deeply(void **state)
{
    enum { DEPTH = FXB_DESCINDEX_DEPTH_MAX + 2 };
    Google__Protobuf__DescriptorProto m[DEPTH];
    Google__Protobuf__DescriptorProto *child[DEPTH];
    for (size_t i = 0; i < DEPTH; i++) {
        message_init(&m[i], "N");
        child[i] = &m[i];
    }
    for (size_t i = 0; i + 1 < DEPTH; i++) {
        m[i].n_nested_type = 1;
        m[i].nested_type = &child[i + 1];
    }
    fdp a;
    file_init(&a, "a.proto", NULL);
    a.n_message_type = 1;
    a.message_type = &child[0];
    fdp *files[] = {&a};
    assert_refused(files, 1, "nested");
}

static void test_index_refuses_names_over_the_bound(void **state)
{
    char *name = malloc(FXB_DESCINDEX_SYMBOL_MAX + 2);
    assert_non_null(name);
    memset(name, 'x', FXB_DESCINDEX_SYMBOL_MAX + 1);
    name[FXB_DESCINDEX_SYMBOL_MAX + 1] = '\0';
    Google__Protobuf__DescriptorProto m;
    message_init(&m, name);
    Google__Protobuf__DescriptorProto *msgs[] = {&m};
    fdp a;
    file_init(&a, "a.proto", NULL);
    a.n_message_type = 1;
    a.message_type = msgs;
    fdp *files[] = {&a};
    assert_refused(files, 1, "too long");
    free(name);
}

static void test_index_refuses_malformed_bytes(void **state)
{
    static const struct {
        uint8_t bytes[8];
        size_t len;
    } bad[] = {
        {{0x0A, 0x05, 0x01}, 3},       /* length past the end */
        {{0xFF}, 1},                   /* truncated varint */
        {{0x0A, 0x02, 0xFF, 0xFF}, 4}, /* a file that is not a FileDescriptorProto */
        {{0x0B, 0x0C}, 2},             /* a group */
        {{0x00, 0x00}, 2},             /* field number 0 */
        {{0x0D, 0x01, 0x02}, 3},       /* fixed32 cut short */
        {{0x0A, 0x00}, 2},             /* a file without a name */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fxb_err err;
        fxb_err_clear(&err);
        assert_null(fxb_descindex_new(bad[i].bytes, bad[i].len, &err));
        assert_int_equal(err.code, FXB_INVALID_ARGUMENT);
    }
    fxb_err err;
    assert_null(fxb_descindex_new(NULL, 4, &err));
    assert_null(fxb_descindex_new(fxb_descriptor_set, FXB_DESCINDEX_SET_MAX + 1u, &err));
    /* a truncated real set */
    assert_null(fxb_descindex_new(fxb_descriptor_set, fxb_descriptor_set_len - 1, &err));
}

/* --- the reflection answers ------------------------------------------------ */

static int reflection_up(void **state)
{
    fxb_err err;
    fxb_err_clear(&err);
    if (fxb_reflection_init(registered, N_REGISTERED, &err) != FXB_OK) {
        print_error("fxb_reflection_init: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int reflection_down(void **state)
{
    fxb_reflection_shutdown();
    return 0;
}

static void test_list_services_returns_registered_services_sorted_once(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(REQ_CASE(LIST_SERVICES), "*");
    refl_response resp;
    answer(&a, &req, &resp);
    assert_int_equal(resp.message_response_case, RESP_CASE(LIST_SERVICES_RESPONSE));
    const Grpc__Reflection__V1alpha__ListServiceResponse *lr = resp.list_services_response;
    static const char *const want[] = {
        "fxb.v1.DiagService",
        "fxb.v1.SystemService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    };
    assert_int_equal(lr->n_service, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < lr->n_service; i++)
        assert_string_equal(lr->service[i]->name, want[i]);
    fxb_arena_free(&a);
}

static void test_symbol_lookup_returns_the_defining_file(void **state)
{
    static const char *const system[] = {"fxb/v1/system.proto"};
    assert_symbol_answer("fxb.v1.SystemService", system, 1);
    assert_symbol_answer("fxb.v1.SystemService.GetInfo", system, 1);
    assert_symbol_answer("fxb.v1.GetInfoResponse", system, 1);
    static const char *const health[] = {"grpc/health/v1/health.proto"};
    assert_symbol_answer("grpc.health.v1.HealthCheckResponse.ServingStatus", health, 1);
    assert_symbol_answer("grpc.health.v1.Health", health, 1);
    static const char *const refl[] = {"grpc/reflection/v1alpha/reflection.proto"};
    assert_symbol_answer("grpc.reflection.v1alpha.ServerReflection", refl, 1);
}

static void test_symbol_lookup_includes_transitive_imports(void **state)
{
    static const char *const status[] = {"google/rpc/status.proto", "google/protobuf/any.proto"};
    assert_symbol_answer("google.rpc.Status", status, 2);
    static const char *const details[] = {"google/rpc/error_details.proto",
                                          "google/protobuf/duration.proto"};
    assert_symbol_answer("google.rpc.RetryInfo", details, 2);
}

static void test_file_by_filename_returns_file_and_imports(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(REQ_CASE(FILE_BY_FILENAME), "google/rpc/status.proto");
    refl_response resp;
    answer(&a, &req, &resp);
    static const char *const want[] = {"google/rpc/status.proto", "google/protobuf/any.proto"};
    assert_files(&resp, want, 2);

    req = name_request(REQ_CASE(FILE_BY_FILENAME), "fxb/v1/diag.proto");
    answer(&a, &req, &resp);
    static const char *const diag[] = {"fxb/v1/diag.proto"};
    assert_files(&resp, diag, 1);
    fxb_arena_free(&a);
}

static void test_unknown_symbol_or_file_is_not_found(void **state)
{
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "fxb.v1.NoSuchService", FXB_NOT_FOUND);
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "fxb.v1", FXB_NOT_FOUND);
    assert_request_error(REQ_CASE(FILE_BY_FILENAME), "fxb/v1/nope.proto", FXB_NOT_FOUND);
    assert_request_error(REQ_CASE(FILE_BY_FILENAME), "google/protobuf/descriptor.proto",
                         FXB_NOT_FOUND);
}

static void test_unset_or_empty_request_is_invalid_argument(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    refl_response resp;
    answer(&a, &req, &resp);
    assert_error_response(&resp, FXB_INVALID_ARGUMENT);
    fxb_arena_free(&a);

    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "", FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(FILE_BY_FILENAME), "", FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), "", FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), NULL, FXB_INVALID_ARGUMENT);
}

static void test_names_over_1024_bytes_are_invalid_argument(void **state)
{
    char *name = malloc(FXB_REFLECTION_NAME_MAX + 2);
    assert_non_null(name);
    memset(name, 'a', FXB_REFLECTION_NAME_MAX + 1);
    name[FXB_REFLECTION_NAME_MAX + 1] = '\0';
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), name, FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(FILE_BY_FILENAME), name, FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), name, FXB_INVALID_ARGUMENT);
    name[FXB_REFLECTION_NAME_MAX] = '\0'; /* exactly at the bound: looked up */
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), name, FXB_NOT_FOUND);
    free(name);
}

static void test_names_that_are_not_utf8_are_invalid_argument(void **state)
{
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "fxb.v1.\xff", FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "\xc0\xae", FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "\xed\xa0\x80", FXB_INVALID_ARGUMENT);
    assert_request_error(REQ_CASE(FILE_BY_FILENAME), "a\xe4\xb8", FXB_INVALID_ARGUMENT);
    /* valid multi-byte text is merely unknown */
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "fxb.v1.服务", FXB_NOT_FOUND);
    assert_request_error(REQ_CASE(FILE_CONTAINING_SYMBOL), "\xf0\x9f\x98\x80", FXB_NOT_FOUND);

    /* never echo invalid text, wherever it is */
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(REQ_CASE(LIST_SERVICES), "");
    req.host = "bad\xfe";
    refl_response resp;
    answer(&a, &req, &resp);
    assert_error_response(&resp, FXB_INVALID_ARGUMENT);
    assert_null(resp.original_request);
    req = name_request(REQ_CASE(LIST_SERVICES), "\x80");
    answer(&a, &req, &resp);
    assert_error_response(&resp, FXB_INVALID_ARGUMENT);
    assert_null(resp.original_request);
    req = name_request(REQ_CASE(FILE_CONTAINING_SYMBOL), "x\xf5\x80\x80\x80");
    answer(&a, &req, &resp);
    assert_error_response(&resp, FXB_INVALID_ARGUMENT);
    assert_null(resp.original_request);
    fxb_arena_free(&a);
}

static void test_extension_numbers_of_a_message_are_an_empty_list(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req =
        name_request(REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), "fxb.v1.GetInfoResponse");
    refl_response resp;
    answer(&a, &req, &resp);
    assert_int_equal(resp.message_response_case, RESP_CASE(ALL_EXTENSION_NUMBERS_RESPONSE));
    assert_string_equal(resp.all_extension_numbers_response->base_type_name,
                        "fxb.v1.GetInfoResponse");
    assert_int_equal(resp.all_extension_numbers_response->n_extension_number, 0);

    req = name_request(REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), ".google.rpc.Status");
    answer(&a, &req, &resp);
    assert_int_equal(resp.message_response_case, RESP_CASE(ALL_EXTENSION_NUMBERS_RESPONSE));
    assert_string_equal(resp.all_extension_numbers_response->base_type_name, "google.rpc.Status");
    fxb_arena_free(&a);
}

static void test_extension_numbers_of_anything_but_a_message_are_not_found(void **state)
{
    assert_request_error(REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), "fxb.v1.Nope", FXB_NOT_FOUND);
    assert_request_error(REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE),
                         "grpc.health.v1.HealthCheckResponse.ServingStatus", FXB_NOT_FOUND);
    assert_request_error(REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE), "fxb.v1.SystemService",
                         FXB_NOT_FOUND);
}

static void test_file_containing_extension_is_not_found(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    Grpc__Reflection__V1alpha__ExtensionRequest ext =
        GRPC__REFLECTION__V1ALPHA__EXTENSION_REQUEST__INIT;
    ext.containing_type = "fxb.v1.GetInfoResponse";
    ext.extension_number = 100;
    refl_request req = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = REQ_CASE(FILE_CONTAINING_EXTENSION);
    req.file_containing_extension = &ext;
    refl_response resp;
    answer(&a, &req, &resp);
    assert_error_response(&resp, FXB_NOT_FOUND);

    ext.containing_type = "";
    answer(&a, &req, &resp);
    assert_error_response(&resp, FXB_INVALID_ARGUMENT);

    req.file_containing_extension = NULL;
    answer(&a, &req, &resp);
    assert_error_response(&resp, FXB_INVALID_ARGUMENT);
    fxb_arena_free(&a);
}

static void test_answer_echoes_host_and_request_and_survives_the_wire(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(REQ_CASE(FILE_CONTAINING_SYMBOL), "google.rpc.Status");
    req.host = "localhost:50051";
    refl_response resp;
    answer(&a, &req, &resp);
    assert_string_equal(resp.valid_host, "localhost:50051");
    assert_ptr_equal(resp.original_request, &req);

    size_t len = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&resp);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    grpc__reflection__v1alpha__server_reflection_response__pack(&resp, buf);
    refl_response *back =
        grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, len, buf);
    assert_non_null(back);
    assert_string_equal(back->valid_host, "localhost:50051");
    assert_non_null(back->original_request);
    assert_int_equal(back->original_request->message_request_case,
                     REQ_CASE(FILE_CONTAINING_SYMBOL));
    assert_string_equal(back->original_request->file_containing_symbol, "google.rpc.Status");
    static const char *const want[] = {"google/rpc/status.proto", "google/protobuf/any.proto"};
    assert_files(back, want, 2);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(back, NULL);
    free(buf);
    fxb_arena_free(&a);
}

static void test_answer_reports_a_full_arena(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 32);
    refl_request req = name_request(REQ_CASE(LIST_SERVICES), "");
    refl_response resp;
    assert_int_equal(fxb_reflection_answer(&a, &req, &resp), FXB_RESOURCE_EXHAUSTED);
    req = name_request(REQ_CASE(FILE_CONTAINING_SYMBOL), "google.rpc.Status");
    assert_int_equal(fxb_reflection_answer(&a, &req, &resp), FXB_RESOURCE_EXHAUSTED);
    fxb_arena_free(&a);
}

/* --- init and the method table --------------------------------------------- */

static void test_answer_before_init_is_failed_precondition(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(REQ_CASE(LIST_SERVICES), "");
    refl_response resp;
    assert_int_equal(fxb_reflection_answer(&a, &req, &resp), FXB_FAILED_PRECONDITION);
    fxb_arena_free(&a);
}

static void test_init_refuses_a_service_it_cannot_describe(void **state)
{
    fxb_err err;
    const char *const unknown[] = {"fxb.v1.SystemService", "fxb.v1.NoSuchService"};
    assert_int_equal(fxb_reflection_init(unknown, 2, &err), FXB_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "fxb.v1.NoSuchService"));
    const char *const message[] = {"fxb.v1.GetInfoRequest"};
    assert_int_equal(fxb_reflection_init(message, 1, &err), FXB_FAILED_PRECONDITION);
    const char *const dotted[] = {".fxb.v1.SystemService"};
    assert_int_equal(fxb_reflection_init(dotted, 1, &err), FXB_INVALID_ARGUMENT);
    const char *const null_name[] = {NULL};
    assert_int_equal(fxb_reflection_init(null_name, 1, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_reflection_init(NULL, 1, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_reflection_init(registered, FXB_REFLECTION_SERVICES_MAX + 1, &err),
                     FXB_INVALID_ARGUMENT);
    /* nothing was kept */
    test_answer_before_init_is_failed_precondition(state);
}

static void test_init_twice_is_refused_and_shutdown_is_idempotent(void **state)
{
    fxb_err err;
    assert_int_equal(fxb_reflection_init(NULL, 0, &err), FXB_OK);
    assert_int_equal(fxb_reflection_init(registered, N_REGISTERED, &err), FXB_FAILED_PRECONDITION);

    fxb_arena a;
    fxb_arena_init(&a, 0);
    refl_request req = name_request(REQ_CASE(LIST_SERVICES), "");
    refl_response resp;
    answer(&a, &req, &resp);
    assert_int_equal(resp.list_services_response->n_service, 0);
    fxb_arena_free(&a);

    fxb_reflection_shutdown();
    fxb_reflection_shutdown();
    assert_int_equal(fxb_reflection_init(registered, N_REGISTERED, &err), FXB_OK);
    fxb_reflection_shutdown();
}

static void test_service_table_declares_the_bidi_method(void **state)
{
    assert_string_equal(fxb_reflection_service.name, "grpc.reflection.v1alpha.ServerReflection");
    assert_int_equal(fxb_reflection_service.n_methods, 1);
    const fxb_method *m = &fxb_reflection_service.methods[0];
    assert_string_equal(m->path, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
    assert_int_equal(m->kind, FXB_RPC_BIDI);
    assert_ptr_equal(m->request, &grpc__reflection__v1alpha__server_reflection_request__descriptor);
    assert_ptr_equal(m->response,
                     &grpc__reflection__v1alpha__server_reflection_response__descriptor);
    assert_null(m->unary);
    assert_non_null(m->stream);
    assert_non_null(m->stream->on_message);
    assert_non_null(m->stream->on_half_close);
}

int main(void)
{
    const struct CMUnitTest index_tests[] = {
        cmocka_unit_test(test_index_holds_every_proto_and_its_imports),
        cmocka_unit_test(test_index_serves_the_bytes_protoc_wrote),
        cmocka_unit_test(test_index_finds_every_kind_of_symbol),
        cmocka_unit_test(test_index_knows_no_packages_prefixes_or_strangers),
        cmocka_unit_test(test_index_closure_is_file_then_imports),
        cmocka_unit_test(test_index_real_set_declares_no_extensions),
        cmocka_unit_test(test_index_handles_extensions_nesting_root_package_and_diamonds),
        cmocka_unit_test(test_index_skips_unknown_fields_of_the_set),
        cmocka_unit_test(test_index_of_an_empty_set_is_empty),
        cmocka_unit_test(test_index_refuses_an_import_missing_from_the_set),
        cmocka_unit_test(test_index_refuses_a_symbol_defined_twice),
        cmocka_unit_test(test_index_refuses_a_file_listed_twice),
        cmocka_unit_test(test_index_refuses_an_extension_declared_twice),
        cmocka_unit_test(test_index_refuses_messages_nested_too_deeply),
        cmocka_unit_test(test_index_refuses_names_over_the_bound),
        cmocka_unit_test(test_index_refuses_malformed_bytes),
    };
    const struct CMUnitTest answer_tests[] = {
        cmocka_unit_test(test_list_services_returns_registered_services_sorted_once),
        cmocka_unit_test(test_symbol_lookup_returns_the_defining_file),
        cmocka_unit_test(test_symbol_lookup_includes_transitive_imports),
        cmocka_unit_test(test_file_by_filename_returns_file_and_imports),
        cmocka_unit_test(test_unknown_symbol_or_file_is_not_found),
        cmocka_unit_test(test_unset_or_empty_request_is_invalid_argument),
        cmocka_unit_test(test_names_over_1024_bytes_are_invalid_argument),
        cmocka_unit_test(test_names_that_are_not_utf8_are_invalid_argument),
        cmocka_unit_test(test_extension_numbers_of_a_message_are_an_empty_list),
        cmocka_unit_test(test_extension_numbers_of_anything_but_a_message_are_not_found),
        cmocka_unit_test(test_file_containing_extension_is_not_found),
        cmocka_unit_test(test_answer_echoes_host_and_request_and_survives_the_wire),
        cmocka_unit_test(test_answer_reports_a_full_arena),
    };
    const struct CMUnitTest init_tests[] = {
        cmocka_unit_test(test_answer_before_init_is_failed_precondition),
        cmocka_unit_test(test_init_refuses_a_service_it_cannot_describe),
        cmocka_unit_test(test_init_twice_is_refused_and_shutdown_is_idempotent),
        cmocka_unit_test(test_service_table_declares_the_bidi_method),
    };
    int failed = cmocka_run_group_tests_name("descindex", index_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("reflection answers", answer_tests, reflection_up,
                                          reflection_down);
    failed += cmocka_run_group_tests_name("reflection init", init_tests, NULL, NULL);
    return failed ? 1 : 0;
}
