/* Benefit notices (notice.h): the zh-CN text of each kind is composed once
 * per call from the policy (title, category, kind, amount), then subjects
 * are resolved to inboxes in chunks — one MGET of the chunk's
 * {p:<pid>}:account keys, an enterprise is its own inbox — and each chunk
 * is one fxb_inbox_append_batch. The texts name the policy and the amount
 * only. */
#include "services/benefit/notice.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/benefit/entitlement.h"
#include "store/inbox.h"
#include "store/keys.h"

#define NOTIFY_CHUNK 1000
#define ELLIPSIS     "…"
#define ZH_BUSY      "系统繁忙，请稍后重试"

static const char *const kind_name[] = {
    [FXB_NOTICE_GRANTED] = "benefit.granted",
    [FXB_NOTICE_AWAITING] = "benefit.awaiting",
    [FXB_NOTICE_ENDED] = "benefit.ended",
    [FXB_NOTICE_PAID] = "benefit.paid",
};

/* pre + title + post in at most max bytes: when the whole would not fit,
 * the policy title is cut at a UTF-8 boundary and ends with "…". out has
 * room for max + 1 bytes; pre and post are short texts of this file. */
static void compose(char *out, size_t max, const char *pre, const char *title, const char *post)
{
    size_t lp = strlen(pre), lt = strlen(title), lq = strlen(post), le = 0;
    size_t fixed = lp + lq + sizeof ELLIPSIS - 1;
    if (lp + lt + lq > max) {
        /* cut a few bytes past the room, so that fxb_utf8_truncate sees
         * the whole character it must not split */
        size_t room = max > fixed ? max - fixed : 0;
        char cut[FXB_INBOX_BODY_MAX + 5];
        if (room > FXB_INBOX_BODY_MAX)
            room = FXB_INBOX_BODY_MAX;
        size_t take = lt < room + 4 ? lt : room + 4;
        memcpy(cut, title, take);
        cut[take] = '\0';
        fxb_utf8_truncate(cut, room);
        lt = strlen(cut);
        le = sizeof ELLIPSIS - 1;
        if (lp + lt + le + lq > max) /* pre and post alone too long: never here */
            lp = lt = le = lq = 0;
        memcpy(out + lp, cut, lt);
    } else {
        memcpy(out + lp, title, lt);
    }
    memcpy(out, pre, lp);
    memcpy(out + lp + lt, ELLIPSIS, le);
    memcpy(out + lp + lt + le, post, lq);
    out[lp + lt + le + lq] = '\0';
}

/* 惠企 / 惠民 / ... by the policy's category (benefit.proto), else by its
 * subject type. */
static const char *category_label(const fxb_policy *p)
{
    switch (p->category) {
    case 1:
        return "惠企";
    case 2:
        return "惠民";
    case 3:
        return "人才";
    case 4:
        return "招商";
    case 5:
        return "金融服务";
    default:
        return p->subject == FXB_SUBJECT_ENTERPRISE ? "惠企" : "惠民";
    }
}

typedef struct notice_text {
    char title[FXB_INBOX_TITLE_MAX + 1];
    char body[FXB_INBOX_BODY_MAX + 1];
} notice_text;

/* The title and body of one kind of notice of the policy. */
static void compose_kind(const fxb_policy *p, fxb_benefit_notice_kind kind, notice_text *t)
{
    const char *title = p->title != NULL ? p->title : "";
    int64_t fen = p->amount_fen > 0 ? p->amount_fen : 0;
    char yuan[48];
    snprintf(yuan, sizeof yuan, "%" PRId64 ".%02" PRId64, fen / 100, fen % 100);
    char pre[64], post[256];
    snprintf(pre, sizeof pre, "%s政策「", category_label(p));
    switch (kind) {
    case FXB_NOTICE_GRANTED:
        compose(t->title, FXB_INBOX_TITLE_MAX, pre, title, "」已为您办理");
        if (p->kind == FXB_BENEFIT_CASH)
            snprintf(post, sizeof post,
                     "」的享受条件，无需申请，已为您办理。补贴 %s 元将发放至您登记的收款账户。",
                     yuan);
        else if (p->kind == FXB_BENEFIT_VOUCHER && fen > 0)
            snprintf(post, sizeof post, "」的享受条件，无需申请，已向您发放 %s 元消费券。", yuan);
        else if (p->kind == FXB_BENEFIT_SUBSIDY && fen > 0)
            snprintf(post, sizeof post, "」的享受条件，无需申请，已为您办理，减免 %s 元。", yuan);
        else
            snprintf(post, sizeof post, "」的享受条件，无需申请，已为您办理。");
        compose(t->body, FXB_INBOX_BODY_MAX, "您符合「", title, post);
        break;
    case FXB_NOTICE_AWAITING:
        compose(t->title, FXB_INBOX_TITLE_MAX, pre, title, "」待部门确认");
        compose(t->body, FXB_INBOX_BODY_MAX, "您符合「", title, "」的享受条件，待部门确认后发放。");
        break;
    case FXB_NOTICE_ENDED:
        compose(t->title, FXB_INBOX_TITLE_MAX, pre, title, "」享受资格已结束");
        compose(t->body, FXB_INBOX_BODY_MAX, "您享受的「", title,
                "」已结束，详情请在“我的政策”中查看。");
        break;
    case FXB_NOTICE_PAID:
        compose(t->title, FXB_INBOX_TITLE_MAX, pre, title, "」资金已发放");
        snprintf(post, sizeof post, "」补贴 %s 元已发放至您登记的收款账户，请注意查收。", yuan);
        compose(t->body, FXB_INBOX_BODY_MAX, "「", title, post);
        break;
    }
}

