/* The catalogue import: the JSON file is parsed (jansson) and checked as a
 * whole, building every fxb.v1.Guide and fxb.v1.Bundle on the way; only a
 * file without a single error is written. Every rule broken is reported,
 * not just the first, so one run tells the editor of the file everything
 * to fix. The key schema is documented in catalog.c.
 *
 * Versions: an item's guide is packed with version and published_at_ms
 * zeroed and compared with its current version packed the same way; equal
 * keeps the version, different publishes version + 1. The write of one item
 * is one script that checks the item's version is still the one compared
 * against, so two imports racing cannot publish the same version twice. */
#include "services/catalog/catalog_import.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/scope.h"
#include "server/arena.h"
#include "server/text.h"

#define TEXT_MAX           500 /* any string, in characters (code points) */
#define ARRAY_MAX          30  /* any list inside a guide or a bundle */
#define ITEM_NAME_MAX      60  /* item, material, bundle and procedure names */
#define DEPT_NAME_MAX      40
#define CAT_NAME_MAX       20
#define MAT_CODE_MAX       16
#define LICENCE_MAX        40
#define MAX_FILES_MAX      10
#define SUPPLEMENT_MAX     60
#define CORRECTION_MAX     30
#define TIME_LIMIT_MAX     200
#define LEGAL_LIMIT_MAX    365
#define BUNDLE_ITEMS_MIN   2
#define BUNDLE_ITEMS_MAX   10
#define IMPORT_ARENA_LIMIT (1024u * 1024u * 1024u)
#define PATH_MAX_LEN       96

/* Levels in enum order (index = Fxb__V1__ItemLevel). */
static const char *const level_names[] = {NULL, "city", "county", "township", "village"};

static const char *const procedure_kinds[] = {NULL,      "site_inspection", "technical_review",
                                              "hearing", "expert_review",   "public_notice"};

const char *const fxb_catalog_categories[FXB_CATALOG_CATEGORIES] = {
    "civil_affairs", "education",   "enterprise",      "health", "housing_fund", "market",
    "police",        "real_estate", "social_security", "tax",    "transport",    "utilities",
};

static const char *const forms[] = {"pdf", "jpeg", "png"};
static const char *const channels[] = {"app", "hall", "mail"};

/* Art. 17: the list of materials is complete; a catch-all is not a material. */
static const char *const vague_names[] = {"其他材料", "相关材料", "其他有关材料"};

const char *fxb_catalog_level_name(Fxb__V1__ItemLevel level)
{
    if ((int)level < 1 || (int)level > 4)
        return NULL;
    return level_names[level];
}

Fxb__V1__ItemLevel fxb_catalog_level_parse(const char *name)
{
    for (int i = 1; name != NULL && i <= 4; i++)
        if (strcmp(level_names[i], name) == 0)
            return (Fxb__V1__ItemLevel)i;
    return FXB__V1__ITEM_LEVEL__ITEM_LEVEL_UNSPECIFIED;
}

bool fxb_catalog_dept_valid(const char *code)
{
    if (code == NULL)
        return false;
    size_t n = strnlen(code, FXB_CATALOG_DEPT_MAX + 1);
    if (n == 0 || n > FXB_CATALOG_DEPT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((code[i] >= 'a' && code[i] <= 'z') || (code[i] >= '0' && code[i] <= '9') ||
              code[i] == '-'))
            return false;
    return true;
}

/* --- validation context ------------------------------------------------------ */

typedef struct vctx {
    FILE *errs;
    size_t errors;
    fxb_arena *a;
    bool oom;
    const char *kind; /* "item", "bundle", "department", "category", "file" */
    char who[FXB_CATALOG_CODE_MAX + 16];
} vctx;

static void verr(vctx *v, const char *pfx, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One line "<kind> <who>: <pfx><field>: <why>". */
static void verr(vctx *v, const char *pfx, const char *field, const char *fmt, ...)
{
    v->errors++;
    if (v->errs == NULL)
        return;
    fprintf(v->errs, "%s %s: %s%s: ", v->kind, v->who, pfx, field);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(v->errs, fmt, ap);
    va_end(ap);
    fputc('\n', v->errs);
}

static void set_who(vctx *v, const char *kind, const char *code, size_t index, bool code_ok)
{
    v->kind = kind;
    if (code_ok)
        snprintf(v->who, sizeof v->who, "%s", code);
    else
        snprintf(v->who, sizeof v->who, "[%zu]", index);
}

static bool in_list(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] != NULL && strcmp(list[i], s) == 0)
            return true;
    return false;
}

static bool charset(const char *s, size_t max, const char *extra, bool upper)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (upper && c >= 'A' && c <= 'Z') ||
              (c != '\0' && strchr(extra, c) != NULL)))
            return false;
    }
    return true;
}

static bool material_code_valid(const char *s)
{
    return charset(s, MAT_CODE_MAX, "_-", true);
}

static bool licence_type_valid(const char *s)
{
    return charset(s, LICENCE_MAX, "_", false);
}

/* Members other than the allowed ones are errors: a misspelt field must not
 * read as an absent one. */
static void known_keys(vctx *v, json_t *o, const char *pfx, const char *const *keys, size_t n)
{
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val)
    {
        (void)val;
        if (!in_list(keys, n, k))
            verr(v, pfx, k, "unknown field");
    }
}

/* A string value j (NULL: absent, reads as ""): min..max characters of
 * valid UTF-8 without control characters. Returns the text, "" after an
 * error (reported under pfx + field). */
static const char *text_of(vctx *v, json_t *j, const char *pfx, const char *field, size_t min,
                           size_t max)
{
    if (j == NULL || json_is_null(j)) {
        if (min > 0)
            verr(v, pfx, field, "missing");
        return "";
    }
    if (!json_is_string(j)) {
        verr(v, pfx, field, "must be a string");
        return "";
    }
    const char *s = json_string_value(j);
    long n = fxb_text_chars(s, json_string_length(j));
    if (n < 0 || strlen(s) != json_string_length(j)) {
        verr(v, pfx, field, "must be UTF-8 text without control characters");
        return "";
    }
    if ((size_t)n < min || (size_t)n > max) {
        if (min == 0)
            verr(v, pfx, field, "at most %zu characters", max);
        else
            verr(v, pfx, field, "must be %zu..%zu characters", min, max);
        return "";
    }
    return s;
}

