/* fxb-admin licence issue: puts an electronic licence in a person's wallet,
 * standing in for the licence platform in development (refused in
 * production). The account is found by phone through the blind index, so
 * the data keys are loaded as the other personal-data commands load them.
 * Prints the masked phone and the material id; never the number. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/account.h"
#include "auth/phone.h"
#include "server/admin_cmds.h"
#include "server/handler.h"
#include "services/calendar/calendar.h"
#include "services/material/material.h"
#include "store/crypto.h"

#define USAGE                                                                                      \
    "fxb-admin: licence issue --phone P --type T --name NAME --number N --issuer ISSUER "          \
    "[--valid-until YYYYMMDD]\n"

/* YYYYMMDD (8 digits, a real date) -> 23:59:59.999 China time that day. */
static bool parse_until(const char *s, int64_t *out)
{
    if (strlen(s) != 8)
        return false;
    uint32_t date = 0;
    for (size_t i = 0; i < 8; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        date = date * 10 + (uint32_t)(s[i] - '0');
    }
    *out = fxb_calendar_end_of_day_ms(date);
    return *out >= 0;
}

static int issue(const fxb_config *cfg, const fxb_store_options *so, const char *phone_in,
                 const fxb_licence *lic)
{
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1], masked[FXB_PHONE_LEN + 1];
    if (fxb_phone_normalize(phone_in, phone, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: --phone: %s\n", err.message);
        return 2;
    }
    fxb_phone_mask(phone, masked);
    char ddir[FXB_CONFIG_STR_MAX + 32];
    snprintf(ddir, sizeof ddir, "%s/%s", cfg->data_dir, FXB_CRYPTO_KEY_SUBDIR);
    fxb_crypto *c = fxb_crypto_load(ddir, false, &err);
    if (c == NULL) {
        fprintf(stderr, "fxb-admin: %s (run `fxb-admin keys init` first)\n", err.message);
        return 1;
    }
    fxb_store *st = fxb_store_new(so, &err);
    int rc = 1;
    fxb_account acc;
    char mid[FXB_ID_MAX + 1];
    if (st == NULL) {
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
    } else if (fxb_account_by_phone(st, c, phone, &acc, &err) != FXB_OK) {
        if (err.code == FXB_NOT_FOUND)
            fprintf(stderr, "fxb-admin: no account for %s\n", masked);
        else
            fprintf(stderr, "fxb-admin: %s\n", err.message);
    } else if (fxb_wallet_add_licence(st, c, acc.id, lic, fxb_wall_ms(), mid, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: %s\n", err.message);
    } else {
        printf("licence %s issued to %s: %s\n", lic->type, masked, mid);
        rc = 0;
    }
    fxb_store_free(st);
    fxb_crypto_free(c);
    return rc;
}

int fxb_admin_licence(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                      int i)
{
    if (i >= argc || strcmp(argv[i], "issue") != 0) {
        fprintf(stderr, USAGE);
        return 2;
    }
    const char *phone = NULL;
    fxb_licence lic = {0};
    for (i++; i < argc; i++) {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (val == NULL) {
            fprintf(stderr, "fxb-admin: licence: \"%s\" needs a value\n", opt);
            return 2;
        }
        if (strcmp(opt, "--phone") == 0) {
            phone = val;
        } else if (strcmp(opt, "--type") == 0) {
            lic.type = val;
        } else if (strcmp(opt, "--name") == 0) {
            lic.name = val;
        } else if (strcmp(opt, "--number") == 0) {
            lic.number = val;
        } else if (strcmp(opt, "--issuer") == 0) {
            lic.issuer = val;
        } else if (strcmp(opt, "--valid-until") == 0) {
            if (!parse_until(val, &lic.valid_until_ms)) {
                fprintf(stderr, "fxb-admin: --valid-until must be a date YYYYMMDD (%d..%d)\n",
                        FXB_CALENDAR_YEAR_MIN, FXB_CALENDAR_YEAR_MAX);
                return 2;
            }
        } else {
            fprintf(stderr, "fxb-admin: licence: unknown argument \"%s\"\n", opt);
            return 2;
        }
        i++;
    }
    if (phone == NULL || lic.type == NULL || lic.name == NULL || lic.number == NULL ||
        lic.issuer == NULL) {
        fprintf(stderr, USAGE);
        return 2;
    }
    if (cfg->env == FXB_ENV_PRODUCTION) {
        fprintf(stderr, "fxb-admin: licence issue refused: FXB_ENV is production (licences come "
                        "from the licence platform)\n");
        return 2;
    }
    return issue(cfg, so, phone, &lic);
}