size_t fxb_benefit_accounts_cmd(fxb_arena *a, const char *const *subjects, size_t n,
                                fxb_store_cmd *cmd)
{
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        ng += subjects[i] != NULL && subjects[i][0] == 'p';
    if (ng == 0)
        return 0;
    const char **mget = fxb_arena_alloc(a, (ng + 1) * sizeof *mget);
    if (mget == NULL)
        return SIZE_MAX;
    mget[0] = "MGET";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (subjects[i] == NULL || subjects[i][0] != 'p')
            continue;
        const char *key = fxb_key_owned(a, "p", subjects[i], "account");
        if (key == NULL)
            return SIZE_MAX;
        mget[1 + k++] = key;
    }
    *cmd = (fxb_store_cmd){(int)(1 + ng), mget, NULL};
    return ng;
}

bool fxb_benefit_accounts_read(fxb_arena *a, const char *const *subjects, size_t n,
                               const redisReply *mget, const char **inboxes)
{
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        ng += subjects[i] != NULL && subjects[i][0] == 'p';
    bool shape =
        ng == 0 || (mget != NULL && mget->type == REDIS_REPLY_ARRAY && mget->elements == ng);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        inboxes[i] = NULL;
        if (subjects[i] == NULL)
            continue;
        if (subjects[i][0] == 'e') {
            inboxes[i] = subjects[i];
            continue;
        }
        if (subjects[i][0] != 'p' || !shape)
            continue;
        const redisReply *v = mget->element[j++];
        /* no account (or not a usable id): no notice; the entitlement
         * waits in the person's list */
        if (v->type == REDIS_REPLY_STRING && v->len <= FXB_KEY_ID_MAX) {
            char *acct = fxb_arena_strndup(a, v->str, v->len);
            if (acct != NULL && fxb_inbox_tag(acct) != NULL)
                inboxes[i] = acct;
        }
    }
    return shape;
}

/* The notices of one chunk (at most NOTIFY_CHUNK) to the inboxes resolved:
 * one fxb_inbox_append_batch. */
static fxb_code deliver_chunk(fxb_store *s, const fxb_policy *p, const char *const *inboxes,
                              const fxb_benefit_notice_kind *kinds, size_t n, int64_t now_ms,
                              const notice_text *text, size_t *sent, fxb_err *err)
{
    fxb_inbox_msg *msgs = malloc(n * sizeof *msgs);
    if (msgs == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                           "out of memory for benefit notices");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (inboxes[i] == NULL)
            continue;
        const notice_text *t = &text[kinds[i]];
        msgs[m++] = (fxb_inbox_msg){.subject = inboxes[i],
                                    .kind = kind_name[kinds[i]],
                                    .title = t->title,
                                    .body = t->body,
                                    .ref = p->id};
    }
    size_t done = 0;
    fxb_code rc = fxb_inbox_append_batch(s, msgs, m, now_ms, &done, err);
    *sent += done;
    free(msgs);
    return rc;
}

/* One chunk: resolves the persons' accounts (one MGET of their
 * {p:<pid>}:account keys rather than a GET each, so Redis pays its
 * per-command cost once per chunk; this is for a standalone Redis: on Redis
 * Cluster the keys would have to be grouped by hash slot, one MGET per
 * slot), skips persons without one, appends the notices (one batch). */
