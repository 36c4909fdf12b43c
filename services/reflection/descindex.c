/* The symbol index behind server reflection. The set is split into its files
 * by reading the outer wire format directly, so each file is served with the
 * exact bytes protoc wrote; each file is then unpacked once with protobuf-c
 * to collect its names, and the unpacked form is dropped. Lookups are binary
 * searches over sorted arrays; transitive imports are computed at build time
 * so that lookups never allocate. */
#include "descindex.h"

#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"

typedef struct desc_symbol {
    char *name;
    size_t file;
    fxb_symbol_kind kind;
} desc_symbol;

typedef struct desc_ext {
    char *extendee; /* fully-qualified, no leading '.' */
    int32_t number;
    size_t file;
} desc_ext;

typedef struct desc_file {
    fxb_descfile pub;
    char **deps; /* import names, resolved into closure */
    size_t n_deps;
    size_t *closure; /* this file, then its transitive imports */
    size_t n_closure;
} desc_file;

struct fxb_descindex {
    uint8_t *buf; /* our copy of the set; files point into it */
    desc_file *files;
    size_t n_files;
    desc_file **by_name; /* files sorted by name */
    desc_symbol *syms;
    size_t n_syms, cap_syms;
    desc_ext *exts;
    size_t n_exts, cap_exts;
};

/* Scratch state while building; err is filled on the first failure. */
typedef struct builder {
    fxb_descindex *ix;
    fxb_err *err;
    size_t file;
} builder;

static fxb_code oom(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "DESCRIPTOR_INDEX_OOM", "服务器内存不足",
                       "out of memory building the descriptor index");
}

static fxb_code bad_set(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DESCRIPTOR_SET_INVALID", "服务描述数据无效",
                       "invalid descriptor set: %s", what);
}

static const char *strip_dot(const char *s)
{
    return s[0] == '.' ? s + 1 : s;
}

/* --- the outer wire format ---------------------------------------------- */

/* Reads a varint at *pos; false when truncated or longer than 10 bytes. */
static bool read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return false;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Calls fn on every field 1 (FileDescriptorProto) of the set, skipping other
 * fields as the wire format allows. Returns false on malformed input. */
static bool each_file(const uint8_t *p, size_t len,
                      bool (*fn)(void *arg, const uint8_t *data, size_t n), void *arg)
{
    size_t pos = 0;
    while (pos < len) {
        uint64_t tag, v;
        if (!read_varint(p, len, &pos, &tag) || (tag >> 3) == 0)
            return false;
        switch (tag & 7) {
        case 0:
            if (!read_varint(p, len, &pos, &v))
                return false;
            break;
        case 1:
            if (len - pos < 8)
                return false;
            pos += 8;
            break;
        case 2:
            if (!read_varint(p, len, &pos, &v) || v > len - pos)
                return false;
            if ((tag >> 3) == 1 && !fn(arg, p + pos, (size_t)v))
                return false;
            pos += (size_t)v;
            break;
        case 5:
            if (len - pos < 4)
                return false;
            pos += 4;
            break;
        default: /* groups are not used by FileDescriptorSet */
            return false;
        }
    }
    return true;
}

static bool count_file(void *arg, const uint8_t *data, size_t n)
{
    size_t *count = arg;
    (*count)++;
    return *count <= FXB_DESCINDEX_FILES_MAX;
}

static bool slice_file(void *arg, const uint8_t *data, size_t n)
{
    fxb_descindex *ix = arg;
    ix->files[ix->n_files].pub.data = data;
    ix->files[ix->n_files].pub.len = n;
    ix->n_files++;
    return true;
}

/* --- collecting names --------------------------------------------------- */

/* scope + "." + name (or name alone at the root) in a new malloc'd string;
 * NULL with *err filled when too long or out of memory. */
