/* Applications (proto/fxb/v1/filing.proto): the record, its state machine,
 * its indexes and its notices, shared by the applicant's FilingService
 * (services/filing/filing.c), the officers' OfficerService
 * (services/filing/officer.c), ratings and the sweeper that ends
 * applications whose deadlines passed.
 *
 * Keys (one application = one hash tag {a:<aid>}):
 *   {a:<aid>}:app         hash: the record (fields: APP_F_* below)
 *   {a:<aid>}:history     stream: at_ms, from, to, actor_role, actor_id,
 *                         reason, legal_basis
 *   {a:<aid>}:materials   hash: material code -> material ids, space-separated
 *                         (a leading "+" marks ids the server attached)
 *   {<t>:<subject>}:apps  zset: the subject's applications by created_at_ms
 *   {<t>:<subject>}:idem:<key>  string: the first answer of an idempotent
 *                         write (24 h)
 *   fxb:dept:<dept>:queue zset: applications waiting for an officer, by
 *                         submitted_at_ms
 *   fxb:dept:<dept>:running zset: accepted applications whose time limit
 *                         runs, by deadline_ms
 *   fxb:app:timers        zset: "<aid> <kind>" by due ms (kind: fix,
 *                         supplement, rectify) for the sweeper
 *   fxb:credit:<subject>  hash: bad_credit "1" / false_commitment "<aid>"
 *                         (excludes 告知承诺, art. 21)
 * Every status change goes through fxb_app_transition: one Lua script on
 * the application's keys that checks the current status, writes the new
 * one with its fields and appends the history entry; the indexes (other
 * slots) and the inbox notices follow.
 */
#ifndef FXB_FILING_APPLICATION_H
#define FXB_FILING_APPLICATION_H

#include <stdbool.h>
#include <stdint.h>

#include "fxb/v1/catalog.pb-c.h"
#include "fxb/v1/filing.pb-c.h"
#include "server/handler.h"
#include "store/crypto.h"
#include "store/store.h"

#define FXB_APP_ID_LEN 22

typedef Fxb__V1__ApplicationStatus fxb_app_status;

/* Fields of {a:<aid>}:app (the stored record; times are epoch ms, flags
 * "1" / absent, lists space-separated). */
#define APP_F_SUBJECT         "subject"
#define APP_F_FILED_BY        "filed_by"
#define APP_F_GRANT           "grant_id"
#define APP_F_ITEM            "item_code"
#define APP_F_ITEM_NAME       "item_name"
#define APP_F_GUIDE_VERSION   "guide_version"
#define APP_F_DEPT            "department"
#define APP_F_BUNDLE          "bundle_code"
#define APP_F_CHILDREN        "children"    /* bundle parent: child ids */
#define APP_F_CHILD_ITEMS     "child_items" /* bundle parent: their item codes */
#define APP_F_PARENT          "parent"      /* bundle child: the parent id */
#define APP_F_STATUS          "status"      /* fxb_app_status_word */
#define APP_F_CREATED         "created_at_ms"
#define APP_F_UPDATED         "updated_at_ms" /* written by every transition */
#define APP_F_SUBMITTED       "submitted_at_ms"
#define APP_F_ACCEPTED        "accepted_at_ms"
#define APP_F_DECIDED         "decided_at_ms"
#define APP_F_COMPLETED       "completed_at_ms"
#define APP_F_SUBMISSION      "submission"
#define APP_F_FIX_BY          "fix_by_ms"
#define APP_F_SUPPLEMENT_BY   "supplement_by_ms"
#define APP_F_TOLERATED       "tolerated_missing"
#define APP_F_NOTIFY_COMMIT   "notify_commit"
#define APP_F_BROKEN          "commitment_broken"
#define APP_F_RECTIFY_BY      "rectify_by_ms"
#define APP_F_TIME_LIMIT      "time_limit_working_days"
#define APP_F_DEADLINE_DATE   "deadline_date" /* yyyymmdd */
#define APP_F_DEADLINE_MS     "deadline_ms"
#define APP_F_SPECIAL         "special_procedure_code"
#define APP_F_DENIAL_REASON   "denial_reason"
#define APP_F_DENIAL_BASIS    "denial_legal_basis"
#define APP_F_RESULT_MATERIAL "result_material_id"
#define APP_F_PROBLEMS        "problems" /* fxb_app_problems_encode */
#define APP_F_RATED           "rated"

/* Bounds. */
#define FXB_APP_PROBLEMS_MAX 100 /* problems kept per check */
#define FXB_APP_FILES_MAX    10  /* material ids one AttachMaterials may give */
#define FXB_APP_TIMERS_KEY   "fxb:app:timers"

