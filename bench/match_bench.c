/* fxb-bench-match: the city-scale matching benchmark of zero-application
 * benefits (issue 7). See bench/README.md and bench/match_run.sh.
 *
 *   fxb-bench-match gen --persons N --enterprises M [--seed S] [--today D] --out DIR
 *       writes DIR/persons.csv and DIR/enterprises.csv (PostgreSQL COPY ...
 *       CSV: an empty unquoted field is NULL) from the generator.
 *   fxb-bench-match run --persons N --enterprises M [--seed S] [--today D]
 *                       [--rule NAME:person|enterprise:TEXT]... [--best N]
 *                       [--median N] [--policies N] [--changes N] [--serve]
 *       builds the matching index (services/benefit/index.h) in memory from
 *       the same generator and seed, then measures every rule (match + the
 *       list of subject ids) and the single-change re-evaluation against
 *       random policies. With --serve it reads commands on stdin instead
 *       ("match NAME", "change", "quit") and answers one line each, so that
 *       the script can pair its rounds with PostgreSQL's.
 *
 * Every output line the script reads starts with an upper-case word
 * (BUILD, MATCH, CHANGE, ...) followed by key=value fields.
 *
 * Rows are generated independently of each other: row r's values come from
 * a xorshift64* stream seeded with splitmix64(seed, r), so both sides see
 * identical data whatever order they read it in. Subjects: "p" / "e" + the
 * row number as 24 hex digits (no real data), so ascending rows are
 * ascending subjects and the matched lists can be compared by MD5 with
 * PostgreSQL's string_agg(... ORDER BY subject) under the C collation. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include "services/benefit/index.h"
#include "services/benefit/rule.h"
#include "services/benefit/schema.h"
#include "store/datafile.h"

#define SUBJECT_LEN 25
#define MAX_RULES   32
#define MAX_CERTS   10

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fxb-bench-match: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* --- random numbers ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

typedef struct rng {
    uint64_t s;
} rng;

static rng rng_for(uint64_t seed, uint64_t stream, uint64_t row)
{
    rng r = {splitmix64(splitmix64(seed ^ (stream << 56)) ^ row)};
    if (r.s == 0)
        r.s = 0x2545f4914f6cdd1dULL;
    return r;
}

static uint64_t next(rng *r) /* xorshift64* */
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dULL;
}

