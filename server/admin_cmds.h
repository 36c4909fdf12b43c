/* fxb-admin commands implemented beside their services. Each gets the
 * loaded configuration, the store options, and argv with i at the first
 * argument after the command word; returns the process exit status (0 ok,
 * 1 the command failed, 2 bad usage or configuration) and prints its own
 * messages (never personal data). */
#ifndef FXB_ADMIN_CMDS_H
#define FXB_ADMIN_CMDS_H

#include "server/config.h"
#include "store/store.h"

typedef int (*fxb_admin_cmd_fn)(const fxb_config *cfg, const fxb_store_options *so, int argc,
                                char **argv, int i);

/* catalog import [FILE] | catalog show CODE (services/catalog/catalog_admin.c) */
int fxb_admin_catalog(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                      int i);
/* calendar import [FILE] | calendar show YEAR | calendar set DATE KIND [NAME]
 * (services/calendar/calendar_admin.c) */
int fxb_admin_calendar(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                       int i);
/* licence issue ... (services/material/licence_admin.c) */
int fxb_admin_licence(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                      int i);

/* green set --phone P --kind soldier|disabled [--off] (services/appointment/green_admin.c) */
int fxb_admin_green(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                    int i);

/* profile schema import [FILE] | profile import FILE [--format ndjson|csv]
 * [--dept CODE] [--progress] (services/benefit/profile_admin.c) */
int fxb_admin_profile(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                      int i);

#endif
