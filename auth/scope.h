/* Delegation scopes (ProxyService, proto/fxb/v1/proxy.proto): the words a
 * grant holds and a delegated token carries in its "scope" claim, and the
 * checks the runtime makes with them. Pure functions: no store, no clock.
 *
 *   capabilities  filing.read filing.submit benefits.read inbox.read
 *   items         item:<code>       code: 1..40 of [A-Za-z0-9._-]
 *   categories    category:<name>   a catalogue category (below)
 *
 * Canonical form: distinct words, sorted (strcmp), joined by one space. */
#ifndef FXB_AUTH_SCOPE_H
#define FXB_AUTH_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "server/handler.h"
#include "server/status.h"

#define FXB_SCOPE_MAX_WORDS 32
#define FXB_SCOPE_WORD_MAX  64
#define FXB_SCOPE_ITEM_MAX  40
/* Longest canonical scope string: fits the token's scope claim. */
#define FXB_SCOPE_TEXT_MAX FXB_SCOPE_CLAIM_MAX

#define FXB_CAP_FILING_READ   "filing.read"
#define FXB_CAP_FILING_SUBMIT "filing.submit"
#define FXB_CAP_BENEFITS_READ "benefits.read"
#define FXB_CAP_INBOX_READ    "inbox.read"

/* True for a known capability word. */
bool fxb_scope_capability_known(const char *word);

/* True for a catalogue category name (education, police, social_security,
 * civil_affairs, health, tax, real_estate, housing_fund, utilities,
 * enterprise, market, transport). */
bool fxb_scope_category_known(const char *name);

/* True for a syntactically valid service item code. */
bool fxb_scope_item_code_valid(const char *code);

/* Validates the words a client asked for and writes the canonical scope
 * string into out (FXB_SCOPE_TEXT_MAX + 1 bytes). Rules: 1..32 words, each
 * a known capability, item:<valid code> or category:<known category>;
 * duplicates are merged; at least one capability; a grant with a filing
 * capability names at least one item or category. Errors are
 * INVALID_ARGUMENT with reason SCOPE_INVALID and a message naming the
 * offending word (or the rule broken). */
fxb_code fxb_scope_canonical(const char *const *words, size_t n, char *out, fxb_err *err);

/* True when the space-separated scope string holds word exactly. */
bool fxb_scope_has(const char *scope, const char *word);

/* True when the scope admits acting on item code (of category, NULL or ""
 * when unknown): it holds "item:<code>" or "category:<category>". */
bool fxb_scope_allows_item(const char *scope, const char *code, const char *category);

/* Splits a canonical scope string into words (pointers into buf, a copy
 * the caller provides of at least strlen(scope) + 1 bytes). Returns the
 * number of words (at most cap). */
size_t fxb_scope_split(const char *scope, char *buf, size_t buf_len, const char **words,
                       size_t cap);

#endif