static double unif(rng *r) /* [0, 1) */
{
    return (double)(next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static bool chance(rng *r, double p)
{
    return unif(r) < p;
}

static uint32_t below(rng *r, uint32_t n)
{
    return (uint32_t)(((next(r) >> 32) * (uint64_t)n) >> 32);
}

/* index drawn from cumulative weights */
static int pick(rng *r, const double *cum, int n)
{
    double u = unif(r) * cum[n - 1];
    for (int i = 0; i < n; i++)
        if (u < cum[i])
            return i;
    return n - 1;
}

static void cumulate(double *w, int n)
{
    for (int i = 1; i < n; i++)
        w[i] += w[i - 1];
}

/* --- dates (proleptic Gregorian, days since 1970-01-01) ------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static uint32_t civil_from_days(int64_t z)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    return (uint32_t)(y * 10000 + m * 100 + d);
}

static int64_t ymd_days(uint32_t ymd)
{
    return days_from_civil(ymd / 10000, ymd / 100 % 100, ymd % 100);
}

/* --- the generator -----------------------------------------------------------------------------
 */

static const char *const DISTRICTS[] = {"红旗区", "卫滨区", "凤泉区",     "牧野区", "新乡县",
                                        "获嘉县", "原阳县", "延津县",     "封丘县", "卫辉市",
                                        "辉县市", "长垣市", "平原示范区", "高新区", "经开区"};
#define N_DISTRICTS 15
/* registered population, thousands (rounded, 2020-census order of magnitude) */
static double district_cum[N_DISTRICTS] = {520, 250, 160, 330, 330, 380, 560, 430,
                                           640, 420, 740, 880, 150, 120, 90};
/* share of urban household registration per district */
static const double URBAN[N_DISTRICTS] = {0.88, 0.86, 0.62, 0.84, 0.30, 0.28, 0.24, 0.25,
                                          0.22, 0.42, 0.40, 0.45, 0.50, 0.80, 0.75};
/* enterprises per district (relative) */
static double ent_district_cum[N_DISTRICTS] = {160, 90, 40, 80,  60, 50, 60, 45,
                                               50,  55, 80, 110, 30, 70, 50};

static const char *const EMPLOYMENT[] = {"employed", "unemployed", "retired", "student", "other"};
enum { EMP_EMPLOYED, EMP_UNEMPLOYED, EMP_RETIRED, EMP_STUDENT, EMP_OTHER };
static const char *const HOUSEHOLD[] = {"urban", "rural"};

/* population pyramid: share (%) of each 5-year band 0-4 ... 95-99, and 100 */
static const double PYRAMID[21] = {4.6, 6.2, 6.6, 5.9, 5.0, 5.8, 8.1, 7.0, 6.4,  7.6,  8.4,
                                   7.1, 5.3, 5.4, 4.0, 2.5, 1.6, 0.8, 0.3, 0.07, 0.005};
static double age_cum[101];

static const char *const INDUSTRY[] = {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J",
                                       "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T"};
static double industry_cum[20] = {4,   0.5, 14, 0.6, 0.6, 7,   38, 3, 4, 0.5,
                                  0.8, 3,   6,  1.5, 7,   1.5, 1,  2, 5, 0.1};
static const char *const SIZES[] = {"micro", "small", "medium", "large"};
static double size_cum[4] = {82, 14, 3.4, 0.6};
static const char *const TAX[] = {"A", "B", "M", "C", "D"};
static double tax_cum[5] = {14, 48, 28, 7, 3};
static const char *const CERTS[MAX_CERTS] = {
    "ISO9001", "ISO14001", "科技型中小企业", "专精特新", "守合同重信用",
    "AAA信用", "绿色工厂", "瞪羚企业",       "小巨人",   "知识产权优势企业"};
static const double CERT_P[MAX_CERTS] = {0.12, 0.05, 0.05,  0.02,  0.04,
                                         0.03, 0.01, 0.005, 0.003, 0.008};

typedef struct person {
    uint32_t birth; /* yyyymmdd, 0 = unknown */
    int8_t district, disability, low_income, pension, employment, children, veteran,
        household; /* -1 = unknown; enums as our table's index */
} person;

typedef struct enterprise {
    int8_t industry, size, district, tax, high_tech;
    int32_t employees;    /* -1 unknown */
    uint32_t established; /* 0 unknown */
    int8_t n_certs;       /* -1 unknown (the set is not given) */
    uint8_t certs[MAX_CERTS];
} enterprise;

static void gen_init(void)
{
    for (int a = 0; a <= 100; a++)
        age_cum[a] = a == 100 ? PYRAMID[20] : PYRAMID[a / 5] / 5.0;
    cumulate(age_cum, 101);
    cumulate(district_cum, N_DISTRICTS);
    cumulate(ent_district_cum, N_DISTRICTS);
    cumulate(industry_cum, 20);
    cumulate(size_cum, 4);
    cumulate(tax_cum, 5);
}

/* a birth date at which one is exactly `age` on today */
static uint32_t birth_for_age(rng *r, int age, uint32_t today)
{
    uint32_t ty = today / 10000, md = today % 10000;
    int64_t hi = days_from_civil((int64_t)ty - age, md / 100, md % 100); /* birthday today */
    int64_t lo =
        days_from_civil((int64_t)ty - age - 1, md / 100, md % 100) + 1; /* turns age+1 tomorrow */
    return civil_from_days(lo + (int64_t)below(r, (uint32_t)(hi - lo + 1)));
}

static int8_t maybe(rng *r, double p_missing, int v)
{
    return chance(r, p_missing) ? -1 : (int8_t)v;
}

static void gen_person(uint64_t seed, uint64_t row, uint32_t today, person *p)
{
    rng r = rng_for(seed, 1, row);
    int age = pick(&r, age_cum, 101);
    bool male = next(&r) & 1;
    p->birth = chance(&r, 0.003) ? 0 : birth_for_age(&r, age, today);
    int d = pick(&r, district_cum, N_DISTRICTS);
    p->district = maybe(&r, 0.002, d);
    bool urban = chance(&r, URBAN[d]);
    p->household = maybe(&r, 0.01, urban ? 0 : 1);
    int dis = 0;
    if (chance(&r, 0.015 + 0.0018 * age)) {
        static const double lv[4] = {0.12, 0.22, 0.46, 1.0}; /* levels 1..4, cumulative */
        dis = 1 + pick(&r, lv, 4);
    }
    p->disability = maybe(&r, 0.03, dis);
    double li = 0.02 * (urban ? 0.55 : 1.45) * (dis >= 1 ? 3.5 : 1) * (age >= 70 ? 1.8 : 1);
    p->low_income = maybe(&r, 0.05, chance(&r, li));
    double pe = age >= 60 ? 0.88 : age >= 50 ? 0.22 : 0.003;
    p->pension = maybe(&r, 0.04, chance(&r, pe));
    int emp;
    if (age < 6) {
        emp = EMP_OTHER;
    } else if (age < 16) {
        emp = chance(&r, 0.97) ? EMP_STUDENT : EMP_OTHER;
    } else if (age < 23) {
        static const double w[5] = {0.30, 0.35, 0.35, 0.90,
                                    1.0}; /* cum: emp, unemp, -, stud, other */
        emp = pick(&r, w, 5);
    } else if (age < 60) {
        static const double w[5] = {0.72, 0.78, 0.82, 0.83, 1.0};
        emp = pick(&r, w, 5);
        if (emp == EMP_RETIRED && age < 50)
            emp = EMP_OTHER;
    } else {
        static const double w[5] = {0.06, 0.07, 0.72, 0.72, 1.0};
        emp = pick(&r, w, 5);
    }
    p->employment = maybe(&r, 0.06, emp);
    int ch = 0;
    if (age >= 20) {
        static const double w20[5] = {0.50, 0.85, 0.98, 1.0, 1.0};
        static const double w30[5] = {0.10, 0.50, 0.88, 0.97, 1.0};
        static const double w50[5] = {0.05, 0.35, 0.75, 0.92, 1.0};
        ch = pick(&r, age < 30 ? w20 : age < 50 ? w30 : w50, 5);
    }
    p->children = maybe(&r, 0.08, ch);
    p->veteran = maybe(&r, 0.10, age >= 18 && chance(&r, male ? 0.02 : 0.001));
}

static void gen_enterprise(uint64_t seed, uint64_t row, uint32_t today, enterprise *e)
{
    rng r = rng_for(seed, 2, row);
    int ind = pick(&r, industry_cum, 20);
    e->industry = maybe(&r, 0.01, ind);
    int size = pick(&r, size_cum, 4);
    e->size = maybe(&r, 0.02, size);
    e->district = maybe(&r, 0.005, pick(&r, ent_district_cum, N_DISTRICTS));
    static const int lo[4] = {0, 10, 100, 1000}, span[4] = {10, 90, 900, 9000};
    e->employees = chance(&r, 0.05) ? -1 : lo[size] + (int32_t)below(&r, (uint32_t)span[size]);
    e->tax = maybe(&r, 0.10, pick(&r, tax_cum, 5));
    bool tech_ind = ind == 2 || ind == 8 || ind == 12; /* C, I, M */
    e->high_tech = maybe(&r, 0.02, chance(&r, tech_ind ? 0.09 : 0.008));
    /* established: skewed to recent years, 1980 .. today */
    int64_t t = ymd_days(today), first = ymd_days(19800101);
    double u = unif(&r);
    e->established =
        chance(&r, 0.01) ? 0 : civil_from_days(t - (int64_t)((double)(t - first) * u * u));
    if (chance(&r, 0.25)) {
        e->n_certs = -1;
    } else {
        e->n_certs = 0;
        for (int i = 0; i < MAX_CERTS; i++) {
            double p =
                CERT_P[i] * (tech_ind && i >= 2 && i != 4 && i != 5 ? 3 : 1) * (size >= 2 ? 3 : 1);
            if (chance(&r, p))
                e->certs[e->n_certs++] = (uint8_t)i;
        }
    }
}

static void subject_of(char kind, uint64_t row, char out[SUBJECT_LEN + 1])
{
    snprintf(out, SUBJECT_LEN + 1, "%c%024" PRIx64, kind, row);
}

/* --- CSV for PostgreSQL --------------------------------------------------------------------- */

static void put_date(FILE *f, uint32_t d)
{
    if (d)
        fprintf(f, "%04u-%02u-%02u", d / 10000, d / 100 % 100, d % 100);
}

static void put_enum(FILE *f, const char *const *names, int v)
{
    if (v >= 0)
        fputs(names[v], f);
}

static void put_bool(FILE *f, int v)
{
    if (v >= 0)
        fputc(v ? 't' : 'f', f);
}

static void put_int(FILE *f, int64_t v)
{
    if (v >= 0)
        fprintf(f, "%" PRId64, v);
}

static FILE *open_out(const char *dir, const char *name, char **buf)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    *buf = malloc(1 << 22);
    if (*buf)
        setvbuf(f, *buf, _IOFBF, 1 << 22);
    return f;
}

static void close_out(FILE *f, char *buf, const char *name)
{
    if (ferror(f) || fclose(f) != 0)
        die("writing %s failed", name);
    free(buf);
}

static int cmd_gen(uint64_t seed, uint32_t today, uint64_t n_persons, uint64_t n_ent,
                   const char *dir)
{
    if (dir == NULL)
        die("gen needs --out DIR");
    mkdir(dir, 0755);
    double t0 = now_ms();
    char *buf;
    char subj[SUBJECT_LEN + 1];
    FILE *f = open_out(dir, "persons.csv", &buf);
    for (uint64_t row = 0; row < n_persons; row++) {
        person p;
        gen_person(seed, row, today, &p);
        subject_of('p', row, subj);
        fputs(subj, f);
        fputc(',', f);
        put_date(f, p.birth);
        fputc(',', f);
        put_enum(f, DISTRICTS, p.district);
        fputc(',', f);
        put_int(f, p.disability);
        fputc(',', f);
        put_bool(f, p.low_income);
        fputc(',', f);
        put_bool(f, p.pension);
        fputc(',', f);
        put_enum(f, EMPLOYMENT, p.employment);
        fputc(',', f);
        put_int(f, p.children);
        fputc(',', f);
        put_bool(f, p.veteran);
        fputc(',', f);
        put_enum(f, HOUSEHOLD, p.household);
        fputc('\n', f);
    }
    close_out(f, buf, "persons.csv");
    f = open_out(dir, "enterprises.csv", &buf);
    for (uint64_t row = 0; row < n_ent; row++) {
        enterprise e;
        gen_enterprise(seed, row, today, &e);
        subject_of('e', row, subj);
        fputs(subj, f);
        fputc(',', f);
        put_enum(f, INDUSTRY, e.industry);
        fputc(',', f);
        put_enum(f, SIZES, e.size);
        fputc(',', f);
        put_enum(f, DISTRICTS, e.district);
        fputc(',', f);
        put_int(f, e.employees);
        fputc(',', f);
        put_enum(f, TAX, e.tax);
        fputc(',', f);
        put_bool(f, e.high_tech);
        fputc(',', f);
        put_date(f, e.established);
        fputc(',', f);
        if (e.n_certs >= 0) {
            fputs("\"{", f);
            for (int i = 0; i < e.n_certs; i++)
                fprintf(f, "%s%s", i ? "," : "", CERTS[e.certs[i]]);
            fputs("}\"", f);
        }
        fputc('\n', f);
    }
    close_out(f, buf, "enterprises.csv");
    printf("GEN persons=%" PRIu64 " enterprises=%" PRIu64 " seed=%" PRIu64 " today=%u ms=%.0f\n",
           n_persons, n_ent, seed, today, now_ms() - t0);
    return 0;
}

/* --- the schema and profile views --------------------------------------------------------- */

typedef struct attrs {
    /* person */
    const fxb_attr *birth, *district, *disability, *low_income, *pension, *employment, *children,
        *veteran, *household, *age;
    /* enterprise */
    const fxb_attr *industry, *size, *edistrict, *employees, *tax, *high_tech, *established, *certs;
    /* our table index -> the schema's enum index */
    int district_ix[N_DISTRICTS], employment_ix[5], household_ix[2], industry_ix[20], size_ix[4],
        tax_ix[5], edistrict_ix[N_DISTRICTS];
} attrs;

static const fxb_schema *g_schema;
static attrs A;

static const fxb_attr *need(fxb_subject_type t, const char *name, fxb_attr_type type)
{
    const fxb_attr *a = fxb_schema_find(g_schema, t, name);
    if (a == NULL || a->type != type)
        die("the schema lacks %s attribute %s of the expected type",
            t == FXB_SUBJECT_PERSON ? "person" : "enterprise", name);
    return a;
}

static void map_enum(const fxb_attr *a, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if ((out[i] = fxb_schema_enum_index(a, names[i])) < 0)
            die("enum %s lacks the value %s", a->name, names[i]);
}

static void load_schema(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (path != NULL) {
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            die("%s: %s", path, strerror(errno));
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        text = malloc((size_t)n + 1);
        if (text == NULL || fread(text, 1, (size_t)n, f) != (size_t)n)
            die("reading %s failed", path);
        text[n] = 0;
        len = (size_t)n;
        fclose(f);
    } else {
        const fxb_datafile *df = fxb_datafile_find("benefit/schema.json");
        if (df == NULL)
            die("no embedded benefit/schema.json");
        text = strdup(df->bytes);
        len = df->len;
    }
    static char errs[4096];
    fxb_err err;
    fxb_schema *s = NULL;
    if (fxb_schema_parse(text, len, &s, errs, sizeof errs, &err) != FXB_OK)
        die("schema: %s", errs);
    free(text);
    g_schema = s;
    fxb_subject_type P = FXB_SUBJECT_PERSON, E = FXB_SUBJECT_ENTERPRISE;
    A.birth = need(P, "birth_date", FXB_ATTR_DATE);
    A.district = need(P, "district", FXB_ATTR_ENUM);
    A.disability = need(P, "disability_level", FXB_ATTR_INT);
    A.low_income = need(P, "low_income", FXB_ATTR_BOOL);
    A.pension = need(P, "receives_pension", FXB_ATTR_BOOL);
    A.employment = need(P, "employment", FXB_ATTR_ENUM);
    A.children = need(P, "children", FXB_ATTR_INT);
    A.veteran = need(P, "veteran", FXB_ATTR_BOOL);
    A.household = need(P, "household_type", FXB_ATTR_ENUM);
    A.age = fxb_schema_find(g_schema, P, "age");
    A.industry = need(E, "industry_code", FXB_ATTR_ENUM);
    A.size = need(E, "size_class", FXB_ATTR_ENUM);
    A.edistrict = need(E, "district", FXB_ATTR_ENUM);
    A.employees = need(E, "employees", FXB_ATTR_INT);
    A.tax = need(E, "tax_credit_rating", FXB_ATTR_ENUM);
    A.high_tech = need(E, "high_tech", FXB_ATTR_BOOL);
    A.established = need(E, "established_date", FXB_ATTR_DATE);
    A.certs = need(E, "certifications", FXB_ATTR_SET);
    map_enum(A.district, DISTRICTS, N_DISTRICTS, A.district_ix);
    map_enum(A.employment, EMPLOYMENT, 5, A.employment_ix);
    map_enum(A.household, HOUSEHOLD, 2, A.household_ix);
    map_enum(A.industry, INDUSTRY, 20, A.industry_ix);
    map_enum(A.size, SIZES, 4, A.size_ix);
    map_enum(A.tax, TAX, 5, A.tax_ix);
    map_enum(A.edistrict, DISTRICTS, N_DISTRICTS, A.edistrict_ix);
}

/* One subject's values in the schema's form: slot i is g_schema->attrs[i]. */
typedef struct values {
    fxb_profile_value v[FXB_ATTR_MAX];
    const char *members[MAX_CERTS];
    /* the compact list fxb_index_set takes (present values only) */
    const fxb_attr *ia[FXB_ATTR_MAX];
    fxb_profile_value iv[FXB_ATTR_MAX];
    size_t n;
} values;

static size_t slot(const fxb_attr *a)
{
    return (size_t)(a - g_schema->attrs);
}

static void put(values *x, const fxb_attr *a, bool present, int64_t i)
{
    fxb_profile_value *v = &x->v[slot(a)];
    v->present = present;
    v->i = i;
    v->members = NULL;
    v->n_members = 0;
}

static void compact(values *x, fxb_subject_type t)
{
    x->n = 0;
    for (size_t i = 0; i < g_schema->n_attrs; i++) {
        const fxb_attr *a = &g_schema->attrs[i];
        if (a->subject != t || a->derived || !x->v[i].present)
            continue;
        x->ia[x->n] = a;
        x->iv[x->n++] = x->v[i];
    }
}

static void person_values(const person *p, values *x)
{
    put(x, A.birth, p->birth != 0, p->birth);
    put(x, A.district, p->district >= 0, p->district >= 0 ? A.district_ix[p->district] : 0);
    put(x, A.disability, p->disability >= 0, p->disability);
    put(x, A.low_income, p->low_income >= 0, p->low_income);
    put(x, A.pension, p->pension >= 0, p->pension);
    put(x, A.employment, p->employment >= 0,
        p->employment >= 0 ? A.employment_ix[p->employment] : 0);
    put(x, A.children, p->children >= 0, p->children);
    put(x, A.veteran, p->veteran >= 0, p->veteran);
    put(x, A.household, p->household >= 0, p->household >= 0 ? A.household_ix[p->household] : 0);
    compact(x, FXB_SUBJECT_PERSON);
}

static void enterprise_values(const enterprise *e, values *x)
{
    put(x, A.industry, e->industry >= 0, e->industry >= 0 ? A.industry_ix[e->industry] : 0);
    put(x, A.size, e->size >= 0, e->size >= 0 ? A.size_ix[e->size] : 0);
    put(x, A.edistrict, e->district >= 0, e->district >= 0 ? A.edistrict_ix[e->district] : 0);
    put(x, A.employees, e->employees >= 0, e->employees);
    put(x, A.tax, e->tax >= 0, e->tax >= 0 ? A.tax_ix[e->tax] : 0);
    put(x, A.high_tech, e->high_tech >= 0, e->high_tech);
    put(x, A.established, e->established != 0, e->established);
    put(x, A.certs, e->n_certs >= 0, 0);
    if (e->n_certs >= 0) {
        for (int i = 0; i < e->n_certs; i++)
            x->members[i] = CERTS[e->certs[i]];
        fxb_profile_value *v = &x->v[slot(A.certs)];
        v->members = e->n_certs ? x->members : NULL;
        v->n_members = (size_t)e->n_certs;
    }
    compact(x, FXB_SUBJECT_ENTERPRISE);
}

static void view_get(void *self, const fxb_attr *attr, fxb_profile_value *out)
{
    *out = ((const values *)self)->v[slot(attr)];
}

/* --- building the indexes ------------------------------------------------------------------- */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static fxb_index *build(fxb_subject_type t, uint64_t seed, uint32_t today, uint64_t n)
{
    fxb_index *ix = fxb_index_new(g_schema, t);
    if (ix == NULL)
        die("fxb_index_new failed");
    long rss0 = rss_kib();
    double t0 = now_ms(), gen_ms = 0;
    values x;
    memset(&x, 0, sizeof x);
    char subj[SUBJECT_LEN + 1];
    for (uint64_t row = 0; row < n; row++) {
        double g0 = now_ms();
        if (t == FXB_SUBJECT_PERSON) {
            person p;
            gen_person(seed, row, today, &p);
            person_values(&p, &x);
            subject_of('p', row, subj);
        } else {
            enterprise e;
            gen_enterprise(seed, row, today, &e);
            enterprise_values(&e, &x);
            subject_of('e', row, subj);
        }
        if ((row & 63) == 0) /* sample the generator's share without timing every row */
            gen_ms += (now_ms() - g0) * 64;
        fxb_index_values iv = {x.ia, x.iv, x.n};
        int64_t got = fxb_index_set(ix, subj, &iv);
        if (got != (int64_t)row)
            die("fxb_index_set(%s) returned %" PRId64 ", expected row %" PRIu64, subj, got, row);
    }
    double ms = now_ms() - t0;
    /* compacted after the bulk load, as the engine does */
    double o0 = now_ms();
    fxb_index_optimize(ix);
    double optimize_ms = now_ms() - o0;
    fxb_index_stats st;
    fxb_index_stats_get(ix, &st);
    printf(
        "BUILD subject=%s rows=%" PRIu64 " ms=%.0f gen_ms=%.0f optimize_ms=%.0f subjects=%" PRIu64
        " bitmaps=%" PRIu64 " bitmap_bytes=%" PRIu64 " row_bytes=%" PRIu64 " subject_bytes=%" PRIu64
        " rss_delta_kib=%ld\n",
        t == FXB_SUBJECT_PERSON ? "person" : "enterprise", n, ms, gen_ms, optimize_ms, st.subjects,
        st.bitmaps, st.bytes, fxb_index_row_bytes(ix), st.subject_bytes, rss_kib() - rss0);
    fflush(stdout);
    return ix;
}

/* --- matching --------------------------------------------------------------------------------- */

typedef struct rule_def {
    char name[32];
    fxb_subject_type type;
    const char *text;
    fxb_rule *rule;
} rule_def;

static const char *const DEFAULT_RULES[] = {
    "R1:person:age >= 80 && district in {\"红旗区\", \"卫滨区\"} && !receives_pension",
    "R2:person:low_income && disability_level >= 2 && household_type == \"rural\" && age < 60",
    "R3:person:children >= 2 && age >= 25 && age <= 45 && employment == \"unemployed\" && "
    "district == \"获嘉县\"",
    "R4:person:age >= 60 && receives_pension && district != \"红旗区\"",
    "E1:enterprise:size_class in {\"micro\", \"small\"} && industry_code in {\"C\", \"I\", \"M\"} "
    "&& established_date >= \"2020-01-01\" && tax_credit_rating in {\"A\", \"B\"} && "
    "certifications contains \"科技型中小企业\"",
};

static void parse_rule(const char *spec, rule_def *d)
{
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL || c1 == spec || (size_t)(c1 - spec) >= sizeof d->name)
        die("--rule wants NAME:person|enterprise:TEXT (got %s)", spec);
    memcpy(d->name, spec, (size_t)(c1 - spec));
    d->name[c1 - spec] = 0;
    if (c2 - c1 - 1 == 6 && memcmp(c1 + 1, "person", 6) == 0)
        d->type = FXB_SUBJECT_PERSON;
    else if (c2 - c1 - 1 == 10 && memcmp(c1 + 1, "enterprise", 10) == 0)
        d->type = FXB_SUBJECT_ENTERPRISE;
    else
        die("--rule %s: the subject type is person or enterprise", d->name);
    d->text = c2 + 1;
    fxb_rule_error where;
    fxb_err err;
    if (fxb_rule_compile(g_schema, d->type, d->text, &d->rule, &where, &err) != FXB_OK)
        die("rule %s: line %u col %u at '%s': %s", d->name, where.line, where.col, where.token,
            where.message);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *g_list;
static size_t g_list_cap;
static double g_bitmap_ms; /* the fxb_index_match part of the last match_once */

/* one timed match: the bitmap, then the list of subjects into g_list */
static double match_once(const fxb_index *ix, const rule_def *d, uint32_t today, uint64_t *count,
                         size_t *list_len)
{
    double t0 = now_ms();
    void *rows = fxb_index_match(ix, d->rule, today);
    if (rows == NULL)
        die("fxb_index_match(%s) failed", d->name);
    g_bitmap_ms = now_ms() - t0;
    uint64_t n = fxb_index_rows_count(rows);
    if ((n + 1) * (SUBJECT_LEN + 1) > g_list_cap) { /* only on the untimed warm-up */
        free(g_list);
        g_list_cap = (n + 1) * (SUBJECT_LEN + 1) * 2;
        if ((g_list = malloc(g_list_cap)) == NULL)
            die("out of memory");
    }
    size_t len = fxb_index_rows_subjects(ix, rows, g_list, g_list_cap);
    fxb_index_rows_free(rows);
    double ms = now_ms() - t0;
    if (len == 0 && n > 0)
        die("the list of %s did not fit", d->name);
    *count = n;
    *list_len = len;
    return ms;
}

static void md5_hex(const char *p, size_t n, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_md5(), NULL))
        die("EVP_Digest failed");
    for (unsigned i = 0; i < len && i < 16; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[32] = 0;
}