static char *join(builder *b, const char *scope, const char *name)
{
    if (name == NULL || name[0] == '\0') {
        bad_set(b->err, "declaration without a name");
        return NULL;
    }
    size_t ls = scope ? strlen(scope) : 0;
    size_t ln = strlen(name);
    size_t total = ls + (ls ? 1 : 0) + ln;
    if (total > FXB_DESCINDEX_SYMBOL_MAX) {
        bad_set(b->err, "symbol name too long");
        return NULL;
    }
    char *s = malloc(total + 1);
    if (s == NULL) {
        oom(b->err);
        return NULL;
    }
    size_t off = 0;
    if (ls) {
        memcpy(s, scope, ls);
        s[ls] = '.';
        off = ls + 1;
    }
    memcpy(s + off, name, ln + 1);
    return s;
}

/* Adds scope.name as a symbol of the current file. Returns the stored name
 * (owned by the index) or NULL with *err filled. */
static const char *add_symbol(builder *b, const char *scope, const char *name, fxb_symbol_kind kind)
{
    fxb_descindex *ix = b->ix;
    char *full = join(b, scope, name);
    if (full == NULL)
        return NULL;
    if (ix->n_syms == ix->cap_syms) {
        size_t cap = ix->cap_syms ? ix->cap_syms * 2 : 256;
        desc_symbol *n = realloc(ix->syms, cap * sizeof *n);
        if (n == NULL) {
            free(full);
            oom(b->err);
            return NULL;
        }
        ix->syms = n;
        ix->cap_syms = cap;
    }
    ix->syms[ix->n_syms++] = (desc_symbol){.name = full, .file = b->file, .kind = kind};
    return full;
}

static bool add_extension(builder *b, const char *scope,
                          const Google__Protobuf__FieldDescriptorProto *f)
{
    fxb_descindex *ix = b->ix;
    if (add_symbol(b, scope, f->name, FXB_SYMBOL_EXTENSION) == NULL)
        return false;
    if (f->extendee == NULL || strip_dot(f->extendee)[0] == '\0' || !f->has_number) {
        bad_set(b->err, "extension without extendee or number");
        return false;
    }
    char *extendee = join(b, NULL, strip_dot(f->extendee));
    if (extendee == NULL)
        return false;
    if (ix->n_exts == ix->cap_exts) {
        size_t cap = ix->cap_exts ? ix->cap_exts * 2 : 16;
        desc_ext *n = realloc(ix->exts, cap * sizeof *n);
        if (n == NULL) {
            free(extendee);
            oom(b->err);
            return false;
        }
        ix->exts = n;
        ix->cap_exts = cap;
    }
    ix->exts[ix->n_exts++] = (desc_ext){.extendee = extendee, .number = f->number, .file = b->file};
    return true;
}

/* Enum values are siblings of their enum in C++ scoping: pkg.Outer.VALUE. */
static bool add_enum(builder *b, const char *scope, const Google__Protobuf__EnumDescriptorProto *e)
{
    if (add_symbol(b, scope, e->name, FXB_SYMBOL_ENUM) == NULL)
        return false;
    for (size_t i = 0; i < e->n_value; i++)
        if (add_symbol(b, scope, e->value[i]->name, FXB_SYMBOL_ENUM_VALUE) == NULL)
            return false;
    return true;
}

static bool add_message(builder *b, const char *scope, const Google__Protobuf__DescriptorProto *m,
                        unsigned depth)
{
    if (depth > FXB_DESCINDEX_DEPTH_MAX) {
        bad_set(b->err, "messages nested too deeply");
        return false;
    }
    const char *name = add_symbol(b, scope, m->name, FXB_SYMBOL_MESSAGE);
    if (name == NULL)
        return false;
    for (size_t i = 0; i < m->n_field; i++)
        if (add_symbol(b, name, m->field[i]->name, FXB_SYMBOL_FIELD) == NULL)
            return false;
    for (size_t i = 0; i < m->n_oneof_decl; i++)
        if (add_symbol(b, name, m->oneof_decl[i]->name, FXB_SYMBOL_ONEOF) == NULL)
            return false;
    for (size_t i = 0; i < m->n_extension; i++)
        if (!add_extension(b, name, m->extension[i]))
            return false;
    for (size_t i = 0; i < m->n_enum_type; i++)
        if (!add_enum(b, name, m->enum_type[i]))
            return false;
    for (size_t i = 0; i < m->n_nested_type; i++)
        if (!add_message(b, name, m->nested_type[i], depth + 1))
            return false;
    return true;
}