/* fxb_err reasons of applications. */
#define FXB_APP_NOT_FOUND  "APPLICATION_NOT_FOUND"  /* NOT_FOUND */
#define FXB_APP_ID_INVALID "APPLICATION_ID_INVALID" /* INVALID_ARGUMENT */
#define FXB_APP_STATE      "APPLICATION_STATE"      /* FAILED_PRECONDITION */

/* "draft", "submitted", ... (the stored form) and back; NULL / 0 unknown. */
const char *fxb_app_status_word(fxb_app_status s);
fxb_app_status fxb_app_status_parse(const char *word);

/* True when applications in s are ended (no further applicant action):
 * DENIED, COMPLETED, WITHDRAWN, REVOKED. */
bool fxb_app_status_ended(fxb_app_status s);

/* Reads an application into the arena (history when with_history).
 * NOT_FOUND APPLICATION_NOT_FOUND, INVALID_ARGUMENT APPLICATION_ID_INVALID,
 * or a store error. time_state / working_days_left are computed at now_ms
 * with the working-day calendar. */
fxb_code fxb_app_read(fxb_store *s, fxb_arena *a, const char *aid, bool with_history,
                      int64_t now_ms, Fxb__V1__Application **out, fxb_err *err);

/* A change of status: from must be one of `from` (n_from entries) at the
 * moment of the change, else FAILED_PRECONDITION APPLICATION_STATE naming
 * the current status. `set` holds extra hash fields to write with it
 * (field, value pairs; NULL-terminated), `del` fields to delete
 * (NULL-terminated). The history entry, then the indexes (queue, running,
 * timers) follow the new status, then inbox notices go to the subject (and
 * the agent when filed by proxy). */
typedef struct fxb_app_change {
    const char *aid;
    const fxb_app_status *from;
    size_t n_from;
    fxb_app_status to;
    const char *actor_role; /* "applicant", "agent", "officer", "system" */
    const char *actor_id;   /* "" for the system */
    const char *reason;     /* NULL = "" */
    const char *legal_basis;
    const char *const *set;
    const char *const *del;
    int64_t now_ms;
} fxb_app_change;

fxb_code fxb_app_transition(fxb_store *s, fxb_arena *a, const fxb_app_change *c, fxb_err *err);

/* The sweeper: ends applications whose fix / supplement / rectify deadline
 * passed at now_ms (WITHDRAWN, WITHDRAWN, REVOKED), with notices; at most
 * max per run; returns how many. Idempotent across servers (each timer is
 * claimed with ZREM). */
fxb_code fxb_app_sweep(fxb_store *s, int64_t now_ms, size_t max, size_t *done, fxb_err *err);

/* --- helpers shared with the officer service ------------------------------ */

/* "{a:<aid>}:<suffix>" in the arena (suffix "app", "history",
 * "materials"); NULL for an invalid id or out of memory. */
char *fxb_app_key(fxb_arena *a, const char *aid, const char *suffix);

/* True for an id fxb_token_new_id could have made (FXB_APP_ID_LEN of
 * [A-Za-z0-9_-]). */
bool fxb_app_id_valid(const char *aid);

/* The zh-CN words for a status ("已受理"); "" when unknown. */
const char *fxb_app_status_zh(fxb_app_status s);

/* A deadline working_days working days after the China-time date of
 * from_ms: the date (yyyymmdd, may be NULL) and the end of that day (UTC
 * ms, may be NULL). Calendar errors (CALENDAR_YEAR_MISSING ...) or a store
 * error. */
fxb_code fxb_app_deadline(fxb_store *s, int64_t from_ms, uint32_t working_days, uint32_t *date,
                          int64_t *end_ms, fxb_err *err);

/* Problems as stored in APP_F_PROBLEMS (hex of a packed Application that
 * holds only them), in the arena; NULL out of memory. n == 0 gives "". */
char *fxb_app_problems_encode(fxb_arena *a, Fxb__V1__Problem *const *problems, size_t n);

/* The result licence of a completed application (guide.result_licence_type
 * set): adds it to the subject's wallet (number "<item code>-<aid>", issuer
 * the department's name, source_application aid) and records its id in
 * APP_F_RESULT_MATERIAL; mid_out (FXB_ID_MAX + 1 bytes, may be NULL) gets
 * it. FXB_OK without doing anything when the guide names no licence type.
 * Wallet errors (WALLET_FULL ...) or a store error. */
fxb_code fxb_app_issue_result(fxb_store *s, const fxb_crypto *c, const Fxb__V1__Application *app,
                              const Fxb__V1__ServiceItem *item, int64_t now_ms, char *mid_out,
                              fxb_err *err);

/* in_use of the subject's wallet entries ids (n of them) += delta (+1 /
 * -1); entries gone are skipped, a count never drops below 0. Best effort
 * for -1 (logged), errors returned for +1. */
fxb_code fxb_app_material_use(fxb_store *s, const char *subject, const char *const *ids, size_t n,
                              int delta, fxb_err *err);

#endif
