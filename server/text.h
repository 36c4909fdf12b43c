/* Text checks shared by every service that stores what clients type
 * (purposes, reasons, notes, comments, names): characters are counted in
 * Unicode code points, and text must be well-formed UTF-8 — no overlong
 * forms, surrogates or values past U+10FFFF — without C0 controls, DEL or
 * C1 controls (so it can be shown, logged as an id-free length, and sent as
 * a proto3 string). */
#ifndef FXB_TEXT_H
#define FXB_TEXT_H

#include <stddef.h>

/* The characters of s[0..len), or -1 when the bytes break a rule above (an
 * embedded NUL is a control). */
long fxb_text_chars(const char *s, size_t len);

/* The same for a NUL-terminated s of at most max_bytes bytes; -1 when it is
 * longer. */
long fxb_text_chars_max(const char *s, size_t max_bytes);

#endif