static bool add_file(builder *b, const Google__Protobuf__FileDescriptorProto *fd)
{
    desc_file *f = &b->ix->files[b->file];
    if (fd->name == NULL || fd->name[0] == '\0') {
        bad_set(b->err, "file without a name");
        return false;
    }
    f->pub.name = join(b, NULL, fd->name);
    if (f->pub.name == NULL)
        return false;
    if (fd->n_dependency > FXB_DESCINDEX_FILES_MAX) {
        bad_set(b->err, "too many imports");
        return false;
    }
    if (fd->n_dependency) {
        f->deps = calloc(fd->n_dependency, sizeof *f->deps);
        if (f->deps == NULL) {
            oom(b->err);
            return false;
        }
    }
    for (size_t i = 0; i < fd->n_dependency; i++) {
        f->deps[i] = join(b, NULL, fd->dependency[i]);
        if (f->deps[i] == NULL)
            return false;
        f->n_deps++;
    }

    const char *pkg = fd->package && fd->package[0] ? fd->package : NULL;
    for (size_t i = 0; i < fd->n_message_type; i++)
        if (!add_message(b, pkg, fd->message_type[i], 0))
            return false;
    for (size_t i = 0; i < fd->n_enum_type; i++)
        if (!add_enum(b, pkg, fd->enum_type[i]))
            return false;
    for (size_t i = 0; i < fd->n_extension; i++)
        if (!add_extension(b, pkg, fd->extension[i]))
            return false;
    for (size_t i = 0; i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
        const char *name = add_symbol(b, pkg, s->name, FXB_SYMBOL_SERVICE);
        if (name == NULL)
            return false;
        for (size_t j = 0; j < s->n_method; j++)
            if (add_symbol(b, name, s->method[j]->name, FXB_SYMBOL_METHOD) == NULL)
                return false;
    }
    return true;
}

/* --- sorting and resolving ---------------------------------------------- */

static int cmp_file_name(const void *a, const void *b)
{
    const desc_file *const *x = a, *const *y = b;
    return strcmp((*x)->pub.name, (*y)->pub.name);
}

