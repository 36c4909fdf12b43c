/* UTF-8 text checks (server/text.h). */
#include "text.h"

#include <stdint.h>
#include <string.h>

long fxb_text_chars(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    for (size_t i = 0; i < len; n++) {
        unsigned c = p[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) {
            cp = c;
            k = 1;
        } else if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F;
            k = 2;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F;
            k = 3;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07;
            k = 4;
        } else {
            return -1;
        }
        if (i + k > len)
            return -1;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
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
