/* Per-call arena: a bump allocator that backs protobuf-c unpacking and
 * response building, so handlers never free field by field. Everything
 * allocated from an arena is released at once by fxb_arena_reset/free. */
#ifndef FXB_ARENA_H
#define FXB_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

/* Default bound on what one call may allocate; a hostile message cannot make
 * the server allocate more than this for a single call. */
#define FXB_ARENA_DEFAULT_LIMIT (64u * 1024u * 1024u)
/* First chunk: small enough (with its header) for malloc's per-thread
 * cache, which serves most calls without touching the shared heap. */
#define FXB_ARENA_CHUNK_SIZE 992u

typedef struct fxb_arena_chunk fxb_arena_chunk;

typedef struct fxb_arena {
    fxb_arena_chunk *head; /* newest chunk first */
    size_t used;           /* bytes handed out, for the limit */
    size_t limit;          /* 0 = FXB_ARENA_DEFAULT_LIMIT */
    ProtobufCAllocator allocator;
} fxb_arena;

/* Prepares an empty arena; allocates nothing until first use. */
void fxb_arena_init(fxb_arena *a, size_t limit);

/* Returns size bytes aligned for any type, or NULL when the arena's limit
 * would be passed or memory is exhausted. A zero size returns a valid
 * unique pointer. Freed only by reset/free. */
void *fxb_arena_alloc(fxb_arena *a, size_t size);

/* Same as fxb_arena_alloc, zero-filled. */
void *fxb_arena_calloc(fxb_arena *a, size_t n, size_t size);

/* Copies a NUL-terminated string (or len bytes + NUL); NULL on failure. */
char *fxb_arena_strdup(fxb_arena *a, const char *s);
char *fxb_arena_strndup(fxb_arena *a, const char *s, size_t len);

/* printf into the arena; NULL on failure. */
char *fxb_arena_printf(fxb_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Releases everything but keeps the first chunk for reuse. */
void fxb_arena_reset(fxb_arena *a);

/* Releases everything. The arena may be reused after fxb_arena_init. */
void fxb_arena_free(fxb_arena *a);

/* A ProtobufCAllocator over this arena (free is a no-op). Valid as long as
 * the arena is. */
ProtobufCAllocator *fxb_arena_allocator(fxb_arena *a);

#endif
