/* Benefit policies (proto/fxb/v1/benefit.proto, regulation art. 24): the
 * stored policy, its lifecycle DRAFT -> PUBLISHED -> CLOSED, and the view
 * the matching engine loads.
 *
 * Keys (policy id: "b" + 16 lower-case hex, FXB_POLICY_ID_LEN):
 *   {b:<pid>}:policy      hash: code, title, category (enum number),
 *       department, subject_type (enum number: 1 person, 2 enterprise),
 *       rule, benefit_kind (enum number), amount_fen, valid_from_ms,
 *       valid_until_ms, budget_fen, quota, confirm ("1"/"0"), summary,
 *       legal_basis, status (enum number), version, created_at_ms,
 *       created_by, published_at_ms, closed_at_ms, close_reason;
 *       counters kept by the entitlement scripts (entitlement.h): n_matched,
 *       n_confirmed, n_granted, n_paid, n_declined, n_ended, grants_used,
 *       budget_used_fen; and by the engine: last_match_at_ms,
 *       last_match_subjects
 *   fxb:benefit:code:<code>      string: the policy id (SET NX: unique codes)
 *   fxb:benefit:policies         zset: every policy id by created_at_ms
 *   fxb:benefit:dept:<dept>      zset: the department's policy ids
 *   fxb:benefit:published        set: ids of PUBLISHED policies (what the
 *                                engine matches)
 *   fxb:benefit:rev              counter, incremented on every publish and
 *                                close; with a PUBLISH of the policy id on
 *                                FXB_BENEFIT_CHANNEL so engines reload
 *   fxb:benefit:closing          set: ids of closed policies whose
 *                                not-granted entitlements the engine has
 *                                still to end (SADD by the close, before the
 *                                INCR; the engine reads it on every policy
 *                                reload, so also when it becomes leader, and
 *                                SREMs an id once done): a close made while
 *                                no engine leads, or while the leader is
 *                                busy or restarting, is never missed
 * Status changes are one Lua script on {b:<pid>}:policy (version checked);
 * the indexes follow in separate commands (the record is authoritative). */
#ifndef FXB_BENEFIT_POLICY_H
#define FXB_BENEFIT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "fxb/v1/benefit.pb-c.h"
#include "server/arena.h"
#include "server/status.h"
#include "services/benefit/rule.h"
#include "services/benefit/schema.h"
#include "store/store.h"

#define FXB_POLICY_ID_LEN     17 /* "b" + 16 hex */
#define FXB_BENEFIT_CHANNEL   "fxb:benefit:changed"
#define FXB_BENEFIT_PUBLISHED "fxb:benefit:published"
#define FXB_BENEFIT_REV       "fxb:benefit:rev"
#define FXB_BENEFIT_CLOSING   "fxb:benefit:closing"

/* Enum numbers as in benefit.proto. */
enum {
    FXB_POLICY_DRAFT = 1,
    FXB_POLICY_PUBLISHED = 2,
    FXB_POLICY_CLOSED = 3,
};
enum {
    FXB_BENEFIT_CASH = 1,
    FXB_BENEFIT_SUBSIDY = 2,
    FXB_BENEFIT_SERVICE = 3,
    FXB_BENEFIT_VOUCHER = 4,
};

/* A stored policy as the engine and the entitlement code need it (strings
 * in the arena given to fxb_policy_load). */
typedef struct fxb_policy {
    char id[FXB_POLICY_ID_LEN + 1];
    const char *code, *title, *department, *rule;
    int category;
    fxb_subject_type subject; /* FXB_SUBJECT_PERSON / ENTERPRISE */
    int kind;                 /* FXB_BENEFIT_* */
    int64_t amount_fen;
    int64_t valid_from_ms, valid_until_ms; /* until 0 = open-ended */
    int64_t budget_fen, quota;             /* 0 = unlimited */
    bool confirm;
    int status; /* FXB_POLICY_* */
    int64_t version;
} fxb_policy;

/* True when id is "b" + 16 lower-case hex digits. */
bool fxb_policy_id_valid(const char *id);

/* "{b:<id>}:<suffix>" in the arena; NULL for an invalid id. */
char *fxb_policy_key(fxb_arena *a, const char *id, const char *suffix);

/* Reads one policy: FXB_OK, NOT_FOUND POLICY_NOT_FOUND, or a store error. */
fxb_code fxb_policy_load(fxb_store *s, const char *id, fxb_arena *a, fxb_policy *out, fxb_err *err);

/* The ids of every PUBLISHED policy (SMEMBERS FXB_BENEFIT_PUBLISHED), in the
 * arena; *n receives the count. */
fxb_code fxb_policy_published_ids(fxb_store *s, fxb_arena *a, char ***ids, size_t *n, fxb_err *err);

/* True while now_ms lies inside the policy's validity window. */
bool fxb_policy_in_window(const fxb_policy *p, int64_t now_ms);

/* The engine records its last full match on the policy (counters shown by
 * GetPolicy). */
