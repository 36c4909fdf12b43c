/* fxb-admin green set: records (or clears) a person's green-channel status
 * (绿色通道, regulation art. 27) as a department reports it: soldiers and
 * veterans, the disabled. The elderly need no record: their verified birth
 * date decides. Departments report in production too, so the command runs
 * in every environment. The account is found by phone through the blind
 * index (the data keys are loaded as the other personal-data commands load
 * them); it prints the masked phone, never the number, and appends
 * green.set / green.clear to the audit stream.
 *   fxb:green:<account id>   hash soldier "1" / disabled "1" (a cleared kind
 *                            is deleted; read by appointment.c) */
#include <stdio.h>
#include <string.h>

#include "auth/account.h"
#include "auth/phone.h"
#include "server/admin_cmds.h"
#include "server/handler.h"
#include "store/audit.h"
#include "store/crypto.h"
#include "store/keys.h"

#define USAGE        "fxb-admin: green set --phone P --kind soldier|disabled [--off]\n"
#define GREEN_PREFIX "fxb:green:"
#define ACTOR        "fxb-admin"

static int set(const fxb_config *cfg, const fxb_store_options *so, const char *phone_in,
               const char *kind, bool off)
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
    char key[sizeof GREEN_PREFIX + FXB_KEY_ID_MAX];
    redisReply *r = NULL;
    if (st == NULL) {
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
    } else if (fxb_account_by_phone(st, c, phone, &acc, &err) != FXB_OK) {
        if (err.code == FXB_NOT_FOUND)
            fprintf(stderr, "fxb-admin: no account for %s\n", masked);
        else
            fprintf(stderr, "fxb-admin: %s\n", err.message);
    } else if (!fxb_key_id_valid(acc.id)) {
        fprintf(stderr, "fxb-admin: the account of %s has an unusable id\n", masked);
    } else {
        snprintf(key, sizeof key, GREEN_PREFIX "%s", acc.id);
        r = off ? fxb_store_command(st, &err, "HDEL %s %s", key, kind)
                : fxb_store_command(st, &err, "HSET %s %s 1", key, kind);
        if (r == NULL) {
            fprintf(stderr, "fxb-admin: %s\n", err.message);
        } else if (fxb_audit_append(st, ACTOR, acc.id, off ? "green.clear" : "green.set", kind,
                                    fxb_wall_ms(), &err) != FXB_OK) {
            fprintf(stderr, "fxb-admin: green %s %s for %s, but the audit record failed: %s\n",
                    kind, off ? "cleared" : "set", masked, err.message);
        } else {
            printf("green %s %s for %s\n", kind, off ? "cleared" : "set", masked);
            rc = 0;
        }
    }
    if (r != NULL)
        freeReplyObject(r);
    fxb_store_free(st);
    fxb_crypto_free(c);
    return rc;
}

int fxb_admin_green(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                    int i)
{
    if (i >= argc || strcmp(argv[i], "set") != 0) {
        fprintf(stderr, USAGE);
        return 2;
    }
    const char *phone = NULL, *kind = NULL;
    bool off = false;
    for (i++; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--off") == 0) {
            off = true;
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--phone") != 0 && strcmp(opt, "--kind") != 0) {
            fprintf(stderr, "fxb-admin: green: unknown argument \"%s\"\n", opt);
            return 2;
        }
        if (val == NULL) {
            fprintf(stderr, "fxb-admin: green: \"%s\" needs a value\n", opt);
            return 2;
        }
        if (strcmp(opt, "--phone") == 0)
            phone = val;
        else
            kind = val;
        i++;
    }
    if (phone == NULL || kind == NULL) {
        fprintf(stderr, USAGE);
        return 2;
    }
    if (strcmp(kind, "soldier") != 0 && strcmp(kind, "disabled") != 0) {
        fprintf(stderr, "fxb-admin: --kind must be soldier or disabled (the elderly need no "
                        "record: their verified birth date decides)\n");
        return 2;
    }
    return set(cfg, so, phone, kind, off);
}