static const char *text(vctx *v, json_t *o, const char *pfx, const char *key, size_t min,
                        size_t max)
{
    return text_of(v, json_object_get(o, key), pfx, key, min, max);
}

/* An integer member in lo..hi (absent: def). */
static long long integer(vctx *v, json_t *o, const char *pfx, const char *key, long long lo,
                         long long hi, long long def)
{
    json_t *j = json_object_get(o, key);
    if (j == NULL || json_is_null(j))
        return def;
    if (!json_is_integer(j)) {
        verr(v, pfx, key, "must be an integer");
        return def;
    }
    long long x = (long long)json_integer_value(j);
    if (x < lo || x > hi) {
        verr(v, pfx, key, "must be %lld..%lld", lo, hi);
        return def;
    }
    return x;
}

static bool flag(vctx *v, json_t *o, const char *pfx, const char *key)
{
    json_t *j = json_object_get(o, key);
    if (j == NULL || json_is_null(j))
        return false;
    if (!json_is_boolean(j)) {
        verr(v, pfx, key, "must be true or false");
        return false;
    }
    return json_is_true(j);
}

/* An array member of at most max elements (absent: empty). Sets *n; NULL
 * when absent, empty or invalid. */
static json_t *array(vctx *v, json_t *o, const char *pfx, const char *key, size_t max, size_t *n)
{
    *n = 0;
    json_t *j = json_object_get(o, key);
    if (j == NULL || json_is_null(j))
        return NULL;
    if (!json_is_array(j)) {
        verr(v, pfx, key, "must be an array");
        return NULL;
    }
    if (json_array_size(j) > max) {
        verr(v, pfx, key, "at most %zu entries", max);
        return NULL;
    }
    *n = json_array_size(j);
    return *n > 0 ? j : NULL;
}

typedef bool (*word_check)(const char *s);

/* An array of strings (each 1..TEXT_MAX characters; when check is set, it
 * must pass and duplicates are errors), into the arena. */
static char **strings(vctx *v, json_t *o, const char *pfx, const char *key, size_t min,
                      word_check check, const char *check_why, size_t *n_out)
{
    size_t n;
    json_t *arr = array(v, o, pfx, key, ARRAY_MAX, &n);
    *n_out = 0;
    if (n < min) {
        verr(v, pfx, key, "needs at least %zu entries", min);
        return NULL;
    }
    if (arr == NULL)
        return NULL;
    char **out = fxb_arena_calloc(v->a, n, sizeof *out);
    if (out == NULL) {
        v->oom = true;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char field[PATH_MAX_LEN];
        snprintf(field, sizeof field, "%s[%zu]", key, i);
        json_t *e = json_array_get(arr, i);
        const char *str = text_of(v, e, pfx, field, 1, TEXT_MAX);
        if (str[0] == '\0')
            continue;
        if (check != NULL && !check(str)) {
            verr(v, pfx, field, "%s", check_why);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < k; j++)
            dup = dup || strcmp(out[j], str) == 0;
        if (dup && check != NULL) {
            verr(v, pfx, field, "duplicate \"%s\"", str);
            continue;
        }
        out[k++] = (char *)str;
    }
    *n_out = k;
    return out;
}

static bool form_known(const char *s)
{
    return in_list(forms, sizeof forms / sizeof forms[0], s);
}

static bool channel_known(const char *s)
{
    return in_list(channels, sizeof channels / sizeof channels[0], s);
}

/* --- the file's parts -------------------------------------------------------- */

typedef struct dept {
    const char *code, *name;
} dept;

typedef struct item {
    const char *code, *name, *department, *department_name, *category;
    Fxb__V1__ItemLevel level;
    Fxb__V1__Guide *guide;
} item;

typedef struct catalog {
    dept *depts;
    size_t n_depts;
    dept cats[16];
    size_t n_cats;
    item *items;
    size_t n_items;
    item **by_code; /* sorted by code */
    Fxb__V1__Bundle **bundles;
    size_t n_bundles;
} catalog;

static int dept_cmp(const void *a, const void *b)
{
    return strcmp(((const dept *)a)->code, ((const dept *)b)->code);
}

static int item_ptr_cmp(const void *a, const void *b)
{
    return strcmp((*(item *const *)a)->code, (*(item *const *)b)->code);
}

static const dept *find_dept(const catalog *c, const char *code)
{
    dept key = {code, NULL};
    return bsearch(&key, c->depts, c->n_depts, sizeof *c->depts, dept_cmp);
}

static item *find_item(const catalog *c, const char *code)
{
    item key = {.code = code};
    item *kp = &key;
    item **hit = bsearch(&kp, c->by_code, c->n_items, sizeof *c->by_code, item_ptr_cmp);
    return hit ? *hit : NULL;
}

