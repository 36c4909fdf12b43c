/* Lookup in the embedded seed data table (generated: fxb_data.c). */
#include "store/datafile.h"

#include <string.h>

const fxb_datafile *fxb_datafile_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < fxb_datafiles_count; i++)
        if (fxb_datafiles[i].name != NULL && strcmp(fxb_datafiles[i].name, name) == 0)
            return &fxb_datafiles[i];
    return NULL;
}
