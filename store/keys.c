/* Key building. The character rules are what keep client-supplied ids from
 * forging keys: without ':' '{' '}' an id cannot close its hash tag or
 * reach into another owner's namespace. */
#include "store/keys.h"

#include <string.h>

/* A suffix comes from code, but may embed ids; keep keys short anyway. */
#define KEY_SUFFIX_MAX 200

static bool id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

bool fxb_key_id_valid(const char *id)
{
    if (id == NULL)
        return false;
    size_t n = strnlen(id, FXB_KEY_ID_MAX + 1);
    if (n == 0 || n > FXB_KEY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(id[i]))
            return false;
    return true;
}

static bool suffix_valid(const char *suffix)
{
    if (suffix == NULL)
        return false;
    size_t n = strnlen(suffix, KEY_SUFFIX_MAX + 1);
    if (n == 0 || n > KEY_SUFFIX_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(suffix[i]) && suffix[i] != ':' && suffix[i] != '.')
            return false;
    return true;
}

char *fxb_key_owned(fxb_arena *a, const char *tag, const char *id, const char *suffix)
{
    if (a == NULL || !fxb_key_id_valid(tag) || !fxb_key_id_valid(id) || !suffix_valid(suffix))
        return NULL;
    return fxb_arena_printf(a, "{%s:%s}:%s", tag, id, suffix);
}
