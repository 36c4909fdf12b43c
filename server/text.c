/* UTF-8 text checks (server/text.h). */
#include "text.h"

#include <string.h>

size_t fxb_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    size_t len;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xbf; /* the second byte's range (RFC 3629 table) */
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* no overlongs */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xf4)
            hi = 0x8f; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if (s[k] < 0x80 || s[k] > 0xbf)
            return 0;
        v = (v << 6) | (s[k] & 0x3f);
    }
    *cp = v;
    return len;
}

bool fxb_text_is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e ||
           cp == 0x200f || cp == 0x061c;
}

long fxb_text_chars(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t cp;
        size_t k = fxb_utf8_next(p + i, len - i, &cp);
        if (k == 0 || fxb_text_is_control(cp))
            return -1;
        i += k;
    }
    return n;
}

long fxb_text_chars_max(const char *s, size_t max_bytes)
{
    size_t len = strnlen(s, max_bytes + 1);
    return len > max_bytes ? -1 : fxb_text_chars(s, len);
}

bool fxb_text_ok(const char *s, long min, long max)
{
    long n = fxb_text_chars_max(s ? s : "", 4 * (size_t)max);
    return n >= min && n <= max;
}
