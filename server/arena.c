/* Bump allocator backing per-call memory. Chunks grow geometrically so a
 * large message costs few mallocs; the first chunk is kept across resets so a
 * streaming call's scratch arena does not malloc per message. */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FXB_ARENA_ALIGN 16u

struct fxb_arena_chunk {
    fxb_arena_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t off;
    /* data follows, aligned */
};

static size_t header_size(void)
{
    return (sizeof(fxb_arena_chunk) + FXB_ARENA_ALIGN - 1) & ~(size_t)(FXB_ARENA_ALIGN - 1);
}

static unsigned char *chunk_data(fxb_arena_chunk *c)
{
    return (unsigned char *)c + header_size();
}

static void *pb_alloc(void *data, size_t size)
{
    return fxb_arena_alloc(data, size);
}

static void pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

void fxb_arena_init(fxb_arena *a, size_t limit)
{
    a->head = NULL;
    a->used = 0;
    a->limit = limit ? limit : FXB_ARENA_DEFAULT_LIMIT;
    a->allocator.alloc = pb_alloc;
    a->allocator.free = pb_free;
    a->allocator.allocator_data = a;
}

void *fxb_arena_alloc(fxb_arena *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (size > a->limit)
        return NULL;
    size_t need = (size + FXB_ARENA_ALIGN - 1) & ~(size_t)(FXB_ARENA_ALIGN - 1);
    if (a->used + need > a->limit)
        return NULL;
    fxb_arena_chunk *c = a->head;
    if (c == NULL || c->size - c->off < need) {
        size_t prev = c ? c->size : 0;
        size_t want = prev * 2;
        if (want < FXB_ARENA_CHUNK_SIZE)
            want = FXB_ARENA_CHUNK_SIZE;
        if (want > 1024u * 1024u)
            want = 1024u * 1024u;
        if (want < need)
            want = need;
        fxb_arena_chunk *n = malloc(header_size() + want);
        if (n == NULL)
            return NULL;
        n->size = want;
        n->off = 0;
        n->next = a->head;
        a->head = n;
        c = n;
    }
    void *p = chunk_data(c) + c->off;
    c->off += need;
    a->used += need;
    return p;
}

void *fxb_arena_calloc(fxb_arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = fxb_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *fxb_arena_strndup(fxb_arena *a, const char *s, size_t len)
{
    char *p = fxb_arena_alloc(a, len + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *fxb_arena_strdup(fxb_arena *a, const char *s)
{
    return fxb_arena_strndup(a, s, strlen(s));
}

char *fxb_arena_printf(fxb_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = fxb_arena_alloc(a, (size_t)n + 1);
    if (p == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void fxb_arena_reset(fxb_arena *a)
{
    fxb_arena_chunk *c = a->head;
    if (c == NULL)
        return;
    /* keep the oldest chunk (the smallest, typical size) */
    fxb_arena_chunk *keep = c;
    while (keep->next)
        keep = keep->next;
    while (c != keep) {
        fxb_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    keep->off = 0;
    a->head = keep;
    a->used = 0;
}

void fxb_arena_free(fxb_arena *a)
{
    fxb_arena_chunk *c = a->head;
    while (c) {
        fxb_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

ProtobufCAllocator *fxb_arena_allocator(fxb_arena *a)
{
    return &a->allocator;
}
