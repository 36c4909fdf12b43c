/* placeholder: replaced by the MaterialService implementation */
#include "services/material/material.h"

#include <stddef.h>

static fxb_material_deps deps;

void fxb_material_service_init(const fxb_material_deps *d)
{
    deps = *d;
}

const fxb_service fxb_material_service = {"fxb.v1.MaterialService", NULL, 0};