static uint64_t g_seed, g_rows[2];

/* The rule evaluated row by row with fxb_rule_eval over regenerated
 * profiles: the count the index must give (untimed; computed once). */
static uint64_t eval_count(const rule_def *d, uint32_t today)
{
    static uint64_t cache[MAX_RULES];
    static const rule_def *done[MAX_RULES];
    for (int i = 0; i < MAX_RULES && done[i] != NULL; i++)
        if (done[i] == d)
            return cache[i];
    values x;
    memset(&x, 0, sizeof x);
    fxb_profile_view view = {view_get, &x};
    uint64_t n = 0;
    for (uint64_t row = 0; row < g_rows[d->type]; row++) {
        if (d->type == FXB_SUBJECT_PERSON) {
            person p;
            gen_person(g_seed, row, today, &p);
            person_values(&p, &x);
        } else {
            enterprise e;
            gen_enterprise(g_seed, row, today, &e);
            enterprise_values(&e, &x);
        }
        n += fxb_rule_eval(d->rule, &view, today, NULL) == FXB_TRUE;
    }
    for (int i = 0; i < MAX_RULES; i++)
        if (done[i] == NULL) {
            done[i] = d;
            cache[i] = n;
            break;
        }
    return n;
}

static void do_match(const fxb_index *ix, const rule_def *d, uint32_t today, int best_of,
                     int median_of)
{
    if (ix == NULL)
        die("rule %s: no index for its subject type (count 0)", d->name);
    uint64_t scan = eval_count(d, today);
    uint64_t count = 0;
    size_t len = 0;
    /* the first match of a fresh process pays for page faults (and glibc's
     * mmap threshold adapting to big bitmaps): reported as first_ms, then
     * two more untimed warm-ups */
    double warm = match_once(ix, d, today, &count, &len); /* also sizes the buffer */
    for (int i = 0; i < 2; i++)
        match_once(ix, d, today, &count, &len);
    char md5[33];
    md5_hex(g_list, len, md5);
    double best = 1e300;
    for (int i = 0; i < best_of; i++) {
        double ms = match_once(ix, d, today, &count, &len);
        if (ms < best)
            best = ms;
    }
    double *m = calloc((size_t)median_of, sizeof *m);
    if (m == NULL)
        die("out of memory");
    double *bm = calloc((size_t)median_of, sizeof *bm);
    if (bm == NULL)
        die("out of memory");
    for (int i = 0; i < median_of; i++) {
        m[i] = match_once(ix, d, today, &count, &len);
        bm[i] = g_bitmap_ms;
    }
    qsort(m, (size_t)median_of, sizeof *m, cmp_double);
    qsort(bm, (size_t)median_of, sizeof *bm, cmp_double);
#define MEDIAN(a) (median_of % 2 ? a[median_of / 2] : (a[median_of / 2 - 1] + a[median_of / 2]) / 2)
    double med = MEDIAN(m), bmed = MEDIAN(bm);
#undef MEDIAN
    printf("MATCH name=%s count=%" PRIu64 " md5=%s best_ms=%.3f median_ms=%.3f min_ms=%.3f "
           "max_ms=%.3f first_ms=%.3f bitmap_median_ms=%.3f conditions=%zu eval_count=%" PRIu64
           "\n",
           d->name, count, md5, best, med, m[0], m[median_of - 1], warm, bmed,
           fxb_rule_conditions(d->rule), scan);
    fflush(stdout);
    free(m);
    free(bm);
}