static void check_categories(vctx *v, json_t *root, catalog *c)
{
    v->kind = "file";
    snprintf(v->who, sizeof v->who, "%s", "catalog");
    size_t n;
    json_t *arr = array(v, root, "", "categories", 16, &n);
    if (arr == NULL && n == 0) {
        verr(v, "", "categories", "must list the 12 catalogue categories");
        return;
    }
    static const char *const keys[] = {"code", "name"};
    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_t *o = json_array_get(arr, i);
        set_who(v, "category", "", i, false);
        if (!json_is_object(o)) {
            verr(v, "", "", "must be an object");
            continue;
        }
        json_t *cj = json_object_get(o, "code");
        const char *code = json_is_string(cj) ? json_string_value(cj) : "";
        bool known = fxb_scope_category_known(code);
        set_who(v, "category", code, i, known);
        known_keys(v, o, "", keys, 2);
        if (!known) {
            verr(v, "", "code",
                 "not a catalogue category (education, police, social_security, "
                 "civil_affairs, health, tax, real_estate, housing_fund, utilities, "
                 "enterprise, market, transport)");
            continue;
        }
        const char *name = text(v, o, "", "name", 1, CAT_NAME_MAX);
        bool dup = false;
        for (size_t k = 0; k < c->n_cats; k++)
            dup = dup || strcmp(c->cats[k].code, code) == 0;
        if (dup) {
            verr(v, "", "code", "duplicate");
            continue;
        }
        c->cats[c->n_cats++] = (dept){code, name};
    }
    for (size_t k = 0; k < FXB_CATALOG_CATEGORIES; k++) {
        const char *code = fxb_catalog_categories[k];
        bool found = false;
        for (size_t j = 0; j < c->n_cats; j++)
            found = found || strcmp(c->cats[j].code, code) == 0;
        if (!found) {
            set_who(v, "category", code, 0, true);
            verr(v, "", "code", "missing from categories");
        }
    }
}

static void check_departments(vctx *v, json_t *root, catalog *c)
{
    v->kind = "file";
    snprintf(v->who, sizeof v->who, "%s", "catalog");
    size_t n;
    json_t *arr = array(v, root, "", "departments", FXB_CATALOG_DEPARTMENTS_MAX, &n);
    if (arr == NULL) {
        if (n == 0)
            verr(v, "", "departments", "must list at least one department");
        return;
    }
    c->depts = fxb_arena_calloc(v->a, n, sizeof *c->depts);
    if (c->depts == NULL) {
        v->oom = true;
        return;
    }
    static const char *const keys[] = {"code", "name"};
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        set_who(v, "department", "", i, false);
        if (!json_is_object(o)) {
            verr(v, "", "", "must be an object");
            continue;
        }
        json_t *cj = json_object_get(o, "code");
        const char *code = json_is_string(cj) ? json_string_value(cj) : "";
        bool ok = fxb_catalog_dept_valid(code) && strlen(code) == json_string_length(cj);
        set_who(v, "department", code, i, ok);
        known_keys(v, o, "", keys, 2);
        if (!ok) {
            verr(v, "", "code", "must be 1..%d of [a-z0-9-]", FXB_CATALOG_DEPT_MAX);
            continue;
        }
        const char *name = text(v, o, "", "name", 1, DEPT_NAME_MAX);
        bool dup = false;
        for (size_t k = 0; k < c->n_depts && !dup; k++)
            dup = strcmp(c->depts[k].code, code) == 0;
        if (dup) {
            verr(v, "", "code", "duplicate");
            continue;
        }
        c->depts[c->n_depts++] = (dept){code, name};
    }
    qsort(c->depts, c->n_depts, sizeof *c->depts, dept_cmp);
}

static Fxb__V1__MaterialSpec *check_material(vctx *v, json_t *o, size_t i, bool tolerated,
                                             bool *tolerable)
{
    char pfx[PATH_MAX_LEN];
    snprintf(pfx, sizeof pfx, "guide.materials[%zu].", i);
    if (!json_is_object(o)) {
        verr(v, "guide.materials", "", "[%zu] must be an object", i);
        return NULL;
    }
    static const char *const keys[] = {"code",           "name",          "requirement",
                                       "accepted_forms", "licence_types", "description",
                                       "source",         "max_files"};
    known_keys(v, o, pfx, keys, sizeof keys / sizeof keys[0]);
    Fxb__V1__MaterialSpec *m = fxb_arena_alloc(v->a, sizeof *m);
    if (m == NULL) {
        v->oom = true;
        return NULL;
    }
    fxb__v1__material_spec__init(m);
    m->code = (char *)text(v, o, pfx, "code", 1, MAT_CODE_MAX);
    if (m->code[0] != '\0' && !material_code_valid(m->code)) {
        verr(v, pfx, "code", "must be 1..%d of [A-Za-z0-9_-]", MAT_CODE_MAX);
        m->code = "";
    }
    m->name = (char *)text(v, o, pfx, "name", 1, ITEM_NAME_MAX);
    for (size_t k = 0; k < sizeof vague_names / sizeof vague_names[0]; k++)
        if (strstr(m->name, vague_names[k]) != NULL)
            verr(v, pfx, "name",
                 "\"%s\" is a catch-all: the list of materials must be complete (art. 17)",
                 vague_names[k]);
    const char *req = text(v, o, pfx, "requirement", 1, 16);
    if (strcmp(req, "required") == 0)
        m->requirement = FXB__V1__MATERIAL_REQUIREMENT__MATERIAL_REQUIREMENT_REQUIRED;
    else if (strcmp(req, "optional") == 0)
        m->requirement = FXB__V1__MATERIAL_REQUIREMENT__MATERIAL_REQUIREMENT_OPTIONAL;
    else if (strcmp(req, "tolerable") == 0) {
        m->requirement = FXB__V1__MATERIAL_REQUIREMENT__MATERIAL_REQUIREMENT_TOLERABLE;
        *tolerable = true;
        if (!tolerated)
            verr(v, pfx, "requirement",
                 "\"tolerable\" only when the guide allows tolerated_acceptance");
    } else if (req[0] != '\0')
        verr(v, pfx, "requirement", "must be required, optional or tolerable");
    m->accepted_forms = strings(v, o, pfx, "accepted_forms", 0, form_known,
                                "must be pdf, jpeg or png", &m->n_accepted_forms);
    m->licence_types = strings(v, o, pfx, "licence_types", 0, licence_type_valid,
                               "must be 1..40 of [a-z0-9_]", &m->n_licence_types);
    if (json_array_size(json_object_get(o, "accepted_forms")) == 0 &&
        json_array_size(json_object_get(o, "licence_types")) == 0)
        verr(v, pfx, "accepted_forms", "empty: allowed only when licence_types names a licence");
    m->description = (char *)text(v, o, pfx, "description", 0, TEXT_MAX);
    m->source = (char *)text(v, o, pfx, "source", 0, TEXT_MAX);
    m->max_files = (uint32_t)integer(v, o, pfx, "max_files", 1, MAX_FILES_MAX, 1);
    return m;
}

