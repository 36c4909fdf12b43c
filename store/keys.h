/* The key schema of fxb, in one place. Keys of one owner share a hash tag
 * ({u:<id>}) so that Redis Cluster keeps them in one slot and scripts over
 * them stay legal. Ids put into keys are validated: a key built from client
 * input can never reach another owner's keys. */
#ifndef FXB_KEYS_H
#define FXB_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "server/arena.h"

#define FXB_KEY_ID_MAX 64

/* The applied schema version (string integer). */
#define FXB_KEY_SCHEMA_VERSION "fxb:schema:version"
/* Server facts written by migrations (hash). */
#define FXB_KEY_META "fxb:meta"

/* True when id is 1..FXB_KEY_ID_MAX characters of [A-Za-z0-9_-]. */
bool fxb_key_id_valid(const char *id);

/* "{<tag>:<id>}:<suffix>" allocated in the arena, e.g.
 * fxb_key_owned(a, "u", "42", "sessions") -> "{u:42}:sessions". Returns NULL
 * when tag/id is invalid, suffix is empty or has characters outside
 * [A-Za-z0-9_:.-], or on allocation failure. */
char *fxb_key_owned(fxb_arena *a, const char *tag, const char *id, const char *suffix);

#endif
