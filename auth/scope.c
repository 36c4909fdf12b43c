/* Delegation scopes: validation, canonical form, and the checks made per
 * delegated call. */
#include "auth/scope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const capabilities[] = {
    FXB_CAP_BENEFITS_READ,
    FXB_CAP_FILING_READ,
    FXB_CAP_FILING_SUBMIT,
    FXB_CAP_INBOX_READ,
};

/* The catalogue's categories: the high-frequency areas of regulation art. 8
 * plus enterprise, market and transport matters. */
static const char *const categories[] = {
    "civil_affairs", "education",   "enterprise",      "health", "housing_fund", "market",
    "police",        "real_estate", "social_security", "tax",    "transport",    "utilities",
};

#define ITEM_PREFIX     "item:"
#define CATEGORY_PREFIX "category:"

static bool in_list(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

bool fxb_scope_capability_known(const char *word)
{
    return word != NULL &&
           in_list(capabilities, sizeof capabilities / sizeof capabilities[0], word);
}

bool fxb_scope_category_known(const char *name)
{
    return name != NULL && in_list(categories, sizeof categories / sizeof categories[0], name);
}

bool fxb_scope_item_code_valid(const char *code)
{
    if (code == NULL)
        return false;
    size_t n = strnlen(code, FXB_SCOPE_ITEM_MAX + 1);
    if (n == 0 || n > FXB_SCOPE_ITEM_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = code[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A word's class: 'c' capability, 'i' item, 'g' category, 0 invalid. */
static char word_class(const char *w)
{
    if (fxb_scope_capability_known(w))
        return 'c';
    if (starts_with(w, ITEM_PREFIX))
        return fxb_scope_item_code_valid(w + strlen(ITEM_PREFIX)) ? 'i' : 0;
    if (starts_with(w, CATEGORY_PREFIX))
        return fxb_scope_category_known(w + strlen(CATEGORY_PREFIX)) ? 'g' : 0;
    return 0;
}

static int by_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A refusal naming the offending word, then why. */
static fxb_code invalid_word(fxb_err *err, const char *word, const char *why)
{
    char shown[FXB_SCOPE_WORD_MAX + 4];
    /* the word is client input: show a bounded, printable prefix */
    size_t n = 0;
    for (; word && word[n] && n < FXB_SCOPE_WORD_MAX; n++)
        shown[n] = (word[n] >= 0x20 && word[n] < 0x7f) ? word[n] : '?';
    if (word && word[n])
        shown[n++] = '.', shown[n++] = '.', shown[n++] = '.';
    shown[n] = '\0';
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SCOPE_INVALID", "授权范围无效",
                       "scope \"%s\" %s", shown, why);
}

static fxb_code invalid_rule(fxb_err *err, const char *rule)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SCOPE_INVALID", "授权范围无效", "%s", rule);
}

fxb_code fxb_scope_canonical(const char *const *words, size_t n, char *out, fxb_err *err)
{
    out[0] = '\0';
    if (n == 0)
        return invalid_rule(err, "scopes must name at least one capability");
    if (n > FXB_SCOPE_MAX_WORDS) {
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SCOPE_INVALID", "授权范围无效",
                           "at most %d scopes per grant, got %zu", FXB_SCOPE_MAX_WORDS, n);
    }
    const char *sorted[FXB_SCOPE_MAX_WORDS];
    bool capability = false, filing = false, target = false;
    for (size_t i = 0; i < n; i++) {
        const char *w = words[i] ? words[i] : "";
        if (strnlen(w, FXB_SCOPE_WORD_MAX + 1) > FXB_SCOPE_WORD_MAX)
            return invalid_word(err, w, "is longer than 64 characters");
        char cls = word_class(w);
        if (cls == 0)
            return invalid_word(err, w,
                                "is unknown: expected a capability (filing.read, "
                                "filing.submit, benefits.read, inbox.read), item:<code> or "
                                "category:<name>");
        capability |= cls == 'c';
        target |= cls == 'i' || cls == 'g';
        filing |= strcmp(w, FXB_CAP_FILING_READ) == 0 || strcmp(w, FXB_CAP_FILING_SUBMIT) == 0;
        sorted[i] = w;
    }
    if (!capability)
        return invalid_rule(err, "scopes must name at least one capability");
    if (filing && !target)
        return invalid_rule(err, "filing scopes must name at least one item:<code> or "
                                 "category:<name>");
    qsort(sorted, n, sizeof sorted[0], by_strcmp);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue;
        size_t wl = strlen(sorted[i]);
        if (len + (len ? 1 : 0) + wl > FXB_SCOPE_TEXT_MAX)
            return invalid_rule(err, "the scopes are longer than 1024 characters together");
        if (len)
            out[len++] = ' ';
        memcpy(out + len, sorted[i], wl);
        len += wl;
    }
    out[len] = '\0';
    return FXB_OK;
}

bool fxb_scope_has(const char *scope, const char *word)
{
    if (scope == NULL || word == NULL || word[0] == '\0')
        return false;
    size_t wl = strlen(word);
    for (const char *p = scope; *p;) {
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == wl && memcmp(p, word, n) == 0)
            return true;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return false;
}

bool fxb_scope_allows_item(const char *scope, const char *code, const char *category)
{
    if (!fxb_scope_item_code_valid(code))
        return false;
    char word[FXB_SCOPE_WORD_MAX + 16];
    snprintf(word, sizeof word, ITEM_PREFIX "%s", code);
    if (fxb_scope_has(scope, word))
        return true;
    if (category == NULL || category[0] == '\0' || !fxb_scope_category_known(category))
        return false;
    snprintf(word, sizeof word, CATEGORY_PREFIX "%s", category);
    return fxb_scope_has(scope, word);
}

size_t fxb_scope_split(const char *scope, char *buf, size_t buf_len, const char **words, size_t cap)
{
    size_t n = strlen(scope);
    if (buf_len < n + 1)
        return 0;
    memcpy(buf, scope, n + 1);
    size_t count = 0;
    for (char *p = buf; *p && count < cap;) {
        char *end = strchr(p, ' ');
        if (end)
            *end = '\0';
        if (*p)
            words[count++] = p;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return count;
}