/* --- one profile change against many policies ----------------------------------------------- */

/* a random condition over the person schema, written in the rule language */
static int random_condition(rng *r, char *out, size_t cap, unsigned *used)
{
    static const char *const ops[] = {">=", ">", "<", "<=", "==", "!="};
    for (;;) {
        unsigned k = below(r, 10);
        if (*used & (1u << k))
            continue;
        *used |= 1u << k;
        switch (k) {
        case 0: /* age */
            return snprintf(out, cap, "age %s %u", ops[below(r, 4)], 18 + below(r, 70));
        case 1:
            if (chance(r, 0.5))
                return snprintf(out, cap, "district == \"%s\"", DISTRICTS[below(r, N_DISTRICTS)]);
            return snprintf(out, cap, "district in {\"%s\", \"%s\", \"%s\"}",
                            DISTRICTS[below(r, 5)], DISTRICTS[5 + below(r, 5)],
                            DISTRICTS[10 + below(r, 5)]);
        case 2:
            return snprintf(out, cap, "disability_level %s %u", ops[below(r, 5)], below(r, 5));
        case 3:
            return snprintf(out, cap, "%slow_income", chance(r, 0.3) ? "!" : "");
        case 4:
            return snprintf(out, cap, "receives_pension == %s", chance(r, 0.5) ? "true" : "false");
        case 5:
            return snprintf(out, cap, "employment %s \"%s\"",
                            chance(r, 0.7) ? "==" : "!=", EMPLOYMENT[below(r, 5)]);
        case 6:
            return snprintf(out, cap, "children %s %u", ops[below(r, 6)], below(r, 4));
        case 7:
            return snprintf(out, cap, "%sveteran", chance(r, 0.3) ? "!" : "");
        case 8:
            return snprintf(out, cap, "household_type == \"%s\"", HOUSEHOLD[below(r, 2)]);
        default:
            return snprintf(out, cap, "birth_date %s \"%04u-%02u-01\"", ops[below(r, 4)],
                            1930 + below(r, 90), 1 + below(r, 12));
        }
    }
}

