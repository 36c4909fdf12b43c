/* placeholder: replaced by the fxb-admin licence command */
#include <stdio.h>

#include "server/admin_cmds.h"

int fxb_admin_licence(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv, int i)
{
    (void)cfg;
    (void)so;
    (void)argc;
    (void)argv;
    (void)i;
    fprintf(stderr, "fxb-admin: licence: not built yet\n");
    return 2;
}
