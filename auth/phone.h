/* Mainland China mobile numbers: validation, normalisation to the bare
 * 11-digit form every other module keys on, masking for display and logs,
 * the keyed tag that stands in for the number in Redis keys, and the client
 * address taken from a gRPC peer string (for per-address limits). */
#ifndef FXB_PHONE_H
#define FXB_PHONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/secret.h"
#include "server/status.h"

/* Digits of a normalised number; buffers hold FXB_PHONE_LEN + 1 bytes. */
#define FXB_PHONE_LEN 11
/* Longest accepted input: "+86" + 11 digits. Longer input is rejected after
 * looking at no more than FXB_PHONE_INPUT_MAX + 1 bytes. */
#define FXB_PHONE_INPUT_MAX 14
/* Hex digits of the phone tag used in key hash tags ({p:<tag>}). */
#define FXB_PHONE_TAG_LEN 16
/* Longest address fxb_peer_ip writes, NUL included (an IPv6 text form is at
 * most 45 bytes, a zone id is not kept). */
#define FXB_PEER_IP_MAX 64

/* fxb_err reason of a malformed number (FXB_INVALID_ARGUMENT). */
#define FXB_PHONE_INVALID "PHONE_INVALID"

/* True when s is exactly 11 ASCII digits matching 1[3-9][0-9]{9}, with no
 * prefix, spaces or anything else. NULL gives false. */
bool fxb_phone_valid(const char *s);

/* Accepts the bare form, "+86" + bare form or "86" + bare form (nothing
 * else: no spaces, dashes or full-width digits) and writes the bare form
 * into out. Returns FXB_OK, or FXB_INVALID_ARGUMENT reason PHONE_INVALID
 * with out set to "" (also for NULL in or out). Reads at most
 * FXB_PHONE_INPUT_MAX + 1 bytes of in. */
fxb_code fxb_phone_normalize(const char *in, char out[FXB_PHONE_LEN + 1], fxb_err *err);

/* "13812345678" (or an accepted prefixed form) -> "138****5678". Anything
 * that does not normalise gives "*" and false: never show part of something
 * unrecognised. */
bool fxb_phone_mask(const char *phone, char out[FXB_PHONE_LEN + 1]);

/* The first FXB_PHONE_TAG_LEN hex digits of HMAC-SHA256(secret, "fxb/phone",
 * bare number): what Redis keys carry instead of the number ({p:<tag>}).
 * 64 bits: a clash needs about 4e9 numbers live at once (keys expire within a
 * day); a clash merges two numbers' rate limits, never their codes, whose
 * hashes include the number. False (out "") when phone is not a valid bare
 * number or OpenSSL fails. */
bool fxb_phone_tag(const uint8_t secret[FXB_SECRET_LEN], const char *phone,
                   char out[FXB_PHONE_TAG_LEN + 1]);

/* The address of a gRPC peer string, without the port, in canonical text
 * form: "ipv4:1.2.3.4:5678" -> "1.2.3.4"; "ipv6:[::1]:5678" and the
 * percent-encoded "ipv6:%5B::1%5D:5678" (gRPC >= 1.48) -> "::1" (a zone id
 * "%25eth0" is dropped). "unix:..." and "unix-abstract:..." give "unix" (all
 * local peers share it). Anything else gives "" and false. Reads at most a
 * bounded prefix of peer. */
bool fxb_peer_ip(const char *peer, char out[FXB_PEER_IP_MAX]);

#endif
