/* Text checks shared by every service that stores what clients type
 * (purposes, reasons, notes, comments, names): characters are counted in
 * Unicode code points, and text must be well-formed UTF-8 — no overlong
 * forms, surrogates or values past U+10FFFF — without control characters:
 * C0, DEL, C1, the line and paragraph separators, and the bidirectional
 * controls that would make a text read otherwise than it is (so it can be
 * shown as is and sent as a proto3 string). */
#ifndef FXB_TEXT_H
#define FXB_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes one well-formed UTF-8 character at s (n bytes left) into *cp;
 * returns its length in bytes, or 0 when the bytes there are not one. */
size_t fxb_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

/* True for the control characters named above. */
bool fxb_text_is_control(uint32_t cp);

/* The characters of s[0..len), or -1 when the bytes break a rule above (an
 * embedded NUL is a control). */
long fxb_text_chars(const char *s, size_t len);

/* The same for a NUL-terminated s of at most max_bytes bytes; -1 when it is
 * longer. */
long fxb_text_chars_max(const char *s, size_t max_bytes);

/* True for min..max characters of such text (NULL counts as ""): the check
 * of a free-text field of a request. */
bool fxb_text_ok(const char *s, long min, long max);

#endif
