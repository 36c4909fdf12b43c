/* fxb_descindex: a read-only index over a serialized FileDescriptorSet, the
 * data server reflection serves. It keeps every file's serialized bytes as
 * they appear in the set and maps fully-qualified symbols, file names and
 * extensions to files. Built once, then only read: safe to share between
 * threads without locks. */
#ifndef FXB_DESCINDEX_H
#define FXB_DESCINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/status.h"

/* Bounds on the set we accept. The set is built into the binary, but the
 * index is generic code and refuses input it could not serve in full. */
#define FXB_DESCINDEX_SET_MAX    (16u * 1024u * 1024u) /* bytes of the whole set */
#define FXB_DESCINDEX_FILES_MAX  4096u                 /* files in the set */
#define FXB_DESCINDEX_SYMBOL_MAX 1024u                 /* bytes of a symbol or file name */
#define FXB_DESCINDEX_DEPTH_MAX  32u                   /* nesting of message declarations */

/* Returned by the lookups that give a file index when nothing matches. */
#define FXB_DESCINDEX_NONE SIZE_MAX

typedef struct fxb_descindex fxb_descindex;

typedef enum fxb_symbol_kind {
    FXB_SYMBOL_MESSAGE = 0,
    FXB_SYMBOL_ENUM,
    FXB_SYMBOL_ENUM_VALUE, /* scoped like C++: a sibling of its enum */
    FXB_SYMBOL_FIELD,
    FXB_SYMBOL_ONEOF,
    FXB_SYMBOL_EXTENSION,
    FXB_SYMBOL_SERVICE,
    FXB_SYMBOL_METHOD,
} fxb_symbol_kind;

/* One file of the set. data/len are the FileDescriptorProto bytes exactly as
 * they were in the set; all pointers are owned by the index. */
typedef struct fxb_descfile {
    const char *name; /* "google/rpc/status.proto" */
    const uint8_t *data;
    size_t len;
} fxb_descfile;

/* Parses a serialized google.protobuf.FileDescriptorSet (the index keeps its
 * own copy of the bytes) and indexes every file. Fails when the bytes do not
 * parse, a bound above is passed, a file name or symbol is defined twice, or
 * a file imports one missing from the set. On failure returns NULL and fills
 * *err (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED when out of memory). The
 * caller frees the result with fxb_descindex_free. */
fxb_descindex *fxb_descindex_new(const uint8_t *set, size_t len, fxb_err *err);

/* Frees the index and everything it handed out. NULL is a no-op. */
void fxb_descindex_free(fxb_descindex *ix);

/* Files, in the order of the set (protoc --include_imports puts every file
 * after its imports). i must be below fxb_descindex_file_count. */
size_t fxb_descindex_file_count(const fxb_descindex *ix);
const fxb_descfile *fxb_descindex_file(const fxb_descindex *ix, size_t i);

/* Index of the file named name, or FXB_DESCINDEX_NONE. */
size_t fxb_descindex_find_file(const fxb_descindex *ix, const char *name);

/* Index of the file defining the fully-qualified symbol ("fxb.v1.GetInfoResponse",
 * "fxb.v1.SystemService.GetInfo"; one leading '.' is accepted), or
 * FXB_DESCINDEX_NONE. When found and kind is not NULL, stores the symbol's
 * kind. Packages are not symbols. */
size_t fxb_descindex_find_symbol(const fxb_descindex *ix, const char *symbol,
                                 fxb_symbol_kind *kind);

/* Index of the file declaring extension number of the message type
 * containing_type (fully-qualified, one leading '.' accepted), or
 * FXB_DESCINDEX_NONE. */
size_t fxb_descindex_find_extension(const fxb_descindex *ix, const char *containing_type,
                                    int32_t number);

/* Writes the extension numbers declared anywhere in the set for the message
 * type containing_type, ascending, into out (at most cap of them; out may be
 * NULL when cap is 0). Returns how many there are in all, so a caller may ask
 * with cap 0 first. */
size_t fxb_descindex_extension_numbers(const fxb_descindex *ix, const char *containing_type,
                                       int32_t *out, size_t cap);

/* Writes the file at index file, then every file it imports directly or
 * transitively, each once, into out (cap entries; fxb_descindex_file_count
 * is always enough). Returns the number written; 0 when file is out of range
 * or cap is too small. */
size_t fxb_descindex_closure(const fxb_descindex *ix, size_t file, size_t *out, size_t cap);

#endif