static Fxb__V1__SpecialProcedure *check_procedure(vctx *v, json_t *o, size_t i)
{
    char pfx[PATH_MAX_LEN];
    snprintf(pfx, sizeof pfx, "guide.special_procedures[%zu].", i);
    if (!json_is_object(o)) {
        verr(v, "guide.special_procedures", "", "[%zu] must be an object", i);
        return NULL;
    }
    static const char *const keys[] = {"code", "kind", "name", "time_limit_working_days"};
    known_keys(v, o, pfx, keys, 4);
    Fxb__V1__SpecialProcedure *p = fxb_arena_alloc(v->a, sizeof *p);
    if (p == NULL) {
        v->oom = true;
        return NULL;
    }
    fxb__v1__special_procedure__init(p);
    p->code = (char *)text(v, o, pfx, "code", 1, MAT_CODE_MAX);
    if (p->code[0] != '\0' && !material_code_valid(p->code)) {
        verr(v, pfx, "code", "must be 1..%d of [A-Za-z0-9_-]", MAT_CODE_MAX);
        p->code = "";
    }
    const char *kind = text(v, o, pfx, "kind", 1, 32);
    for (int k = 1; k <= 5; k++)
        if (strcmp(kind, procedure_kinds[k]) == 0)
            p->kind = (Fxb__V1__SpecialProcedureKind)k;
    if (kind[0] != '\0' && p->kind == 0)
        verr(v, pfx, "kind",
             "must be site_inspection, technical_review, hearing, expert_review or "
             "public_notice");
    p->name = (char *)text(v, o, pfx, "name", 1, ITEM_NAME_MAX);
    p->time_limit_working_days =
        (uint32_t)integer(v, o, pfx, "time_limit_working_days", 1, TIME_LIMIT_MAX, 0);
    if (json_object_get(o, "time_limit_working_days") == NULL)
        verr(v, pfx, "time_limit_working_days", "missing");
    return p;
}

static Fxb__V1__Guide *check_guide(vctx *v, json_t *o)
{
    const char *pfx = "guide.";
    if (!json_is_object(o)) {
        verr(v, "", "guide", "missing (an object)");
        return NULL;
    }
    static const char *const keys[] = {"legal_basis",
                                       "conditions",
                                       "materials",
                                       "review_standard",
                                       "procedure",
                                       "time_limit_working_days",
                                       "legal_time_limit_working_days",
                                       "fee_basis",
                                       "fee_fen",
                                       "immediate",
                                       "notify_commit_allowed",
                                       "tolerated_acceptance",
                                       "supplement_working_days",
                                       "correction_working_days",
                                       "special_procedures",
                                       "result_name",
                                       "result_licence_type",
                                       "appointment_available",
                                       "plain_summary",
                                       "service_channels"};
    known_keys(v, o, pfx, keys, sizeof keys / sizeof keys[0]);
    Fxb__V1__Guide *g = fxb_arena_alloc(v->a, sizeof *g);
    if (g == NULL) {
        v->oom = true;
        return NULL;
    }
    fxb__v1__guide__init(g);
    g->legal_basis = strings(v, o, pfx, "legal_basis", 1, NULL, NULL, &g->n_legal_basis);
    g->conditions = strings(v, o, pfx, "conditions", 0, NULL, NULL, &g->n_conditions);
    g->review_standard = (char *)text(v, o, pfx, "review_standard", 1, TEXT_MAX);
    g->procedure = strings(v, o, pfx, "procedure", 1, NULL, NULL, &g->n_procedure);
    g->immediate = flag(v, o, pfx, "immediate");
    g->notify_commit_allowed = flag(v, o, pfx, "notify_commit_allowed");
    g->tolerated_acceptance = flag(v, o, pfx, "tolerated_acceptance");
    g->appointment_available = flag(v, o, pfx, "appointment_available");

    g->time_limit_working_days =
        (uint32_t)integer(v, o, pfx, "time_limit_working_days", 0, TIME_LIMIT_MAX, 0);
    g->legal_time_limit_working_days =
        (uint32_t)integer(v, o, pfx, "legal_time_limit_working_days", 0, LEGAL_LIMIT_MAX, 0);
    if (g->immediate && g->time_limit_working_days != 0)
        verr(v, pfx, "time_limit_working_days", "must be 0 for an immediate item");
    if (!g->immediate && g->time_limit_working_days == 0)
        verr(v, pfx, "time_limit_working_days", "must be 1..%d (0 only for an immediate item)",
             TIME_LIMIT_MAX);
    if (!g->immediate && g->time_limit_working_days > g->legal_time_limit_working_days)
        verr(v, pfx, "time_limit_working_days",
             "%u is more than the legal time limit (%u working days)", g->time_limit_working_days,
             g->legal_time_limit_working_days);

    g->fee_fen = integer(v, o, pfx, "fee_fen", 0, 1000000000LL, 0);
    g->fee_basis = (char *)text(v, o, pfx, "fee_basis", 0, TEXT_MAX);
    if (g->fee_fen > 0 && g->fee_basis[0] == '\0')
        verr(v, pfx, "fee_basis", "required when fee_fen > 0");

    g->supplement_working_days =
        (uint32_t)integer(v, o, pfx, "supplement_working_days", 0, SUPPLEMENT_MAX, 0);
    if (g->tolerated_acceptance && g->supplement_working_days == 0)
        verr(v, pfx, "supplement_working_days", "must be 1..%d with tolerated_acceptance",
             SUPPLEMENT_MAX);
    if (!g->tolerated_acceptance && g->supplement_working_days != 0)
        verr(v, pfx, "supplement_working_days", "only with tolerated_acceptance");
    g->correction_working_days =
        (uint32_t)integer(v, o, pfx, "correction_working_days", 0, CORRECTION_MAX, 0);
    if (!g->immediate && g->correction_working_days == 0)
        verr(v, pfx, "correction_working_days", "must be 1..%d", CORRECTION_MAX);

    size_t n;
    json_t *arr = array(v, o, pfx, "materials", ARRAY_MAX, &n);
    bool tolerable = false;
    if (arr != NULL) {
        g->materials = fxb_arena_calloc(v->a, n, sizeof *g->materials);
        if (g->materials == NULL) {
            v->oom = true;
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            Fxb__V1__MaterialSpec *m =
                check_material(v, json_array_get(arr, i), i, g->tolerated_acceptance, &tolerable);
            if (m == NULL)
                continue;
            for (size_t k = 0; k < g->n_materials && m->code[0] != '\0'; k++)
                if (strcmp(g->materials[k]->code, m->code) == 0) {
                    char field[PATH_MAX_LEN];
                    snprintf(field, sizeof field, "materials[%zu].code", i);
                    verr(v, pfx, field, "duplicate \"%s\"", m->code);
                    break;
                }
            g->materials[g->n_materials++] = m;
        }
    }
    if (g->tolerated_acceptance && !tolerable)
        verr(v, pfx, "tolerated_acceptance", "no material is \"tolerable\"");

    arr = array(v, o, pfx, "special_procedures", ARRAY_MAX, &n);
    if (arr != NULL) {
        g->special_procedures = fxb_arena_calloc(v->a, n, sizeof *g->special_procedures);
        if (g->special_procedures == NULL) {
            v->oom = true;
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            Fxb__V1__SpecialProcedure *p = check_procedure(v, json_array_get(arr, i), i);
            if (p == NULL)
                continue;
            for (size_t k = 0; k < g->n_special_procedures && p->code[0] != '\0'; k++)
                if (strcmp(g->special_procedures[k]->code, p->code) == 0) {
                    char field[PATH_MAX_LEN];
                    snprintf(field, sizeof field, "special_procedures[%zu].code", i);
                    verr(v, pfx, field, "duplicate \"%s\"", p->code);
                    break;
                }
            g->special_procedures[g->n_special_procedures++] = p;
        }
    }
    g->result_name = (char *)text(v, o, pfx, "result_name", 0, TEXT_MAX);
    g->result_licence_type = (char *)text(v, o, pfx, "result_licence_type", 0, LICENCE_MAX);
    if (g->result_licence_type[0] != '\0' && !licence_type_valid(g->result_licence_type))
        verr(v, pfx, "result_licence_type", "must be 1..%d of [a-z0-9_]", LICENCE_MAX);
    g->plain_summary = (char *)text(v, o, pfx, "plain_summary", 1, FXB_CATALOG_SUMMARY_MAX);
    g->service_channels = strings(v, o, pfx, "service_channels", 0, channel_known,
                                  "must be app, hall or mail", &g->n_service_channels);
    return g;
}