static int cmp_symbol(const void *a, const void *b)
{
    const desc_symbol *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int cmp_ext(const void *a, const void *b)
{
    const desc_ext *x = a, *y = b;
    int c = strcmp(x->extendee, y->extendee);
    if (c != 0)
        return c;
    return (x->number > y->number) - (x->number < y->number);
}

/* Breadth-first over imports; seen is scratch of n_files bools. */
static bool build_closure(builder *b, size_t start, bool *seen)
{
    fxb_descindex *ix = b->ix;
    desc_file *f = &ix->files[start];
    f->closure = malloc(ix->n_files * sizeof *f->closure);
    if (f->closure == NULL) {
        oom(b->err);
        return false;
    }
    memset(seen, 0, ix->n_files * sizeof *seen);
    size_t n = 0;
    f->closure[n++] = start;
    seen[start] = true;
    for (size_t head = 0; head < n; head++) {
        const desc_file *cur = &ix->files[f->closure[head]];
        for (size_t i = 0; i < cur->n_deps; i++) {
            size_t dep = fxb_descindex_find_file(ix, cur->deps[i]);
            if (dep == FXB_DESCINDEX_NONE) {
                fxb_err_set(b->err, FXB_INVALID_ARGUMENT, "DESCRIPTOR_SET_INVALID",
                            "服务描述数据无效",
                            "invalid descriptor set: %s imports %s, which is not in the set",
                            cur->pub.name, cur->deps[i]);
                return false;
            }
            if (!seen[dep]) {
                seen[dep] = true;
                f->closure[n++] = dep;
            }
        }
    }
    f->n_closure = n;
    return true;
}

static bool finish(builder *b)
{
    fxb_descindex *ix = b->ix;
    ix->by_name = malloc((ix->n_files ? ix->n_files : 1) * sizeof *ix->by_name);
    if (ix->by_name == NULL) {
        oom(b->err);
        return false;
    }
    for (size_t i = 0; i < ix->n_files; i++)
        ix->by_name[i] = &ix->files[i];
    if (ix->n_files > 1)
        qsort(ix->by_name, ix->n_files, sizeof *ix->by_name, cmp_file_name);
    for (size_t i = 1; i < ix->n_files; i++) {
        if (cmp_file_name(&ix->by_name[i - 1], &ix->by_name[i]) == 0) {
            fxb_err_set(b->err, FXB_INVALID_ARGUMENT, "DESCRIPTOR_SET_INVALID", "服务描述数据无效",
                        "invalid descriptor set: file %s appears twice", ix->by_name[i]->pub.name);
            return false;
        }
    }

    /* qsort's base must not be NULL, even for zero elements */
    if (ix->n_syms > 1)
        qsort(ix->syms, ix->n_syms, sizeof *ix->syms, cmp_symbol);
    for (size_t i = 1; i < ix->n_syms; i++) {
        if (strcmp(ix->syms[i - 1].name, ix->syms[i].name) == 0) {
            fxb_err_set(b->err, FXB_INVALID_ARGUMENT, "DESCRIPTOR_SET_INVALID", "服务描述数据无效",
                        "invalid descriptor set: symbol %s defined twice", ix->syms[i].name);
            return false;
        }
    }
    if (ix->n_exts > 1)
        qsort(ix->exts, ix->n_exts, sizeof *ix->exts, cmp_ext);
    for (size_t i = 1; i < ix->n_exts; i++) {
        if (cmp_ext(&ix->exts[i - 1], &ix->exts[i]) == 0) {
            fxb_err_set(b->err, FXB_INVALID_ARGUMENT, "DESCRIPTOR_SET_INVALID", "服务描述数据无效",
                        "invalid descriptor set: extension %d of %s declared twice",
                        (int)ix->exts[i].number, ix->exts[i].extendee);
            return false;
        }
    }

    bool *seen = malloc((ix->n_files ? ix->n_files : 1) * sizeof *seen);
    if (seen == NULL) {
        oom(b->err);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < ix->n_files; i++)
        ok = build_closure(b, i, seen);
    free(seen);
    return ok;
}

fxb_descindex *fxb_descindex_new(const uint8_t *set, size_t len, fxb_err *err)
{
    if (set == NULL && len > 0) {
        bad_set(err, "no data");
        return NULL;
    }
    if (len > FXB_DESCINDEX_SET_MAX) {
        bad_set(err, "larger than FXB_DESCINDEX_SET_MAX");
        return NULL;
    }
    size_t count = 0;
    if (!each_file(set, len, count_file, &count)) {
        bad_set(err, count > FXB_DESCINDEX_FILES_MAX ? "too many files" : "malformed wire format");
        return NULL;
    }

    fxb_descindex *ix = calloc(1, sizeof *ix);
    if (ix == NULL) {
        oom(err);
        return NULL;
    }
    ix->buf = malloc(len ? len : 1);
    ix->files = calloc(count ? count : 1, sizeof *ix->files);
    if (ix->buf == NULL || ix->files == NULL) {
        oom(err);
        fxb_descindex_free(ix);
        return NULL;
    }
    if (len)
        memcpy(ix->buf, set, len);
    each_file(ix->buf, len, slice_file, ix); /* same bytes: cannot fail now */

    builder b = {.ix = ix, .err = err};
    for (b.file = 0; b.file < ix->n_files; b.file++) {
        const fxb_descfile *pf = &ix->files[b.file].pub;
        Google__Protobuf__FileDescriptorProto *fd =
            google__protobuf__file_descriptor_proto__unpack(NULL, pf->len, pf->data);
        if (fd == NULL) {
            bad_set(err, "a FileDescriptorProto does not parse");
            fxb_descindex_free(ix);
            return NULL;
        }
        bool ok = add_file(&b, fd);
        google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
        if (!ok) {
            fxb_descindex_free(ix);
            return NULL;
        }
    }
    if (!finish(&b)) {
        fxb_descindex_free(ix);
        return NULL;
    }
    return ix;
}

void fxb_descindex_free(fxb_descindex *ix)
{
    if (ix == NULL)
        return;
    for (size_t i = 0; i < ix->n_files; i++) {
        desc_file *f = &ix->files[i];
        free((char *)f->pub.name);
        for (size_t j = 0; j < f->n_deps; j++)
            free(f->deps[j]);
        free(f->deps);
        free(f->closure);
    }
    for (size_t i = 0; i < ix->n_syms; i++)
        free(ix->syms[i].name);
    for (size_t i = 0; i < ix->n_exts; i++)
        free(ix->exts[i].extendee);
    free(ix->syms);
    free(ix->exts);
    free(ix->by_name);
    free(ix->files);
    free(ix->buf);
    free(ix);
}

/* --- lookups ------------------------------------------------------------ */

size_t fxb_descindex_file_count(const fxb_descindex *ix)
{
    return ix->n_files;
}

const fxb_descfile *fxb_descindex_file(const fxb_descindex *ix, size_t i)
{
    return i < ix->n_files ? &ix->files[i].pub : NULL;
}

size_t fxb_descindex_find_file(const fxb_descindex *ix, const char *name)
{
    if (name == NULL || ix->by_name == NULL)
        return FXB_DESCINDEX_NONE;
    size_t lo = 0, hi = ix->n_files;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ix->by_name[mid]->pub.name);
        if (c == 0)
            return (size_t)(ix->by_name[mid] - ix->files);
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return FXB_DESCINDEX_NONE;
}

