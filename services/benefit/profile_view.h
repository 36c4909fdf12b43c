/* A stored profile (profile.h: the {p:|e:<subject>}:profile hash as HGETALL
 * returns it) decoded into the typed values the rule evaluator (rule.h) and
 * the matching index (index.h) read. Shared by the engine (bulk loads and
 * every change) and BenefitService (an entitlement's explanation). */
#ifndef FXB_BENEFIT_PROFILE_VIEW_H
#define FXB_BENEFIT_PROFILE_VIEW_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "server/arena.h"
#include "services/benefit/index.h"
#include "services/benefit/rule.h"
#include "services/benefit/schema.h"

/* The decoded values of one subject: attrs[i] / values[i] for every
 * non-derived attribute of the subject's type in schema order (absent ones
 * have present = false). */
typedef struct fxb_profile_decoded {
    const fxb_attr **attrs;
    fxb_profile_value *values;
    size_t n;
} fxb_profile_decoded;

/* Decodes an HGETALL reply (an array of field/value, or a RESP3 map) of a
 * profile hash. Values that do not parse for their attribute's type (a
 * schema changed since they were stored) are treated as absent. Memory
 * (arrays and set members) comes from the arena. Returns false on
 * allocation failure only. */
bool fxb_profile_decode(const fxb_schema *schema, fxb_subject_type type, const redisReply *hash,
                        fxb_arena *a, fxb_profile_decoded *out);

/* The evaluator's view over decoded values (for fxb_rule_eval); self is
 * the fxb_profile_decoded, which must outlive the view's use. */
fxb_profile_view fxb_profile_decoded_view(const fxb_profile_decoded *d);

/* The index's input form of the same values. */
fxb_index_values fxb_profile_decoded_index_values(const fxb_profile_decoded *d);

#endif