static fxb_rule **random_policies(uint64_t seed, int n)
{
    fxb_rule **rules = calloc((size_t)n, sizeof *rules);
    if (rules == NULL)
        die("out of memory");
    for (int i = 0; i < n; i++) {
        rng r = rng_for(seed, 3, (uint64_t)i);
        unsigned nc = 3 + below(&r, 3), used = 0;
        char text[FXB_RULE_TEXT_MAX], c[256];
        size_t len = 0;
        bool grouped = nc >= 4 && chance(&r, 0.25); /* (a || b) && c && d ... */
        for (unsigned j = 0; j < nc; j++) {
            random_condition(&r, c, sizeof c, &used);
            const char *pre = j == 0 ? (grouped ? "(" : "") : (grouped && j == 1 ? " || " : " && ");
            len += (size_t)snprintf(text + len, sizeof text - len, "%s%s%s", pre, c,
                                    grouped && j == 1 ? ")" : "");
        }
        fxb_rule_error where;
        fxb_err err;
        if (fxb_rule_compile(g_schema, FXB_SUBJECT_PERSON, text, &rules[i], &where, &err) != FXB_OK)
            die("random policy %d does not compile (%s): %s", i, text, where.message);
        if (i < 3)
            fprintf(stderr, "policy %d: %s\n", i, text);
    }
    return rules;
}

