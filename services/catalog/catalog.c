/* placeholder: replaced by the CatalogService implementation */
#include "services/catalog/catalog.h"

#include <stddef.h>

const fxb_service fxb_catalog_service = {"fxb.v1.CatalogService", NULL, 0};