static fxb_code notify_chunk(fxb_store *s, const fxb_policy *p, const char *const *subjects,
                             const fxb_benefit_notice_kind *kinds, size_t n, int64_t now_ms,
                             const notice_text *text, size_t *sent, fxb_err *err)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char **inboxes = fxb_arena_calloc(&a, n, sizeof *inboxes);
    fxb_store_cmd cmd;
    size_t ng = inboxes != NULL ? fxb_benefit_accounts_cmd(&a, subjects, n, &cmd) : SIZE_MAX;
    if (ng == SIZE_MAX) {
        fxb_arena_free(&a);
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                           "out of memory for benefit notices");
    }
    redisReply *r = NULL;
    if (ng > 0 && fxb_store_pipeline(s, err, 1, &cmd, &r) != FXB_OK) {
        fxb_arena_free(&a);
        return err->code;
    }
    bool shape = fxb_benefit_accounts_read(&a, subjects, n, r, inboxes);
    if (r != NULL)
        freeReplyObject(r);
    fxb_code rc = shape ? deliver_chunk(s, p, inboxes, kinds, n, now_ms, text, sent, err)
                        : fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                                      "MGET of the persons' accounts answered in an "
                                      "unexpected shape");
    fxb_arena_free(&a);
    return rc;
}

/* What both entry points check and compose: NULL with *err set, or the
 * texts of the kinds used (free them). */
static notice_text *prepare(const fxb_policy *p, const char *const *subjects,
                            const fxb_benefit_notice_kind *kinds, size_t n, fxb_err *err)
{
    if (p == NULL || subjects == NULL || kinds == NULL) {
        fxb_err_set(err, FXB_INVALID_ARGUMENT, "NOTICE_INVALID", ZH_BUSY,
                    "benefit notices need a policy, subjects and kinds");
        return NULL;
    }
    if (!fxb_key_id_valid(p->id)) {
        fxb_err_set(err, FXB_INVALID_ARGUMENT, "POLICY_ID_INVALID", ZH_BUSY,
                    "benefit notices need the policy's id");
        return NULL;
    }
    bool used[FXB_NOTICE_PAID + 1] = {false};
    for (size_t i = 0; i < n; i++) {
        if (!fxb_ent_subject_ok(subjects[i])) {
            fxb_err_set(err, FXB_INVALID_ARGUMENT, "SUBJECT_ID_INVALID", ZH_BUSY,
                        "subject %zu is not p / e + 24 hex digits", i);
            return NULL;
        }
        if (kinds[i] < FXB_NOTICE_GRANTED || kinds[i] > FXB_NOTICE_PAID) {
            fxb_err_set(err, FXB_INVALID_ARGUMENT, "NOTICE_KIND_INVALID", ZH_BUSY,
                        "notice kind %d of subject %zu is unknown", (int)kinds[i], i);
            return NULL;
        }
        used[kinds[i]] = true;
    }
    notice_text *text = malloc((FXB_NOTICE_PAID + 1) * sizeof *text);
    if (text == NULL) {
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                    "out of memory for benefit notices");
        return NULL;
    }
    for (int k = FXB_NOTICE_GRANTED; k <= FXB_NOTICE_PAID; k++)
        if (used[k])
            compose_kind(p, (fxb_benefit_notice_kind)k, &text[k]);
    return text;
}

/* Both entry points: checks, composes the texts, then per chunk of
 * NOTIFY_CHUNK delivers to the inboxes given, or (inboxes NULL) resolves
 * them first. */
static fxb_code notify(fxb_store *s, const fxb_policy *p, const char *const *subjects,
                       const char *const *inboxes, const fxb_benefit_notice_kind *kinds, size_t n,
                       int64_t now_ms, size_t *sent, fxb_err *err)
{
    size_t count = 0;
    if (sent != NULL)
        *sent = 0;
    if (n == 0)
        return FXB_OK;
    notice_text *text = prepare(p, subjects, kinds, n, err);
    if (text == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    for (size_t start = 0; start < n && rc == FXB_OK; start += NOTIFY_CHUNK) {
        size_t m = n - start < NOTIFY_CHUNK ? n - start : NOTIFY_CHUNK;
        rc =
            inboxes != NULL
                ? deliver_chunk(s, p, inboxes + start, kinds + start, m, now_ms, text, &count, err)
                : notify_chunk(s, p, subjects + start, kinds + start, m, now_ms, text, &count, err);
    }
    free(text);
    if (sent != NULL)
        *sent = count;
    return rc;
}

fxb_code fxb_benefit_notify_inboxes(fxb_store *s, const fxb_policy *p, const char *const *subjects,
                                    const char *const *inboxes,
                                    const fxb_benefit_notice_kind *kinds, size_t n, int64_t now_ms,
                                    size_t *sent, fxb_err *err)
{
    if (n > 0 && inboxes == NULL) {
        if (sent != NULL)
            *sent = 0;
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "NOTICE_INVALID", ZH_BUSY,
                           "benefit notices need the inboxes resolved");
    }
    return notify(s, p, subjects, inboxes, kinds, n, now_ms, sent, err);
}

fxb_code fxb_benefit_notify(fxb_store *s, const fxb_policy *p, const char *const *subjects,
                            const fxb_benefit_notice_kind *kinds, size_t n, int64_t now_ms,
                            size_t *sent, fxb_err *err)
{
    return notify(s, p, subjects, NULL, kinds, n, now_ms, sent, err);
}