size_t fxb_descindex_find_symbol(const fxb_descindex *ix, const char *symbol, fxb_symbol_kind *kind)
{
    if (symbol == NULL)
        return FXB_DESCINDEX_NONE;
    symbol = strip_dot(symbol);
    size_t lo = 0, hi = ix->n_syms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(symbol, ix->syms[mid].name);
        if (c == 0) {
            if (kind)
                *kind = ix->syms[mid].kind;
            return ix->syms[mid].file;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return FXB_DESCINDEX_NONE;
}

/* First position in exts whose (extendee, number) is not below the key. */
static size_t ext_lower_bound(const fxb_descindex *ix, const char *extendee, int32_t number)
{
    desc_ext key = {.extendee = (char *)extendee, .number = number};
    size_t lo = 0, hi = ix->n_exts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_ext(&ix->exts[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t fxb_descindex_find_extension(const fxb_descindex *ix, const char *containing_type,
                                    int32_t number)
{
    if (containing_type == NULL)
        return FXB_DESCINDEX_NONE;
    containing_type = strip_dot(containing_type);
    size_t i = ext_lower_bound(ix, containing_type, number);
    if (i < ix->n_exts && ix->exts[i].number == number &&
        strcmp(ix->exts[i].extendee, containing_type) == 0)
        return ix->exts[i].file;
    return FXB_DESCINDEX_NONE;
}

size_t fxb_descindex_extension_numbers(const fxb_descindex *ix, const char *containing_type,
                                       int32_t *out, size_t cap)
{
    if (containing_type == NULL)
        return 0;
    containing_type = strip_dot(containing_type);
    size_t n = 0;
    for (size_t i = ext_lower_bound(ix, containing_type, INT32_MIN);
         i < ix->n_exts && strcmp(ix->exts[i].extendee, containing_type) == 0; i++) {
        if (n < cap)
            out[n] = ix->exts[i].number;
        n++;
    }
    return n;
}

size_t fxb_descindex_closure(const fxb_descindex *ix, size_t file, size_t *out, size_t cap)
{
    if (file >= ix->n_files)
        return 0;
    const desc_file *f = &ix->files[file];
    if (cap < f->n_closure)
        return 0;
    memcpy(out, f->closure, f->n_closure * sizeof *out);
    return f->n_closure;
}