fxb_code fxb_policy_note_match(fxb_store *s, const char *id, int64_t at_ms, uint64_t subjects,
                               fxb_err *err);

/* Bounds of a policy draft (benefit.proto PolicyDraft). */
#define FXB_POLICY_CODE_MIN         3
#define FXB_POLICY_CODE_MAX         32
#define FXB_POLICY_TITLE_MAX        100 /* characters */
#define FXB_POLICY_DEPT_MAX         32
#define FXB_POLICY_SUMMARY_MAX      500
#define FXB_POLICY_LEGAL_BASIS_MAX  200
#define FXB_POLICY_CLOSE_REASON_MAX 200
#define FXB_POLICY_FEN_MAX          1000000000000LL /* 10^12 fen: amounts, budgets */
#define FXB_POLICY_QUOTA_MAX        1000000000000LL
#define FXB_POLICY_TIME_MAX         253402300799999LL /* 9999-12-31T23:59:59.999Z */

/* --- the policy lifecycle (policy.c) ---------------------------------------- */

/* True for a department code policies may name: 1..32 of [a-z0-9-]. */
bool fxb_policy_dept_valid(const char *dept);

/* Checks every field of a draft: INVALID_ARGUMENT with the field's reason
 * (DRAFT_REQUIRED, POLICY_CODE_INVALID, TITLE_INVALID, CATEGORY_INVALID,
 * DEPARTMENT_INVALID, SUBJECT_TYPE_INVALID, RULE_INVALID,
 * BENEFIT_KIND_INVALID, AMOUNT_INVALID, VALIDITY_INVALID, BUDGET_INVALID,
 * QUOTA_INVALID, SUMMARY_INVALID, LEGAL_BASIS_INVALID), first failing
 * field first. The rule is only bounded here (compiled at publish). */
fxb_code fxb_policy_draft_check(const Fxb__V1__PolicyDraft *d, fxb_err *err);

/* Fills *out from an HGETALL reply of {b:<id>}:policy (strings in the
 * arena); false for an empty / malformed reply or out of memory. */
bool fxb_policy_from_hash(const char *id, const redisReply *kv, fxb_arena *a, fxb_policy *out);

/* Stores a new DRAFT (version 1) after fxb_policy_draft_check: claims the
 * code (ALREADY_EXISTS POLICY_CODE_TAKEN; a code left by a create that
 * failed half-way is taken over), lists it (fxb:benefit:policies, the
 * department's zset) and writes the record. id receives the new id ("" on
 * failure). by: the creating account. */
fxb_code fxb_policy_create(fxb_store *s, const Fxb__V1__PolicyDraft *d, const char *by,
                           int64_t now_ms, char id[FXB_POLICY_ID_LEN + 1], fxb_err *err);

/* Replaces the fields of the DRAFT cur (as loaded) with d: INVALID_ARGUMENT
 * (the draft's reasons, DEPARTMENT_IMMUTABLE when d names another
 * department), FAILED_PRECONDITION POLICY_STATE, ABORTED VERSION_CONFLICT
 * when expected_version (0 = no check) is not the stored one, ALREADY_EXISTS
 * POLICY_CODE_TAKEN for a new code in use. *version: the new version. */
fxb_code fxb_policy_update(fxb_store *s, const fxb_policy *cur, int64_t expected_version,
                           const Fxb__V1__PolicyDraft *d, int64_t now_ms, int64_t *version,
                           fxb_err *err);

/* Compiles p's rule for its subject type; INVALID_ARGUMENT RULE_SYNTAX /
 * RULE_TYPE with the message "line L, column C, near 'tok': why" and
 * *where filled (may be NULL). The rule is the caller's to free. */
fxb_code fxb_policy_rule_compile(const fxb_schema *schema, const fxb_policy *p, fxb_rule **out,
                                 fxb_rule_error *where, fxb_err *err);

/* DRAFT -> PUBLISHED: compiles the rule (errors as above), then one script
 * checks status and version (ABORTED VERSION_CONFLICT when cur changed
 * meanwhile) and sets published_at_ms; then SADD FXB_BENEFIT_PUBLISHED,
 * INCR FXB_BENEFIT_REV and PUBLISH FXB_BENEFIT_CHANNEL <id>. */
fxb_code fxb_policy_publish(fxb_store *s, const fxb_schema *schema, const fxb_policy *cur,
                            int64_t now_ms, fxb_rule_error *where, int64_t *version, fxb_err *err);

/* PUBLISHED -> CLOSED with the reason (checked by the caller); then SREM
 * FXB_BENEFIT_PUBLISHED, SADD FXB_BENEFIT_CLOSING, INCR, PUBLISH as above
 * (the engine ends what was not granted, then SREMs the closing entry). */
fxb_code fxb_policy_close(fxb_store *s, const fxb_policy *cur, const char *reason, int64_t now_ms,
                          int64_t *version, fxb_err *err);

#endif
