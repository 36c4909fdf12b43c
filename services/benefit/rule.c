/* The eligibility rule language (rule.h): a hand-written lexer and
 * recursive-descent parser that type-check a rule against the schema and
 * compile it into one allocation (header, nodes, per-condition fetch plans,
 * `in` values, strings), so that evaluation is a walk over const nodes with
 * integer compares only and no allocation.
 *
 * Errors point at the offending token: 1-based line and column counted in
 * characters (code points), the token text bounded and with control,
 * bidirectional and invalid bytes replaced, and a precise English message.
 * The parser's recursion is bounded by FXB_RULE_DEPTH_MAX (parentheses and
 * `!` count one level each), the scratch space by FXB_RULE_TEXT_MAX. */
#include "services/benefit/rule.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRING_CHARS_MAX 32 /* characters of a STRING literal */
#define INT_DIGITS_MAX   18
#define NAME_CHARS_MAX   FXB_ATTR_NAME_MAX
#define TOKEN_SHOWN_MAX  60 /* bytes of a token echoed in fxb_rule_error.token */
#define QUOTE_MAX        40 /* bytes of a token quoted inside a message */
#define DATE_OPEN_HI     99991231u

#define ZH_SYNTAX "资格规则第%u行第%u列有语法错误"
#define ZH_TYPE   "资格规则第%u行第%u列与属性目录不符"
#define ZH_OOM    "系统繁忙，请稍后重试"

/* --- tokens --------------------------------------------------------------- */

typedef enum tok_kind {
    T_END = 0,
    T_IDENT,
    T_IN,
    T_CONTAINS,
    T_TRUE,
    T_FALSE,
    T_INT,
    T_STRING,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_AND,
    T_OR,
    T_NOT,
    T_LPAREN,
    T_RPAREN,
    T_LBRACE,
    T_RBRACE,
    T_COMMA,
} tok_kind;

typedef struct token {
    tok_kind kind;
    size_t start, end; /* bytes of the source text */
    uint32_t line, col;
    int64_t ival;                       /* T_INT */
    char str[4 * STRING_CHARS_MAX + 1]; /* T_STRING, unescaped */
} token;

/* --- scratch form, built while parsing --------------------------------------- */

typedef struct pnode {
    fxb_rule_node_kind kind;
    int a, b; /* child indices, -1 when absent */
    const fxb_attr *attr;
    fxb_rule_op op;
    int64_t value;
    size_t values_off, n_values;
    long text_off, source_off; /* into strs, -1 when absent */
    uint32_t index;
} pnode;

typedef enum how {
    HOW_VALUE = 0, /* compare the stored value */
    HOW_BOOL,      /* a bool: normalized to 0/1 */
    HOW_AGE,       /* fetch birth_date, compare the age on `today` */
} how;

typedef struct pcond {
    int node;
    const fxb_attr *fetch;
    how how;
} pcond;

typedef struct parser {
    const char *s;
    size_t len, pos;
    uint32_t line, col;
    token cur, prev;
    bool started, have_prev;

    const fxb_schema *schema;
    fxb_subject_type subject;
    int depth;

    pnode *nodes;
    size_t n_nodes, cap_nodes;
    int64_t *vals;
    size_t n_vals, cap_vals;
    char *strs;
    size_t n_strs, cap_strs;
    pcond conds[FXB_RULE_CONDITIONS_MAX];
    size_t n_conds;

    bool oom;
    fxb_rule_error *where;
    fxb_err *err;
} parser;

/* --- the compiled rule --------------------------------------------------------- */

typedef struct rule_cond {
    const fxb_attr *fetch;
    how how;
} rule_cond;

struct fxb_rule {
    const fxb_rule_node *root;
    size_t n_conds, n_nodes;
    const rule_cond *conds; /* by condition index */
};

/* --- UTF-8 and display ----------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), with its code
 * point in *cp; 0 when invalid (overlong, surrogate, > U+10FFFF, cut). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF))
            return 0;
        v = (v << 6) | (d & 0x3F);
    }
    *cp = v;
    return len;
}

/* Characters that must never be echoed or accepted inside strings: C0/C1
 * controls, DEL, bidirectional controls (Trojan Source), line separators
 * and the BOM. */
static bool cp_hidden(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF;
}

/* Copies at most max bytes of s[0..n) into dst (max + 1 bytes), valid
 * printable characters as they are, anything else as '?'; "..." marks a
 * cut. */