static void check_items(vctx *v, json_t *root, catalog *c)
{
    v->kind = "file";
    snprintf(v->who, sizeof v->who, "%s", "catalog");
    size_t n;
    json_t *arr = array(v, root, "", "items", FXB_CATALOG_ITEMS_MAX, &n);
    if (arr == NULL) {
        if (n == 0)
            verr(v, "", "items", "must list at least one item");
        return;
    }
    c->items = fxb_arena_calloc(v->a, n, sizeof *c->items);
    c->by_code = fxb_arena_calloc(v->a, n, sizeof *c->by_code);
    if (c->items == NULL || c->by_code == NULL) {
        v->oom = true;
        return;
    }
    static const char *const keys[] = {"code", "name", "department", "level", "category", "guide"};
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        set_who(v, "item", "", i, false);
        if (!json_is_object(o)) {
            verr(v, "", "", "must be an object");
            continue;
        }
        json_t *cj = json_object_get(o, "code");
        const char *code = json_is_string(cj) ? json_string_value(cj) : "";
        bool ok = fxb_scope_item_code_valid(code) && strlen(code) == json_string_length(cj);
        set_who(v, "item", code, i, ok);
        if (!ok)
            verr(v, "", "code", "must be 1..%d of [A-Za-z0-9._-]", FXB_CATALOG_CODE_MAX);
        known_keys(v, o, "", keys, sizeof keys / sizeof keys[0]);
        item *it = &c->items[c->n_items];
        it->code = code;
        it->name = text(v, o, "", "name", 1, ITEM_NAME_MAX);
        it->department = text(v, o, "", "department", 1, FXB_CATALOG_DEPT_MAX);
        const dept *d = it->department[0] ? find_dept(c, it->department) : NULL;
        if (it->department[0] != '\0' && d == NULL)
            verr(v, "", "department", "\"%s\" is not in departments", it->department);
        it->department_name = d ? d->name : "";
        const char *level = text(v, o, "", "level", 1, 16);
        it->level = fxb_catalog_level_parse(level);
        if (level[0] != '\0' && it->level == FXB__V1__ITEM_LEVEL__ITEM_LEVEL_UNSPECIFIED)
            verr(v, "", "level", "must be city, county, township or village");
        it->category = text(v, o, "", "category", 1, 32);
        if (it->category[0] != '\0' && !fxb_scope_category_known(it->category))
            verr(v, "", "category", "\"%s\" is not a catalogue category", it->category);
        it->guide = check_guide(v, json_object_get(o, "guide"));
        if (ok)
            c->by_code[c->n_items++] = it;
    }
    qsort(c->by_code, c->n_items, sizeof *c->by_code, item_ptr_cmp);
    for (size_t i = 1; i < c->n_items; i++)
        if (strcmp(c->by_code[i - 1]->code, c->by_code[i]->code) == 0) {
            set_who(v, "item", c->by_code[i]->code, 0, true);
            verr(v, "", "code", "duplicate");
        }
}

