/* Runs the embedded demo scripts; each is its own EVAL so a failure names
 * the script. */
#include "store/demo.h"

fxb_code fxb_demo_load(fxb_store *s, FILE *out, fxb_err *err)
{
    for (size_t i = 0; i < fxb_demo_scripts_count; i++) {
        const fxb_migration *d = &fxb_demo_scripts[i];
        if (d->source == NULL)
            continue;
        redisReply *r = fxb_store_command(s, err, "EVAL %s 0", d->source);
        if (r == NULL) {
            fxb_err e;
            fxb_err_copy(&e, err);
            return fxb_err_set(err, e.code, e.reason, e.message_zh, "demo %s: %s", d->name,
                               e.message);
        }
        freeReplyObject(r);
        if (out)
            fprintf(out, "loaded demo %s\n", d->name);
    }
    return FXB_OK;
}