static void show(char *dst, size_t max, const char *s, size_t n)
{
    size_t o = 0, i = 0;
    bool cut = false;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        const char *rep = s + i;
        size_t rl = len;
        if (len == 0 || cp_hidden(cp)) {
            rep = "?";
            rl = 1;
            if (len == 0)
                len = 1;
        }
        if (o + rl > max) {
            cut = true;
            break;
        }
        memcpy(dst + o, rep, rl);
        o += rl;
        i += len;
    }
    if (cut) {
        while (o > 0 && o + 3 > max) {
            o--;
            while (o > 0 && ((unsigned char)dst[o] & 0xC0) == 0x80)
                o--;
        }
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* --- errors -------------------------------------------------------------------- */

static int vfail(parser *p, const char *reason, uint32_t line, uint32_t col, const char *tok,
                 size_t tok_len, const char *fmt, va_list ap) __attribute__((format(printf, 7, 0)));
static int vfail(parser *p, const char *reason, uint32_t line, uint32_t col, const char *tok,
                 size_t tok_len, const char *fmt, va_list ap)
{
    char msg[sizeof p->where->message];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fxb_utf8_truncate(msg, sizeof msg - 1);
    if (p->where != NULL) {
        p->where->line = line;
        p->where->col = col;
        show(p->where->token, TOKEN_SHOWN_MAX, tok, tok_len);
        snprintf(p->where->message, sizeof p->where->message, "%s", msg);
    }
    char zh[128];
    snprintf(zh, sizeof zh, strcmp(reason, "RULE_TYPE") == 0 ? ZH_TYPE : ZH_SYNTAX, line, col);
    fxb_err_set(p->err, FXB_INVALID_ARGUMENT, reason, zh, "rule %u:%u: %s", line, col, msg);
    return -1;
}

/* Fails at token t (its text is echoed). Returns -1. */
static int fail(parser *p, const char *reason, const token *t, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(parser *p, const char *reason, const token *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(p, reason, t->line, t->col, p->s + t->start, t->end - t->start, fmt, ap);
    va_end(ap);
    return -1;
}

/* Fails at a position of the text, echoing n bytes from there. */
static int fail_at(parser *p, uint32_t line, uint32_t col, size_t at, size_t n, const char *fmt,
                   ...) __attribute__((format(printf, 6, 7)));
static int fail_at(parser *p, uint32_t line, uint32_t col, size_t at, size_t n, const char *fmt,
                   ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(p, "RULE_SYNTAX", line, col, p->s + at, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int out_of_memory(parser *p)
{
    p->oom = true;
    if (p->where != NULL) {
        memset(p->where, 0, sizeof *p->where);
        snprintf(p->where->message, sizeof p->where->message, "out of memory");
    }
    fxb_err_set(p->err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_OOM, "out of memory");
    return -1;
}

/* A token's text for a message: quoted by the caller, bounded, printable. */
typedef struct quoted {
    char s[QUOTE_MAX + 1];
} quoted;

static quoted q_tok(const parser *p, const token *t)
{
    quoted q;
    show(q.s, QUOTE_MAX, p->s + t->start, t->end - t->start);
    return q;
}

static quoted q_str(const char *s)
{
    quoted q;
    show(q.s, QUOTE_MAX, s, strlen(s));
    return q;
}

/* --- lexer ------------------------------------------------------------------------ */

/* Moves over one character of n bytes (a newline starts a line). */
static void step(parser *p, size_t n)
{
    if (p->s[p->pos] == '\n') {
        p->line++;
        p->col = 1;
    } else {
        p->col++;
    }
    p->pos += n;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_name_start(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || is_digit(c) || c == '_';
}

/* A character the lexer refuses outside strings; the message names it. */
static int bad_char(parser *p)
{
    const unsigned char *u = (const unsigned char *)p->s + p->pos;
    uint32_t cp;
    size_t n = utf8_decode(u, p->len - p->pos, &cp);
    if (n == 0)
        return fail_at(p, p->line, p->col, p->pos, 1, "invalid UTF-8 (byte 0x%02X)", u[0]);
    if (cp_hidden(cp))
        return fail_at(p, p->line, p->col, p->pos, n,
                       "control character U+%04" PRIX32 " is not allowed in a rule", cp);
    char c = (char)u[0];
    const char *hint = "";
    if (c == '=')
        hint = ": write '==' to compare";
    else if (c == '&')
        hint = ": write '&&'";
    else if (c == '|')
        hint = ": write '||'";
    else if (c >= 'A' && c <= 'Z')
        hint = ": attribute names are lower case";
    else if (c == '-')
        hint = ": a '-' must be followed by digits";
    else if (c == '\'')
        hint = ": strings are written in double quotes";
    else if (cp == 0x201C || cp == 0x201D)
        hint = ": strings are written in ASCII double quotes";
    else if (cp == 0xFF08 || cp == 0xFF09)
        hint = ": use ASCII parentheses";
    else if (cp == 0xFF0C || cp == 0x3001)
        hint = ": use an ASCII comma";
    char shown[8];
    show(shown, sizeof shown - 1, p->s + p->pos, n);
    return fail_at(p, p->line, p->col, p->pos, n, "unexpected character '%s'%s", shown, hint);
}

static int lex_string(parser *p, token *t)
{
    step(p, 1); /* the opening quote */
    size_t o = 0, chars = 0;
    for (;;) {
        if (p->pos >= p->len)
            return fail_at(p, p->line, p->col, p->pos, 0,
                           "unexpected end of rule: the string at %u:%u is not closed", t->line,
                           t->col);
        char c = p->s[p->pos];
        if (c == '"') {
            step(p, 1);
            break;
        }
        if (c == '\n' || c == '\r')
            return fail_at(p, p->line, p->col, p->pos, 1,
                           "the string at %u:%u is not closed before the end of the line", t->line,
                           t->col);
        const unsigned char *u = (const unsigned char *)p->s + p->pos;
        uint32_t cp;
        size_t n;
        if (c == '\\') {
            char e = p->pos + 1 < p->len ? p->s[p->pos + 1] : '\0';
            if (p->pos + 1 >= p->len)
                return fail_at(p, p->line, p->col, p->pos, 1,
                               "unexpected end of rule: the string at %u:%u is not closed", t->line,
                               t->col);
            if (e != '"' && e != '\\') {
                uint32_t ecp;
                size_t en = utf8_decode(u + 1, p->len - p->pos - 1, &ecp);
                return fail_at(p, p->line, p->col, p->pos, 1 + (en ? en : 1),
                               "unknown escape in a string: only \\\" and \\\\ are allowed");
            }
            step(p, 1);
            u++;
            cp = (uint32_t)e;
            n = 1;
        } else {
            n = utf8_decode(u, p->len - p->pos, &cp);
            if (n == 0)
                return fail_at(p, p->line, p->col, p->pos, 1,
                               "invalid UTF-8 (byte 0x%02X) in a string", u[0]);
            if (cp_hidden(cp))
                return fail_at(p, p->line, p->col, p->pos, n,
                               "control character U+%04" PRIX32 " is not allowed in a string", cp);
        }
        if (++chars > STRING_CHARS_MAX) {
            t->end = p->pos;
            return fail(p, "RULE_SYNTAX", t, "a string is at most %d characters", STRING_CHARS_MAX);
        }
        memcpy(t->str + o, u, n);
        o += n;
        step(p, n);
    }
    t->str[o] = '\0';
    t->end = p->pos;
    if (chars == 0)
        return fail(p, "RULE_SYNTAX", t, "empty string: a string has 1 to %d characters",
                    STRING_CHARS_MAX);
    t->kind = T_STRING;
    return 0;
}

static int lex_int(parser *p, token *t)
{
    bool neg = p->s[p->pos] == '-';
    if (neg)
        step(p, 1);
    int64_t v = 0;
    int digits = 0;
    while (p->pos < p->len && is_digit(p->s[p->pos])) {
        if (++digits <= INT_DIGITS_MAX)
            v = v * 10 + (p->s[p->pos] - '0');
        step(p, 1);
    }
    t->end = p->pos;
    if (digits > INT_DIGITS_MAX)
        return fail(p, "RULE_SYNTAX", t, "integer out of range: at most %d digits", INT_DIGITS_MAX);
    t->kind = T_INT;
    t->ival = neg ? -v : v;
    return 0;
}

/* Reads the next token into p->cur (the old one moves to p->prev). */
static int next(parser *p)
{
    if (p->started) {
        p->prev = p->cur;
        p->have_prev = true;
    }
    p->started = true;
    for (;;) {
        if (p->pos >= p->len)
            break;
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n')
            step(p, 1);
        else if (c == '\r' && p->pos + 1 < p->len && p->s[p->pos + 1] == '\n')
            p->pos++; /* CR LF is one newline; the LF moves the line */
        else
            break;
    }
    token *t = &p->cur;
    t->kind = T_END;
    t->start = t->end = p->pos;
    t->line = p->line;
    t->col = p->col;
    t->str[0] = '\0';
    t->ival = 0;
    if (p->pos >= p->len)
        return 0;

    char c = p->s[p->pos];
    char d = p->pos + 1 < p->len ? p->s[p->pos + 1] : '\0';
    if (is_name_start(c)) {
        size_t n = 0;
        while (p->pos < p->len && is_name_char(p->s[p->pos])) {
            step(p, 1);
            n++;
        }
        t->end = p->pos;
        if (n > NAME_CHARS_MAX)
            return fail(p, "RULE_SYNTAX", t, "a name is at most %d characters", NAME_CHARS_MAX);
        const char *w = p->s + t->start;
        if (n == 2 && memcmp(w, "in", 2) == 0)
            t->kind = T_IN;
        else if (n == 8 && memcmp(w, "contains", 8) == 0)
            t->kind = T_CONTAINS;
        else if (n == 4 && memcmp(w, "true", 4) == 0)
            t->kind = T_TRUE;
        else if (n == 5 && memcmp(w, "false", 5) == 0)
            t->kind = T_FALSE;
        else
            t->kind = T_IDENT;
        return 0;
    }
    if (is_digit(c) || (c == '-' && is_digit(d)))
        return lex_int(p, t);
    if (c == '"')
        return lex_string(p, t);

    tok_kind k = T_END;
    size_t n = 1;
    switch (c) {
    case '=':
        if (d == '=')
            k = T_EQ, n = 2;
        break;
    case '!':
        k = d == '=' ? T_NE : T_NOT, n = d == '=' ? 2 : 1;
        break;
    case '<':
        k = d == '=' ? T_LE : T_LT, n = d == '=' ? 2 : 1;
        break;
    case '>':
        k = d == '=' ? T_GE : T_GT, n = d == '=' ? 2 : 1;
        break;
    case '&':
        if (d == '&')
            k = T_AND, n = 2;
        break;
    case '|':
        if (d == '|')
            k = T_OR, n = 2;
        break;
    case '(':
        k = T_LPAREN;
        break;
    case ')':
        k = T_RPAREN;
        break;
    case '{':
        k = T_LBRACE;
        break;
    case '}':
        k = T_RBRACE;
        break;
    case ',':
        k = T_COMMA;
        break;
    default:
        break;
    }
    if (k == T_END)
        return bad_char(p);
    for (size_t i = 0; i < n; i++)
        step(p, 1);
    t->kind = k;
    t->end = p->pos;
    return 0;
}

/* --- scratch storage ------------------------------------------------------------- */

static bool grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *b = realloc(*buf, n * elem);
    if (b == NULL)
        return false;
    *buf = b;
    *cap = n;
    return true;
}

static int new_node(parser *p, fxb_rule_node_kind kind, int a, int b)
{
    if (!grow((void **)&p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *p->nodes))
        return out_of_memory(p);
    pnode *n = &p->nodes[p->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->a = a;
    n->b = b;
    n->text_off = n->source_off = -1;
    return (int)p->n_nodes++;
}

static int put_str(parser *p, const char *s, size_t n)
{
    if (!grow((void **)&p->strs, &p->cap_strs, p->n_strs + n + 1, 1))
        return out_of_memory(p);
    memcpy(p->strs + p->n_strs, s, n);
    p->n_strs += n;
    p->strs[p->n_strs] = '\0';
    return 0;
}

static int put_tok(parser *p, const token *t)
{
    return put_str(p, p->s + t->start, t->end - t->start);
}

static int put_val(parser *p, int64_t v)
{
    if (!grow((void **)&p->vals, &p->cap_vals, p->n_vals + 1, sizeof *p->vals))
        return out_of_memory(p);
    p->vals[p->n_vals++] = v;
    return 0;
}

/* --- types ------------------------------------------------------------------------- */

static const char *type_name(fxb_attr_type t)
{
    switch (t) {
    case FXB_ATTR_INT:
        return "int";
    case FXB_ATTR_BOOL:
        return "bool";
    case FXB_ATTR_ENUM:
        return "enum";
    case FXB_ATTR_DATE:
        return "date";
    case FXB_ATTR_SET:
        return "set";
    }
    return "unknown type";
}

static const char *type_article(fxb_attr_type t)
{
    return t == FXB_ATTR_INT || t == FXB_ATTR_ENUM ? "an" : "a";
}

static fxb_rule_op op_of(tok_kind k)
{
    switch (k) {
    case T_EQ:
        return FXB_OP_EQ;
    case T_NE:
        return FXB_OP_NE;
    case T_LT:
        return FXB_OP_LT;
    case T_LE:
        return FXB_OP_LE;
    case T_GT:
        return FXB_OP_GT;
    default:
        return FXB_OP_GE;
    }
}

static bool is_op(tok_kind k)
{
    return k >= T_EQ && k <= T_GE;
}

static bool is_literal(tok_kind k)
{
    return k == T_INT || k == T_STRING || k == T_TRUE || k == T_FALSE;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}

static bool date_valid(uint32_t d)
{
    int y = (int)(d / 10000), m = (int)(d / 100 % 100), day = (int)(d % 100);
    return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && day >= 1 && day <= month_days(y, m);
}

static uint32_t day_after(uint32_t d)
{
    int y = (int)(d / 10000), m = (int)(d / 100 % 100), day = (int)(d % 100);
    if (day < month_days(y, m))
        return d + 1;
    if (m < 12)
        return (uint32_t)(y * 10000 + (m + 1) * 100 + 1);
    return (uint32_t)((y + 1) * 10000 + 101);
}

/* "YYYY-MM-DD": 0 when not in that form, 1 when not a real date, 2 with
 * *out = yyyymmdd. */
static int parse_date(const char *s, uint32_t *out)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7)
            continue;
        if (!is_digit(s[i]))
            return 0;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (!date_valid(v))
        return 1;
    *out = v;
    return 2;
}

static const fxb_attr *find_attr(const fxb_schema *s, fxb_subject_type subject, const char *name,
                                 size_t n)
{
    for (size_t i = 0; i < s->n_attrs; i++)
        if (s->attrs[i].subject == subject && strlen(s->attrs[i].name) == n &&
            memcmp(s->attrs[i].name, name, n) == 0)
            return &s->attrs[i];
    return NULL;
}

static int enum_index(const fxb_attr *a, const char *v)
{
    for (size_t i = 0; i < a->n_values; i++)
        if (a->values[i] != NULL && strcmp(a->values[i], v) == 0)
            return (int)i;
    return -1;
}

/* Levenshtein distance, capped: for "did you mean". */
static size_t distance(const char *a, size_t na, const char *b)
{
    size_t nb = strlen(b);
    if (na > NAME_CHARS_MAX || nb > NAME_CHARS_MAX)
        return 99;
    size_t row[NAME_CHARS_MAX + 1];
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* The attribute a condition names, with the fetch plan; -1 on failure. */
static int resolve_attr(parser *p, const token *t, const fxb_attr **out, pcond *c)
{
    const char *name = p->s + t->start;
    size_t n = t->end - t->start;
    quoted q = q_tok(p, t);
    const fxb_attr *a = find_attr(p->schema, p->subject, name, n);
    if (a == NULL) {
        fxb_subject_type other =
            p->subject == FXB_SUBJECT_PERSON ? FXB_SUBJECT_ENTERPRISE : FXB_SUBJECT_PERSON;
        if (find_attr(p->schema, other, name, n) != NULL)
            return fail(p, "RULE_TYPE", t, "'%s' is %s attribute, the rule is for %s", q.s,
                        other == FXB_SUBJECT_PERSON ? "a person" : "an enterprise",
                        p->subject == FXB_SUBJECT_PERSON ? "people" : "enterprises");
        const char *best = NULL;
        size_t best_d = 3;
        for (size_t i = 0; i < p->schema->n_attrs; i++) {
            const fxb_attr *x = &p->schema->attrs[i];
            if (x->subject != p->subject)
                continue;
            size_t d = distance(name, n, x->name);
            if (d < best_d) {
                best_d = d;
                best = x->name;
            }
        }
        if (best != NULL)
            return fail(p, "RULE_TYPE", t, "unknown attribute '%s' (did you mean '%s'?)", q.s,
                        best);
        return fail(p, "RULE_TYPE", t, "unknown attribute '%s'", q.s);
    }
    c->fetch = a;
    c->how = a->type == FXB_ATTR_BOOL ? HOW_BOOL : HOW_VALUE;
    if (a->derived) {
        const fxb_attr *birth = NULL;
        if (strcmp(a->name, "age") == 0)
            birth = find_attr(p->schema, a->subject, "birth_date", strlen("birth_date"));
        if (birth == NULL || birth->type != FXB_ATTR_DATE || a->type != FXB_ATTR_INT)
            return fail(p, "RULE_TYPE", t,
                        "'%s' is derived, but the schema has no date birth_date to derive it from",
                        q.s);
        c->fetch = birth;
        c->how = HOW_AGE;
    }
    *out = a;
    return 0;
}

/* Whether an attribute of this type takes the operator (at token op). */
static int check_op(parser *p, const fxb_attr *a, const token *op)
{
    fxb_attr_type t = a->type;
    bool ok;
    const char *hint = "";
    switch (op->kind) {
    case T_IN:
        ok = t == FXB_ATTR_INT || t == FXB_ATTR_ENUM;
        if (t == FXB_ATTR_SET)
            hint = ": use contains";
        else if (t == FXB_ATTR_BOOL)
            hint = ": compare it with == true or == false";
        else if (t == FXB_ATTR_DATE)
            hint = ": compare it with == < <= > >= or !=";
        break;
    case T_CONTAINS:
        ok = t == FXB_ATTR_SET;
        break;
    case T_EQ:
    case T_NE:
        ok = t != FXB_ATTR_SET;
        hint = ": use contains";
        break;
    default:
        ok = t == FXB_ATTR_INT || t == FXB_ATTR_DATE;
        if (t == FXB_ATTR_SET)
            hint = ": use contains";
        else if (t == FXB_ATTR_BOOL)
            hint = ": compare it with == true or == false";
        else if (t == FXB_ATTR_ENUM)
            hint = ": an enum takes ==, != and in";
        break;
    }
    if (ok)
        return 0;
    quoted q = q_tok(p, op);
    quoted n = q_str(a->name);
    if (op->kind == T_CONTAINS)
        return fail(p, "RULE_TYPE", op,
                    "'contains' applies to set attributes only, and '%s' is %s %s", n.s,
                    type_article(t), type_name(t));
    return fail(p, "RULE_TYPE", op, "operator '%s' does not apply to %s '%s'%s", q.s, type_name(t),
                n.s, hint);
}

/* The stored form of literal lit for attribute a; -1 on a type error. */
static int check_literal(parser *p, const fxb_attr *a, const token *lit, int64_t *out)
{
    quoted n = q_str(a->name);
    quoted q = q_tok(p, lit);
    switch (a->type) {
    case FXB_ATTR_INT:
        if (lit->kind != T_INT)
            return fail(p, "RULE_TYPE", lit, "'%s' is an int: expected an integer, found %s", n.s,
                        lit->kind == T_STRING ? "a string" : q.s);
        if (a->min < a->max && (lit->ival < a->min || lit->ival > a->max))
            return fail(p, "RULE_TYPE", lit,
                        "'%s' ranges from %" PRId64 " to %" PRId64 ": %" PRId64 " is outside it",
                        n.s, a->min, a->max, lit->ival);
        *out = lit->ival;
        return 0;
    case FXB_ATTR_BOOL:
        if (lit->kind != T_TRUE && lit->kind != T_FALSE)
            return fail(p, "RULE_TYPE", lit,
                        "'%s' is a bool: compare it with true or false, not '%s'", n.s, q.s);
        *out = lit->kind == T_TRUE;
        return 0;
    case FXB_ATTR_ENUM: {
        if (lit->kind != T_STRING)
            return fail(p, "RULE_TYPE", lit,
                        "'%s' is an enum: expected one of its values as a string, found '%s'", n.s,
                        q.s);
        int i = enum_index(a, lit->str);
        if (i < 0)
            return fail(p, "RULE_TYPE", lit, "'%s' is an enum: '%s' is not one of its values", n.s,
                        q_str(lit->str).s);
        *out = i;
        return 0;
    }
    case FXB_ATTR_DATE: {
        if (lit->kind != T_STRING)
            return fail(p, "RULE_TYPE", lit,
                        "'%s' is a date: write it as a string \"YYYY-MM-DD\", not '%s'", n.s, q.s);
        uint32_t d = 0;
        int r = parse_date(lit->str, &d);
        if (r == 0)
            return fail(p, "RULE_TYPE", lit, "'%s' is a date: '%s' is not written \"YYYY-MM-DD\"",
                        n.s, q_str(lit->str).s);
        if (r == 1)
            return fail(p, "RULE_TYPE", lit, "'%s' is not a real date", q_str(lit->str).s);
        *out = d;
        return 0;
    }
    case FXB_ATTR_SET:
        break;
    }
    return fail(p, "RULE_TYPE", lit, "'%s' has a type rules cannot compare", n.s);
}

/* Consumes a literal (it becomes p->prev), or fails naming what p->prev
 * should have been followed by. */
static int expect_literal(parser *p, const char *what)
{
    if (is_literal(p->cur.kind))
        return next(p);
    quoted a = q_tok(p, &p->prev);
    if (p->cur.kind == T_END)
        return fail(p, "RULE_SYNTAX", &p->cur, "unexpected end of rule: expected %s after '%s'",
                    what, a.s);
    quoted f = q_tok(p, &p->cur);
    return fail(p, "RULE_SYNTAX", &p->cur, "expected %s after '%s', found '%s'", what, a.s, f.s);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* --- parser --------------------------------------------------------------------------- */

static int parse_or(parser *p);

static int parse_condition(parser *p)
{
    token at = p->cur;
    if (p->n_conds >= FXB_RULE_CONDITIONS_MAX)
        return fail(p, "RULE_SYNTAX", &at, "too many conditions: a rule has at most %d",
                    FXB_RULE_CONDITIONS_MAX);
    pcond *c = &p->conds[p->n_conds];
    const fxb_attr *a = NULL;
    if (resolve_attr(p, &at, &a, c) < 0 || next(p) < 0)
        return -1;
    size_t src = p->n_strs;
    if (put_tok(p, &at) < 0)
        return -1;
    quoted name = q_str(a->name);

    int node;
    if (is_op(p->cur.kind)) {
        token op = p->cur;
        if (check_op(p, a, &op) < 0 || next(p) < 0 || expect_literal(p, "a literal") < 0)
            return -1;
        int64_t v;
        if (check_literal(p, a, &p->prev, &v) < 0 || (node = new_node(p, FXB_RN_CMP, -1, -1)) < 0)
            return -1;
        p->nodes[node].op = op_of(op.kind);
        p->nodes[node].value = v;
        if (put_str(p, " ", 1) < 0 || put_tok(p, &op) < 0 || put_str(p, " ", 1) < 0 ||
            put_tok(p, &p->prev) < 0)
            return -1;
    } else if (p->cur.kind == T_IN) {
        if (check_op(p, a, &p->cur) < 0 || next(p) < 0)
            return -1;
        if (p->cur.kind != T_LBRACE) {
            if (p->cur.kind == T_END)
                return fail(p, "RULE_SYNTAX", &p->cur,
                            "unexpected end of rule: expected '{' after 'in'");
            return fail(p, "RULE_SYNTAX", &p->cur, "expected '{' after 'in', found '%s'",
                        q_tok(p, &p->cur).s);
        }
        token open = p->cur;
        if (next(p) < 0 || put_str(p, " in {", 5) < 0)
            return -1;
        size_t off = p->n_vals, n = 0;
        for (;;) {
            if (expect_literal(p, "a value") < 0)
                return -1;
            if (++n > FXB_RULE_IN_MAX)
                return fail(p, "RULE_SYNTAX", &p->prev,
                            "too many values: an 'in' list has at most %d", FXB_RULE_IN_MAX);
            int64_t v;
            if (check_literal(p, a, &p->prev, &v) < 0 || put_val(p, v) < 0 ||
                (n > 1 && put_str(p, ", ", 2) < 0) || put_tok(p, &p->prev) < 0)
                return -1;
            if (p->cur.kind == T_COMMA) {
                if (next(p) < 0)
                    return -1;
                continue;
            }
            if (p->cur.kind == T_RBRACE)
                break;
            if (p->cur.kind == T_END)
                return fail(p, "RULE_SYNTAX", &p->cur,
                            "unexpected end of rule: '{' at %u:%u is not closed", open.line,
                            open.col);
            return fail(p, "RULE_SYNTAX", &p->cur, "expected ',' or '}' after a value, found '%s'",
                        q_tok(p, &p->cur).s);
        }
        if (next(p) < 0 || put_str(p, "}", 1) < 0)
            return -1;
        qsort(p->vals + off, n, sizeof *p->vals, cmp_i64);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (k == 0 || p->vals[off + i] != p->vals[off + k - 1])
                p->vals[off + k++] = p->vals[off + i];
        p->n_vals = off + k;
        if ((node = new_node(p, FXB_RN_IN, -1, -1)) < 0)
            return -1;
        p->nodes[node].values_off = off;
        p->nodes[node].n_values = k;
    } else if (p->cur.kind == T_CONTAINS) {
        if (check_op(p, a, &p->cur) < 0 || next(p) < 0)
            return -1;
        if (p->cur.kind != T_STRING) {
            if (p->cur.kind == T_END)
                return fail(p, "RULE_SYNTAX", &p->cur,
                            "unexpected end of rule: expected a string after 'contains'");
            return fail(p, "RULE_SYNTAX", &p->cur, "expected a string after 'contains', found '%s'",
                        q_tok(p, &p->cur).s);
        }
        if (next(p) < 0 || put_str(p, " contains ", 10) < 0 || put_tok(p, &p->prev) < 0)
            return -1;
        long text = (long)p->n_strs + 1;
        p->n_strs++; /* keep the source's NUL (put_str wrote it) */
        if (put_str(p, p->prev.str, strlen(p->prev.str)) < 0 ||
            (node = new_node(p, FXB_RN_CONTAINS, -1, -1)) < 0)
            return -1;
        p->nodes[node].text_off = text;
    } else if (is_literal(p->cur.kind) || p->cur.kind == T_IDENT) {
        return fail(p, "RULE_SYNTAX", &p->cur, "expected an operator between '%s' and '%s'", name.s,
                    q_tok(p, &p->cur).s);
    } else {
        if (a->type != FXB_ATTR_BOOL)
            return fail(p, "RULE_TYPE", &at,
                        "'%s' is %s %s: only a bool stands alone; write an operator and a value",
                        name.s, type_article(a->type), type_name(a->type));
        if ((node = new_node(p, FXB_RN_TRUTH, -1, -1)) < 0)
            return -1;
    }
    p->n_strs++; /* past the NUL of the last string */
    pnode *nd = &p->nodes[node];
    nd->attr = a;
    nd->source_off = (long)src;
    nd->index = (uint32_t)p->n_conds;
    c->node = node;
    p->n_conds++;
    return node;
}

static int enter(parser *p, const token *t)
{
    if (p->depth >= FXB_RULE_DEPTH_MAX)
        return fail(p, "RULE_SYNTAX", t, "the rule nests too deep: at most %d levels",
                    FXB_RULE_DEPTH_MAX);
    p->depth++;
    return 0;
}

static int parse_primary(parser *p)
{
    if (p->cur.kind == T_LPAREN) {
        token open = p->cur;
        if (enter(p, &open) < 0 || next(p) < 0)
            return -1;
        int inner = parse_or(p);
        if (inner < 0)
            return -1;
        if (p->cur.kind == T_END)
            return fail(p, "RULE_SYNTAX", &p->cur,
                        "unexpected end of rule: '(' at %u:%u is not closed", open.line, open.col);
        if (p->cur.kind != T_RPAREN)
            return fail(p, "RULE_SYNTAX", &p->cur, "expected ')' to close '(' at %u:%u, found '%s'",
                        open.line, open.col, q_tok(p, &p->cur).s);
        p->depth--;
        return next(p) < 0 ? -1 : inner;
    }
    if (p->cur.kind == T_IDENT)
        return parse_condition(p);
    if (p->cur.kind == T_END) {
        if (!p->have_prev)
            return fail(p, "RULE_SYNTAX", &p->cur, "the rule is empty");
        return fail(p, "RULE_SYNTAX", &p->cur,
                    "unexpected end of rule: expected a condition after '%s'",
                    q_tok(p, &p->prev).s);
    }
    const char *hint = "";
    if (is_literal(p->cur.kind))
        hint = " (a condition starts with the attribute)";
    return fail(p, "RULE_SYNTAX", &p->cur, "expected a condition, found '%s'%s",
                q_tok(p, &p->cur).s, hint);
}

static int parse_unary(parser *p)
{
    if (p->cur.kind != T_NOT)
        return parse_primary(p);
    if (enter(p, &p->cur) < 0 || next(p) < 0)
        return -1;
    int a = parse_unary(p);
    if (a < 0)
        return -1;
    p->depth--;
    return new_node(p, FXB_RN_NOT, a, -1);
}

static int parse_and(parser *p)
{
    int left = parse_unary(p);
    while (left >= 0 && p->cur.kind == T_AND) {
        if (next(p) < 0)
            return -1;
        int right = parse_unary(p);
        if (right < 0)
            return -1;
        left = new_node(p, FXB_RN_AND, left, right);
    }
    return left;
}

static int parse_or(parser *p)
{
    int left = parse_and(p);
    while (left >= 0 && p->cur.kind == T_OR) {
        if (next(p) < 0)
            return -1;
        int right = parse_and(p);
        if (right < 0)
            return -1;
        left = new_node(p, FXB_RN_OR, left, right);
    }
    return left;
}

static int parse_rule(parser *p)
{
    if (next(p) < 0)
        return -1;
    if (p->cur.kind == T_END)
        return fail(p, "RULE_SYNTAX", &p->cur, "the rule is empty");
    int root = parse_or(p);
    if (root < 0)
        return -1;
    if (p->cur.kind == T_END)
        return root;
    if (p->cur.kind == T_RPAREN)
        return fail(p, "RULE_SYNTAX", &p->cur, "')' has no matching '('");
    return fail(p, "RULE_SYNTAX", &p->cur, "expected '&&', '||' or the end of the rule, found '%s'",
                q_tok(p, &p->cur).s);
}

/* --- compile ---------------------------------------------------------------------------- */

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* One block: the header, nodes, conditions, values, strings. */
static fxb_rule *finish(parser *p, int root)
{
    size_t off_nodes = align8(sizeof(fxb_rule));
    size_t off_conds = align8(off_nodes + p->n_nodes * sizeof(fxb_rule_node));
    size_t off_vals = align8(off_conds + p->n_conds * sizeof(rule_cond));
    size_t off_strs = off_vals + p->n_vals * sizeof(int64_t);
    size_t total = off_strs + p->n_strs + 1;
    char *block = calloc(1, total);
    if (block == NULL)
        return NULL;
    fxb_rule *r = (fxb_rule *)block;
    fxb_rule_node *nodes = (fxb_rule_node *)(block + off_nodes);
    rule_cond *conds = (rule_cond *)(block + off_conds);
    int64_t *vals = (int64_t *)(block + off_vals);
    char *strs = block + off_strs;
    if (p->n_vals > 0)
        memcpy(vals, p->vals, p->n_vals * sizeof *vals);
    if (p->n_strs > 0)
        memcpy(strs, p->strs, p->n_strs);
    for (size_t i = 0; i < p->n_nodes; i++) {
        const pnode *s = &p->nodes[i];
        fxb_rule_node *d = &nodes[i];
        d->kind = s->kind;
        d->a = s->a >= 0 ? &nodes[s->a] : NULL;
        d->b = s->b >= 0 ? &nodes[s->b] : NULL;
        d->attr = s->attr;
        d->op = s->op;
        d->value = s->value;
        d->values = s->kind == FXB_RN_IN ? vals + s->values_off : NULL;
        d->n_values = s->n_values;
        d->text = s->text_off >= 0 ? strs + s->text_off : NULL;
        d->source = s->source_off >= 0 ? strs + s->source_off : NULL;
        d->index = s->index;
    }
    for (size_t i = 0; i < p->n_conds; i++) {
        conds[i].fetch = p->conds[i].fetch;
        conds[i].how = p->conds[i].how;
    }
    r->root = &nodes[root];
    r->n_conds = p->n_conds;
    r->n_nodes = p->n_nodes;
    r->conds = conds;
    return r;
}

/* Position (line, column) of byte `at`, counting characters. */
static void position(const char *s, size_t at, uint32_t *line, uint32_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80 && s[i] != '\r') {
            (*col)++;
        }
    }
}

fxb_code fxb_rule_compile(const fxb_schema *schema, fxb_subject_type subject, const char *text,
                          fxb_rule **out, fxb_rule_error *where, fxb_err *err)
{
    if (where != NULL)
        memset(where, 0, sizeof *where);
    if (out == NULL || schema == NULL)
        return fxb_err_set(err, FXB_INTERNAL, "RULE_ARGUMENT", ZH_OOM,
                           "fxb_rule_compile needs a schema and an output");
    *out = NULL;
    parser p;
    memset(&p, 0, sizeof p);
    p.s = text != NULL ? text : "";
    p.line = p.col = 1;
    p.schema = schema;
    p.subject = subject;
    p.where = where;
    p.err = err;
    p.len = strnlen(p.s, FXB_RULE_TEXT_MAX + 1);
    if (p.len > FXB_RULE_TEXT_MAX) {
        uint32_t line, col;
        position(p.s, FXB_RULE_TEXT_MAX, &line, &col);
        fail_at(&p, line, col, FXB_RULE_TEXT_MAX, strnlen(p.s + FXB_RULE_TEXT_MAX, 64),
                "the rule is too long: at most %d bytes", FXB_RULE_TEXT_MAX);
        return FXB_INVALID_ARGUMENT;
    }
    int root = parse_rule(&p);
    fxb_rule *r = NULL;
    if (root >= 0) {
        r = finish(&p, root);
        if (r == NULL)
            out_of_memory(&p);
    }
    free(p.nodes);
    free(p.vals);
    free(p.strs);
    if (r == NULL)
        return p.oom ? FXB_RESOURCE_EXHAUSTED : FXB_INVALID_ARGUMENT;
    *out = r;
    return FXB_OK;
}

void fxb_rule_free(fxb_rule *r)
{
    free(r);
}

const fxb_rule_node *fxb_rule_root(const fxb_rule *r)
{
    return r != NULL ? r->root : NULL;
}

size_t fxb_rule_conditions(const fxb_rule *r)
{
    return r != NULL ? r->n_conds : 0;
}

/* --- evaluation ---------------------------------------------------------------------------- */

typedef struct eval_ctx {
    const fxb_rule *r;
    const fxb_profile_view *p;
    uint32_t today;
    fxb_truth *held;
} eval_ctx;

static fxb_truth truth(bool b)
{
    return b ? FXB_TRUE : FXB_FALSE;
}

static bool compare(fxb_rule_op op, int64_t x, int64_t v)
{
    switch (op) {
    case FXB_OP_EQ:
        return x == v;
    case FXB_OP_NE:
        return x != v;
    case FXB_OP_LT:
        return x < v;
    case FXB_OP_LE:
        return x <= v;
    case FXB_OP_GT:
        return x > v;
    case FXB_OP_GE:
        return x >= v;
    }
    return false;
}

static fxb_truth condition(const eval_ctx *e, const fxb_rule_node *n)
{
    const rule_cond *c = &e->r->conds[n->index];
    fxb_profile_value v = {0};
    e->p->get(e->p->self, c->fetch, &v);
    if (!v.present)
        return FXB_TRUTH_UNKNOWN;
    int64_t x = v.i;
    if (c->how == HOW_BOOL) {
        x = x != 0;
    } else if (c->how == HOW_AGE) {
        if (x < 0 || x > DATE_OPEN_HI || !date_valid((uint32_t)x))
            return FXB_TRUTH_UNKNOWN;
        x = fxb_rule_age((uint32_t)x, e->today);
    }
    switch (n->kind) {
    case FXB_RN_TRUTH:
        return truth(x != 0);
    case FXB_RN_CMP:
        return truth(compare(n->op, x, n->value));
    case FXB_RN_IN: {
        size_t lo = 0, hi = n->n_values;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (n->values[mid] < x)
                lo = mid + 1;
            else
                hi = mid;
        }
        return truth(lo < n->n_values && n->values[lo] == x);
    }
    case FXB_RN_CONTAINS:
        if (v.members == NULL)
            return FXB_FALSE;
        for (size_t i = 0; i < v.n_members; i++)
            if (v.members[i] != NULL && strcmp(v.members[i], n->text) == 0)
                return FXB_TRUE;
        return FXB_FALSE;
    default:
        return FXB_TRUTH_UNKNOWN;
    }
}

/* Kleene's logic. Without `held` a decided left side skips the right one;
 * with it every condition is evaluated so that each one's truth is known. */
static fxb_truth eval(const eval_ctx *e, const fxb_rule_node *n)
{
    switch (n->kind) {
    case FXB_RN_AND: {
        fxb_truth a = eval(e, n->a);
        if (a == FXB_FALSE && e->held == NULL)
            return FXB_FALSE;
        fxb_truth b = eval(e, n->b);
        if (a == FXB_FALSE || b == FXB_FALSE)
            return FXB_FALSE;
        return a == FXB_TRUTH_UNKNOWN || b == FXB_TRUTH_UNKNOWN ? FXB_TRUTH_UNKNOWN : FXB_TRUE;
    }
    case FXB_RN_OR: {
        fxb_truth a = eval(e, n->a);
        if (a == FXB_TRUE && e->held == NULL)
            return FXB_TRUE;
        fxb_truth b = eval(e, n->b);
        if (a == FXB_TRUE || b == FXB_TRUE)
            return FXB_TRUE;
        return a == FXB_TRUTH_UNKNOWN || b == FXB_TRUTH_UNKNOWN ? FXB_TRUTH_UNKNOWN : FXB_FALSE;
    }
    case FXB_RN_NOT: {
        fxb_truth a = eval(e, n->a);
        return a == FXB_TRUTH_UNKNOWN ? FXB_TRUTH_UNKNOWN : a == FXB_TRUE ? FXB_FALSE : FXB_TRUE;
    }
    default: {
        fxb_truth t = condition(e, n);
        if (e->held != NULL)
            e->held[n->index] = t;
        return t;
    }
    }
}

fxb_truth fxb_rule_eval(const fxb_rule *r, const fxb_profile_view *p, uint32_t today,
                        fxb_truth *held)
{
    if (r == NULL)
        return FXB_TRUTH_UNKNOWN;
    if (p == NULL || p->get == NULL) {
        if (held != NULL)
            for (size_t i = 0; i < r->n_conds; i++)
                held[i] = FXB_TRUTH_UNKNOWN;
        return FXB_TRUTH_UNKNOWN;
    }
    eval_ctx e = {r, p, today, held};
    return eval(&e, r->root);
}

/* --- ages ----------------------------------------------------------------------------------- */

int64_t fxb_rule_age(uint32_t birth, uint32_t today)
{
    int by = (int)(birth / 10000), bm = (int)(birth / 100 % 100), bd = (int)(birth % 100);
    int ty = (int)(today / 10000), tm = (int)(today / 100 % 100), td = (int)(today % 100);
    if (bm == 2 && bd == 29 && !leap(ty)) {
        bm = 3;
        bd = 1;
    }
    int64_t age = (int64_t)ty - by;
    if (tm * 100 + td < bm * 100 + bd)
        age--;
    return age < 0 ? 0 : age; /* a birth date after today counts as age 0 */
}

typedef enum span { SPAN_NONE, SPAN_SOME, SPAN_ALL } span;

/* {birth : age(birth) >= years} is a prefix of the calendar: SPAN_ALL,
 * SPAN_NONE, or every date up to *last. */
static span at_least(int64_t years, uint32_t today, uint32_t *last)
{
    if (years <= 0)
        return SPAN_ALL;
    int64_t by = (int64_t)(today / 10000) - years;
    if (by < 1)
        return SPAN_NONE;
    uint32_t d = (uint32_t)by * 10000 + today % 10000;
    if (!date_valid(d)) /* today is 29 February and by is a common year */
        d = (uint32_t)by * 10000 + 228;
    *last = d;
    return SPAN_SOME;
}

bool fxb_rule_age_range(fxb_rule_op op, int64_t years, uint32_t today, uint32_t *lo, uint32_t *hi)
{
    if (years > 100000)
        years = 100000;
    if (years < -1)
        years = -1;
    uint32_t b0 = 0, b1 = 0;
    span s0 = at_least(years, today, &b0);     /* age >= years */
    span s1 = at_least(years + 1, today, &b1); /* age >  years */
    uint32_t l = 0, h = DATE_OPEN_HI;
    switch (op) {
    case FXB_OP_GE:
    case FXB_OP_GT: {
        span s = op == FXB_OP_GE ? s0 : s1;
        if (s == SPAN_NONE)
            return false;
        if (s == SPAN_SOME)
            h = op == FXB_OP_GE ? b0 : b1;
        break;
    }
    case FXB_OP_LT:
    case FXB_OP_LE: {
        span s = op == FXB_OP_LT ? s0 : s1;
        if (s == SPAN_ALL)
            return false;
        if (s == SPAN_SOME)
            l = day_after(op == FXB_OP_LT ? b0 : b1);
        break;
    }
    case FXB_OP_EQ:
    case FXB_OP_NE:
        if (s0 == SPAN_NONE || s1 == SPAN_ALL)
            return false;
        if (s0 == SPAN_SOME)
            h = b0;
        if (s1 == SPAN_SOME)
            l = day_after(b1);
        if (l > h)
            return false;
        break;
    default:
        return false;
    }
    *lo = l;
    *hi = h;
    return true;
}