static void check_bundles(vctx *v, json_t *root, catalog *c)
{
    v->kind = "file";
    snprintf(v->who, sizeof v->who, "%s", "catalog");
    size_t n;
    json_t *arr = array(v, root, "", "bundles", FXB_CATALOG_BUNDLES_MAX, &n);
    if (arr == NULL)
        return;
    c->bundles = fxb_arena_calloc(v->a, n, sizeof *c->bundles);
    if (c->bundles == NULL) {
        v->oom = true;
        return;
    }
    static const char *const keys[] = {"code", "name", "description", "item_codes",
                                       "plain_summary"};
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        set_who(v, "bundle", "", i, false);
        if (!json_is_object(o)) {
            verr(v, "", "", "must be an object");
            continue;
        }
        json_t *cj = json_object_get(o, "code");
        const char *code = json_is_string(cj) ? json_string_value(cj) : "";
        bool ok = fxb_scope_item_code_valid(code) && strlen(code) == json_string_length(cj);
        set_who(v, "bundle", code, i, ok);
        if (!ok)
            verr(v, "", "code", "must be 1..%d of [A-Za-z0-9._-]", FXB_CATALOG_CODE_MAX);
        known_keys(v, o, "", keys, sizeof keys / sizeof keys[0]);
        Fxb__V1__Bundle *b = fxb_arena_alloc(v->a, sizeof *b);
        if (b == NULL) {
            v->oom = true;
            return;
        }
        fxb__v1__bundle__init(b);
        b->code = (char *)code;
        b->name = (char *)text(v, o, "", "name", 1, ITEM_NAME_MAX);
        b->description = (char *)text(v, o, "", "description", 0, TEXT_MAX);
        b->plain_summary = (char *)text(v, o, "", "plain_summary", 1, FXB_CATALOG_SUMMARY_MAX);
        size_t n_codes;
        json_t *codes = json_object_get(o, "item_codes");
        b->item_codes = strings(v, o, "", "item_codes", 0, fxb_scope_item_code_valid,
                                "must be an item code", &n_codes);
        b->n_item_codes = n_codes;
        if (json_is_array(codes) && (json_array_size(codes) < BUNDLE_ITEMS_MIN ||
                                     json_array_size(codes) > BUNDLE_ITEMS_MAX))
            verr(v, "", "item_codes", "must name %d..%d items", BUNDLE_ITEMS_MIN, BUNDLE_ITEMS_MAX);
        else if (codes == NULL)
            verr(v, "", "item_codes", "missing");
        b->departments = fxb_arena_calloc(v->a, n_codes ? n_codes : 1, sizeof *b->departments);
        if (b->departments == NULL) {
            v->oom = true;
            return;
        }
        for (size_t k = 0; k < n_codes; k++) {
            const item *it = find_item(c, b->item_codes[k]);
            if (it == NULL) {
                char field[PATH_MAX_LEN];
                snprintf(field, sizeof field, "item_codes[%zu]", k);
                verr(v, "", field, "\"%s\" is not an item of the file", b->item_codes[k]);
                continue;
            }
            bool seen = false;
            for (size_t j = 0; j < b->n_departments; j++)
                seen = seen || strcmp(b->departments[j], it->department) == 0;
            if (!seen && it->department[0] != '\0')
                b->departments[b->n_departments++] = (char *)it->department;
        }
        bool dup = false;
        for (size_t k = 0; ok && k < c->n_bundles && !dup; k++)
            dup = strcmp(c->bundles[k]->code, code) == 0;
        if (dup)
            verr(v, "", "code", "duplicate");
        else if (ok)
            c->bundles[c->n_bundles++] = b;
    }
}

/* --- writes -------------------------------------------------------------------- */

/* KEYS[1] a hash, KEYS[2] fxb:catalog:rev; ARGV field, value pairs. Sets
 * the fields that differ; moves the revision when one did. Returns the
 * number changed. */
static fxb_script merge_script =
    FXB_SCRIPT("catalog_merge", "local n = 0\n"
                                "for i = 1, #ARGV, 2 do\n"
                                "  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then\n"
                                "    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
                                "    n = n + 1\n"
                                "  end\n"
                                "end\n"
                                "if n > 0 then redis.call('INCR', KEYS[2]) end\n"
                                "return n\n");

/* KEYS[1] fxb:item:<code>, KEYS[2] fxb:item:<code>:guide:<new version>,
 * KEYS[3] fxb:items, KEYS[4] fxb:catalog:rev; ARGV[1] the version the
 * import compared against ("0": none), ARGV[2] the packed new guide ("":
 * unchanged), ARGV[3] the code, then field, value pairs of the item hash.
 * A guide version is never overwritten. Returns 1 when anything changed. */
static fxb_script item_script = FXB_SCRIPT(
    "catalog_item",
    "local cur = redis.call('HGET', KEYS[1], 'version') or '0'\n"
    "if cur ~= ARGV[1] then\n"
    "  return redis.error_reply('FXB 10 CATALOG_CHANGED the item changed during the import')\n"
    "end\n"
    "local changed = 0\n"
    "if ARGV[2] ~= '' then\n"
    "  if not redis.call('SET', KEYS[2], ARGV[2], 'NX') then\n"
    "    return redis.error_reply('FXB 9 GUIDE_VERSION_EXISTS a guide version is already "
    "stored under the next version number')\n"
    "  end\n"
    "  changed = 1\n"
    "end\n"
    "for i = 4, #ARGV, 2 do\n"
    "  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then\n"
    "    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
    "    changed = 1\n"
    "  end\n"
    "end\n"
    "if redis.call('ZADD', KEYS[3], 0, ARGV[3]) == 1 then changed = 1 end\n"
    "if changed == 1 then redis.call('INCR', KEYS[4]) end\n"
    "return changed\n");

/* KEYS[1] fxb:bundle:<code>, KEYS[2] fxb:bundles, KEYS[3] fxb:catalog:rev;
 * ARGV[1] the packed bundle, ARGV[2] the code. Returns 1 when changed. */
