/* Seed data files (data/ in the source tree: the service-item catalogue,
 * the working-day calendar), embedded in the binaries at build time so that
 * fxb-admin can load them without a source tree. */
#ifndef FXB_DATAFILE_H
#define FXB_DATAFILE_H

#include <stddef.h>

typedef struct fxb_datafile {
    const char *name;  /* relative to data/, e.g. "catalog/xinxiang.json" */
    const char *bytes; /* NUL-terminated (an extra NUL after len bytes) */
    size_t len;
} fxb_datafile;

extern const fxb_datafile fxb_datafiles[];
extern const size_t fxb_datafiles_count;

/* The embedded file of that name, or NULL. */
const fxb_datafile *fxb_datafile_find(const char *name);

#endif