/* changes one attribute of p at random (or makes it unknown) */
static void mutate(rng *r, person *p, uint32_t today)
{
    bool unknown = chance(r, 0.05);
    switch (below(r, 9)) {
    case 0:
        p->district = unknown ? -1 : (int8_t)below(r, N_DISTRICTS);
        break;
    case 1:
        p->disability = unknown ? -1 : (int8_t)below(r, 5);
        break;
    case 2:
        p->low_income = unknown ? -1 : (int8_t) !(p->low_income > 0);
        break;
    case 3:
        p->pension = unknown ? -1 : (int8_t) !(p->pension > 0);
        break;
    case 4:
        p->employment = unknown ? -1 : (int8_t)below(r, 5);
        break;
    case 5:
        p->children = unknown ? -1 : (int8_t)((p->children > 0 ? p->children : 0) + 1);
        break;
    case 6:
        p->veteran = unknown ? -1 : (int8_t) !(p->veteran > 0);
        break;
    case 7:
        p->household = unknown ? -1 : (int8_t)below(r, 2);
        break;
    default: /* a corrected birth date */
        p->birth = unknown ? 0 : birth_for_age(r, (int)below(r, 101), today);
        break;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void pct(const char *key, uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
    size_t p99 = (size_t)((double)n * 0.99 + 0.999999) - 1; /* nearest rank */
    if (p99 >= n)
        p99 = n - 1;
    printf(" %s_p50_us=%.1f %s_p99_us=%.1f %s_max_us=%.1f", key, (double)ns[(n - 1) / 2] / 1e3, key,
           (double)ns[p99] / 1e3, key, (double)ns[n - 1] / 1e3);
}

static uint64_t ns_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void do_change(fxb_index *ix, uint64_t seed, uint32_t today, uint64_t n_persons,
                      int n_policies, int n_changes)
{
    double c0 = now_ms();
    fxb_rule **rules = random_policies(seed, n_policies);
    double compile_ms = now_ms() - c0;
    uint64_t *eval_ns = calloc((size_t)n_changes, sizeof *eval_ns);
    uint64_t *set_ns = calloc((size_t)n_changes, sizeof *set_ns);
    uint64_t *both_ns = calloc((size_t)n_changes, sizeof *both_ns);
    if (eval_ns == NULL || set_ns == NULL || both_ns == NULL)
        die("out of memory");
    values x;
    memset(&x, 0, sizeof x);
    fxb_profile_view view = {view_get, &x};
    uint64_t matched = 0, unknown = 0;
    size_t nonempty_policies = 0;
    uint64_t *hits = calloc((size_t)n_policies, sizeof *hits);
    for (int c = 0; c < n_changes; c++) {
        rng r = rng_for(seed, 4, (uint64_t)c);
        uint64_t row = ((next(&r) >> 11) % n_persons);
        person p;
        gen_person(seed, row, today, &p);
        mutate(&r, &p, today);
        uint64_t t0 = ns_now();
        person_values(&p, &x);
        for (int i = 0; i < n_policies; i++) {
            fxb_truth t = fxb_rule_eval(rules[i], &view, today, NULL);
            if (t == FXB_TRUE) {
                matched++;
                hits[i]++;
            } else if (t == FXB_TRUTH_UNKNOWN) {
                unknown++;
            }
        }
        uint64_t t1 = ns_now();
        eval_ns[c] = t1 - t0;
        if (ix != NULL) { /* the same change applied to the index */
            char subj[SUBJECT_LEN + 1];
            subject_of('p', row, subj);
            fxb_index_values iv = {x.ia, x.iv, x.n};
            uint64_t s0 = ns_now();
            if (fxb_index_set(ix, subj, &iv) != (int64_t)row)
                die("fxb_index_set on a change failed");
            set_ns[c] = ns_now() - s0;
            both_ns[c] = eval_ns[c] + set_ns[c];
        }
    }
    for (int i = 0; i < n_policies; i++)
        nonempty_policies += hits[i] > 0;
    printf("CHANGE policies=%d changes=%d compile_ms=%.1f matched_per_change=%.2f "
           "unknown_per_change=%.1f policies_ever_true=%zu",
           n_policies, n_changes, compile_ms, (double)matched / n_changes,
           (double)unknown / n_changes, nonempty_policies);
    pct("eval", eval_ns, (size_t)n_changes);
    if (ix != NULL) {
        pct("set", set_ns, (size_t)n_changes);
        pct("both", both_ns, (size_t)n_changes);
    }
    printf("\n");
    fflush(stdout);
    for (int i = 0; i < n_policies; i++)
        fxb_rule_free(rules[i]);
    free(rules);
    free(hits);
    free(eval_ns);
    free(set_ns);
    free(both_ns);
}

/* --- main ------------------------------------------------------------------------------------ */

static uint64_t num(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v ? v : "", &end, 10);
    if (v == NULL || *v == 0 || *end != 0 || errno != 0)
        die("%s wants a number", opt);
    return n;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: fxb-bench-match gen --persons N --enterprises M [--seed S] [--today YYYYMMDD] "
            "--out DIR\n"
            "       fxb-bench-match run --persons N --enterprises M [--seed S] [--today YYYYMMDD]\n"
            "                           [--rule NAME:person|enterprise:TEXT]... [--best 5] "
            "[--median 20]\n"
            "                           [--policies 1000] [--changes 10000] [--schema FILE] "
            "[--serve]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1];
    uint64_t seed = 20240607, persons = 6100000, ents = 500000;
    uint32_t today = 20250601;
    const char *out = NULL, *schema_path = NULL;
    const char *rule_specs[MAX_RULES];
    int n_rules = 0, best_of = 5, median_of = 20, n_policies = 1000, n_changes = 10000;
    bool serve = false;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--serve") == 0) {
            serve = true;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(o, "--persons") == 0)
            persons = num(o, v);
        else if (strcmp(o, "--enterprises") == 0)
            ents = num(o, v);
        else if (strcmp(o, "--seed") == 0)
            seed = num(o, v);
        else if (strcmp(o, "--today") == 0)
            today = (uint32_t)num(o, v);
        else if (strcmp(o, "--out") == 0)
            out = v;
        else if (strcmp(o, "--schema") == 0)
            schema_path = v;
        else if (strcmp(o, "--best") == 0)
            best_of = (int)num(o, v);
        else if (strcmp(o, "--median") == 0)
            median_of = (int)num(o, v);
        else if (strcmp(o, "--policies") == 0)
            n_policies = (int)num(o, v);
        else if (strcmp(o, "--changes") == 0)
            n_changes = (int)num(o, v);
        else if (strcmp(o, "--rule") == 0 && n_rules < MAX_RULES)
            rule_specs[n_rules++] = v;
        else
            usage();
    }
    if (persons > UINT32_MAX || ents > UINT32_MAX)
        die("at most 2^32 rows");
    if (today < 19000101 || today > 99991231 || civil_from_days(ymd_days(today)) != today)
        die("--today wants a valid date YYYYMMDD");
    if (best_of < 1 || median_of < 1 || n_policies < 1 || n_changes < 1)
        die("--best, --median, --policies and --changes must be positive");
    gen_init();
    if (strcmp(cmd, "gen") == 0)
        return cmd_gen(seed, today, persons, ents, out);
    if (strcmp(cmd, "run") != 0)
        usage();

    load_schema(schema_path);
    if (n_rules == 0)
        for (size_t i = 0; i < sizeof DEFAULT_RULES / sizeof DEFAULT_RULES[0]; i++)
            rule_specs[n_rules++] = DEFAULT_RULES[i];
    static rule_def rules[MAX_RULES];
    for (int i = 0; i < n_rules; i++)
        parse_rule(rule_specs[i], &rules[i]);

    g_seed = seed;
    g_rows[FXB_SUBJECT_PERSON] = persons;
    g_rows[FXB_SUBJECT_ENTERPRISE] = ents;
    fxb_index *pix = persons ? build(FXB_SUBJECT_PERSON, seed, today, persons) : NULL;
    fxb_index *eix = ents ? build(FXB_SUBJECT_ENTERPRISE, seed, today, ents) : NULL;
    printf("READY rss_kib=%ld\n", rss_kib());
    fflush(stdout);

    if (!serve) {
        for (int i = 0; i < n_rules; i++)
            do_match(rules[i].type == FXB_SUBJECT_PERSON ? pix : eix, &rules[i], today, best_of,
                     median_of);
        if (persons)
            do_change(pix, seed, today, persons, n_policies, n_changes);
    } else {
        char line[256];
        while (fgets(line, sizeof line, stdin)) {
            line[strcspn(line, "\r\n")] = 0;
            if (strncmp(line, "match ", 6) == 0) {
                int i = 0;
                while (i < n_rules && strcmp(rules[i].name, line + 6) != 0)
                    i++;
                if (i == n_rules) {
                    printf("ERROR no rule %s\n", line + 6);
                    fflush(stdout);
                    continue;
                }
                do_match(rules[i].type == FXB_SUBJECT_PERSON ? pix : eix, &rules[i], today, best_of,
                         median_of);
            } else if (strcmp(line, "change") == 0) {
                if (persons == 0) {
                    printf("ERROR no persons\n");
                    fflush(stdout);
                    continue;
                }
                do_change(pix, seed, today, persons, n_policies, n_changes);
            } else if (strcmp(line, "quit") == 0) {
                break;
            } else {
                printf("ERROR unknown command\n");
                fflush(stdout);
            }
        }
    }
    for (int i = 0; i < n_rules; i++)
        fxb_rule_free(rules[i].rule);
    fxb_index_free(pix);
    fxb_index_free(eix);
    fxb_schema_free((fxb_schema *)g_schema);
    free(g_list);
    return 0;
}