static fxb_script bundle_script = FXB_SCRIPT(
    "catalog_bundle", "local changed = 0\n"
                      "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
                      "  redis.call('SET', KEYS[1], ARGV[1])\n"
                      "  changed = 1\n"
                      "end\n"
                      "if redis.call('SADD', KEYS[2], ARGV[2]) == 1 then changed = 1 end\n"
                      "if changed == 1 then redis.call('INCR', KEYS[3]) end\n"
                      "return changed\n");

static uint8_t *pack(fxb_arena *a, const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = fxb_arena_alloc(a, *len ? *len : 1);
    if (buf != NULL)
        protobuf_c_message_pack(m, buf);
    return buf;
}

static fxb_code eval_int(fxb_store *s, fxb_script *sc, int nkeys, const char **keys, int nargs,
                         const char **args, const size_t *lens, long long *out, fxb_err *err)
{
    redisReply *r = fxb_store_eval(s, err, sc, nkeys, keys, nargs, args, lens);
    if (r == NULL)
        return err->code;
    bool ok = r->type == REDIS_REPLY_INTEGER;
    *out = ok ? r->integer : 0;
    freeReplyObject(r);
    if (!ok)
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "系统繁忙，请稍后重试",
                           "script %s answered in an unexpected shape", sc->name);
    return FXB_OK;
}

static fxb_code merge_hash(fxb_store *s, fxb_arena *a, const char *key, const dept *kv, size_t n,
                           bool *changed, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    const char **args = fxb_arena_calloc(a, 2 * n, sizeof *args);
    if (args == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                           "out of memory");
    for (size_t i = 0; i < n; i++) {
        args[2 * i] = kv[i].code;
        args[2 * i + 1] = kv[i].name;
    }
    const char *keys[] = {key, FXB_CATALOG_KEY_REV};
    long long k;
    fxb_code rc = eval_int(s, &merge_script, 2, keys, (int)(2 * n), args, NULL, &k, err);
    if (rc == FXB_OK && k > 0)
        *changed = true;
    return rc;
}

/* The current version of code (0: none) and, when there is one, whether
 * its stored guide equals new_packed (both with version and published_at
 * zeroed). */
static fxb_code compare_current(fxb_store *s, fxb_arena *a, const char *code,
                                const uint8_t *new_packed, size_t new_len, uint32_t *version,
                                bool *equal, fxb_err *err)
{
    *version = 0;
    *equal = false;
    redisReply *r =
        fxb_store_command(s, err, "HGET " FXB_CATALOG_KEY_ITEM_PREFIX "%s version", code);
    if (r == NULL)
        return err->code;
    if (r->type == REDIS_REPLY_STRING)
        *version = (uint32_t)strtoul(r->str, NULL, 10);
    freeReplyObject(r);
    if (*version == 0)
        return FXB_OK;
    r = fxb_store_command(s, err, "GET " FXB_CATALOG_KEY_ITEM_PREFIX "%s:guide:%u", code, *version);
    if (r == NULL)
        return err->code;
    if (r->type == REDIS_REPLY_STRING) {
        Fxb__V1__Guide *old =
            fxb__v1__guide__unpack(fxb_arena_allocator(a), (size_t)r->len, (const uint8_t *)r->str);
        if (old != NULL) {
            old->version = 0;
            old->published_at_ms = 0;
            size_t len;
            uint8_t *buf = pack(a, &old->base, &len);
            *equal = buf != NULL && len == new_len && memcmp(buf, new_packed, len) == 0;
        }
    }
    freeReplyObject(r);
    return FXB_OK;
}

static fxb_code write_item(fxb_store *s, fxb_arena *a, const item *it, int64_t now_ms,
                           fxb_catalog_import_stats *st, fxb_err *err)
{
    Fxb__V1__Guide *g = it->guide;
    g->version = 0;
    g->published_at_ms = 0;
    size_t len0;
    uint8_t *packed0 = pack(a, &g->base, &len0);
    if (packed0 == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                           "out of memory");
    uint32_t cur;
    bool equal;
    fxb_code rc = compare_current(s, a, it->code, packed0, len0, &cur, &equal, err);
    if (rc != FXB_OK)
        return rc;
    uint32_t version = equal ? cur : cur + 1;
    const uint8_t *packed = (const uint8_t *)"";
    size_t len = 0;
    if (!equal) {
        g->version = version;
        g->published_at_ms = now_ms;
        packed = pack(a, &g->base, &len);
        if (packed == NULL)
            return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                               "out of memory");
    }
    const char *item_key = fxb_arena_printf(a, FXB_CATALOG_KEY_ITEM_PREFIX "%s", it->code);
    const char *guide_key =
        fxb_arena_printf(a, FXB_CATALOG_KEY_ITEM_PREFIX "%s:guide:%u", it->code, version);
    char cur_txt[16], ver_txt[16], limit_txt[16], fee_txt[24];
    snprintf(cur_txt, sizeof cur_txt, "%u", cur);
    snprintf(ver_txt, sizeof ver_txt, "%u", version);
    snprintf(limit_txt, sizeof limit_txt, "%u", g->time_limit_working_days);
    snprintf(fee_txt, sizeof fee_txt, "%lld", (long long)g->fee_fen);
    const char *args[] = {cur_txt,
                          (const char *)packed,
                          it->code,
                          "name",
                          it->name,
                          "department",
                          it->department,
                          "department_name",
                          it->department_name,
                          "level",
                          fxb_catalog_level_name(it->level),
                          "category",
                          it->category,
                          "version",
                          ver_txt,
                          "immediate",
                          g->immediate ? "1" : "0",
                          "notify_commit_allowed",
                          g->notify_commit_allowed ? "1" : "0",
                          "tolerated_acceptance",
                          g->tolerated_acceptance ? "1" : "0",
                          "time_limit_working_days",
                          limit_txt,
                          "fee_fen",
                          fee_txt,
                          "plain_summary",
                          g->plain_summary};
    size_t nargs = sizeof args / sizeof args[0];
    size_t lens[sizeof args / sizeof args[0]];
    for (size_t i = 0; i < nargs; i++)
        lens[i] = i == 1 ? len : strlen(args[i]);
    if (item_key == NULL || guide_key == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                           "out of memory");
    const char *keys[] = {item_key, guide_key, FXB_CATALOG_KEY_ITEMS, FXB_CATALOG_KEY_REV};
    long long changed;
    rc = eval_int(s, &item_script, 4, keys, (int)nargs, args, lens, &changed, err);
    if (rc != FXB_OK) {
        char msg[FXB_ERR_MESSAGE_MAX];
        memcpy(msg, err->message, sizeof msg);
        snprintf(err->message, sizeof err->message, "item %s: %.400s", it->code, msg);
        return rc;
    }
    if (changed)
        st->changed = true;
    if (cur == 0)
        st->added++;
    else if (!equal)
        st->versioned++;
    else
        st->unchanged++;
    return FXB_OK;
}

static fxb_code write_bundle(fxb_store *s, fxb_arena *a, const Fxb__V1__Bundle *b,
                             fxb_catalog_import_stats *st, fxb_err *err)
{
    size_t len;
    uint8_t *packed = pack(a, &b->base, &len);
    const char *key = fxb_arena_printf(a, FXB_CATALOG_KEY_BUNDLE_PREFIX "%s", b->code);
    if (packed == NULL || key == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                           "out of memory");
    const char *keys[] = {key, FXB_CATALOG_KEY_BUNDLES, FXB_CATALOG_KEY_REV};
    const char *args[] = {(const char *)packed, b->code};
    size_t lens[] = {len, strlen(b->code)};
    long long changed;
    fxb_code rc = eval_int(s, &bundle_script, 3, keys, 2, args, lens, &changed, err);
    if (rc == FXB_OK && changed)
        st->changed = true;
    return rc;
}

/* Items in the store that the file does not name: kept, and listed. */
static fxb_code list_kept(fxb_store *s, const catalog *c, FILE *out, fxb_catalog_import_stats *st,
                          fxb_err *err)
{
    redisReply *r = fxb_store_command(s, err, "ZRANGE " FXB_CATALOG_KEY_ITEMS " 0 -1");
    if (r == NULL)
        return err->code;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || find_item(c, e->str) != NULL)
            continue;
        st->kept++;
        if (out != NULL)
            fprintf(out, "item %s: kept, not in file\n", e->str);
    }
    freeReplyObject(r);
    return FXB_OK;
}

static fxb_code write_all(fxb_store *s, fxb_arena *a, const catalog *c, int64_t now_ms, FILE *out,
                          fxb_catalog_import_stats *st, fxb_err *err)
{
    fxb_code rc =
        merge_hash(s, a, FXB_CATALOG_KEY_CATEGORIES, c->cats, c->n_cats, &st->changed, err);
    if (rc == FXB_OK)
        rc = merge_hash(s, a, FXB_CATALOG_KEY_DEPARTMENTS, c->depts, c->n_depts, &st->changed, err);
    fxb_arena scratch;
    fxb_arena_init(&scratch, 0);
    for (size_t i = 0; rc == FXB_OK && i < c->n_items; i++) {
        rc = write_item(s, &scratch, c->by_code[i], now_ms, st, err);
        fxb_arena_reset(&scratch);
    }
    for (size_t i = 0; rc == FXB_OK && i < c->n_bundles; i++) {
        rc = write_bundle(s, &scratch, c->bundles[i], st, err);
        fxb_arena_reset(&scratch);
    }
    fxb_arena_free(&scratch);
    if (rc == FXB_OK)
        rc = list_kept(s, c, out, st, err);
    return rc;
}

fxb_code fxb_catalog_import(fxb_store *s, const char *json, size_t len, int64_t now_ms, FILE *out,
                            FILE *errs, fxb_catalog_import_stats *st, fxb_err *err)
{
    memset(st, 0, sizeof *st);
    if (len > FXB_CATALOG_FILE_MAX)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "CATALOG_INVALID", "目录文件过大",
                           "the catalogue file is larger than %u bytes", FXB_CATALOG_FILE_MAX);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        st->errors = 1;
        if (errs != NULL) {
            if (root == NULL)
                fprintf(errs, "file catalog: json: line %d column %d: %s\n", jerr.line, jerr.column,
                        jerr.text);
            else
                fprintf(errs, "file catalog: json: must be an object\n");
        }
        json_decref(root);
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "CATALOG_INVALID", "目录文件有误",
                           "the catalogue file is not a JSON object");
    }
    fxb_arena a;
    fxb_arena_init(&a, IMPORT_ARENA_LIMIT);
    vctx v = {.errs = errs, .a = &a};
    catalog c = {0};
    check_categories(&v, root, &c);
    check_departments(&v, root, &c);
    check_items(&v, root, &c);
    check_bundles(&v, root, &c);
    st->errors = v.errors;
    fxb_code rc = FXB_OK;
    if (v.oom)
        rc = fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                         "out of memory checking the catalogue");
    else if (v.errors > 0)
        rc = fxb_err_set(err, FXB_INVALID_ARGUMENT, "CATALOG_INVALID", "目录文件有误",
                         "the catalogue file has %zu errors; nothing was imported", v.errors);
    if (rc == FXB_OK) {
        st->items = c.n_items;
        st->bundles = c.n_bundles;
        st->departments = c.n_depts;
        rc = write_all(s, &a, &c, now_ms, out, st, err);
    }
    if (rc == FXB_OK && out != NULL)
        fprintf(out,
                "catalog: %zu items (%zu new, %zu new guide versions, %zu unchanged), %zu "
                "bundles, %zu departments\n",
                st->items, st->added, st->versioned, st->unchanged, st->bundles, st->departments);
    fxb_arena_free(&a);
    json_decref(root);
    return rc;
}
