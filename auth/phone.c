/* Phone numbers are the citizen's identifier and personal data: this file
 * is the only place that decides what a number looks like, so that every
 * key, hash and mask is computed from one normal form. */
#include "auth/phone.h"

#include <arpa/inet.h>
#include <string.h>

/* Longest peer string looked at; real ones are under 70 bytes. */
#define PEER_MAX 256

#define ZH_PHONE_INVALID "手机号码格式不正确"

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

bool fxb_phone_valid(const char *s)
{
    if (s == NULL || strnlen(s, FXB_PHONE_LEN + 1) != FXB_PHONE_LEN)
        return false;
    if (s[0] != '1' || s[1] < '3' || s[1] > '9')
        return false;
    for (size_t i = 2; i < FXB_PHONE_LEN; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

fxb_code fxb_phone_normalize(const char *in, char out[FXB_PHONE_LEN + 1], fxb_err *err)
{
    if (out != NULL)
        out[0] = '\0';
    const char *bare = NULL;
    if (in != NULL && out != NULL) {
        size_t n = strnlen(in, FXB_PHONE_INPUT_MAX + 1);
        if (n == FXB_PHONE_LEN)
            bare = in;
        else if (n == FXB_PHONE_LEN + 3 && strncmp(in, "+86", 3) == 0)
            bare = in + 3;
        else if (n == FXB_PHONE_LEN + 2 && strncmp(in, "86", 2) == 0)
            bare = in + 2;
    }
    if (bare == NULL || !fxb_phone_valid(bare))
        return fxb_err_set(
            err, FXB_INVALID_ARGUMENT, FXB_PHONE_INVALID, ZH_PHONE_INVALID,
            "phone must be a mainland China mobile number: 11 digits 1[3-9]XXXXXXXXX,"
            " optionally prefixed by +86 or 86, without spaces or dashes");
    memcpy(out, bare, FXB_PHONE_LEN + 1);
    return FXB_OK;
}

bool fxb_phone_mask(const char *phone, char out[FXB_PHONE_LEN + 1])
{
    char bare[FXB_PHONE_LEN + 1];
    if (out == NULL)
        return false;
    if (fxb_phone_normalize(phone, bare, NULL) != FXB_OK) {
        memcpy(out, "*", 2);
        return false;
    }
    memcpy(out, bare, 3);
    memcpy(out + 3, "****", 4);
    memcpy(out + 7, bare + 7, 5); /* last four digits and the NUL */
    return true;
}

bool fxb_phone_tag(const uint8_t secret[FXB_SECRET_LEN], const char *phone,
                   char out[FXB_PHONE_TAG_LEN + 1])
{
    char hex[FXB_HMAC_HEX_LEN + 1];
    if (out == NULL)
        return false;
    out[0] = '\0';
    if (secret == NULL || !fxb_phone_valid(phone) ||
        !fxb_hmac_hex(secret, "fxb/phone", phone, FXB_PHONE_LEN, hex))
        return false;
    memcpy(out, hex, FXB_PHONE_TAG_LEN);
    out[FXB_PHONE_TAG_LEN] = '\0';
    return true;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes src into dst (cap bytes, NUL included). False on a bad
 * escape, an encoded NUL or when it does not fit. */
static bool percent_decode(const char *src, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; src[i] != '\0'; i++) {
        char ch = src[i];
        if (ch == '%') {
            int hi = hex_value(src[i + 1]);
            int lo = hi < 0 ? -1 : hex_value(src[i + 2]);
            if (lo < 0 || (hi == 0 && lo == 0))
                return false;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return true;
}

/* ":<port>" with 1..5 digits, value 0..65535, and nothing after. */
static bool port_valid(const char *p)
{
    if (*p++ != ':')
        return false;
    size_t n = strspn(p, "0123456789");
    if (n == 0 || n > 5 || p[n] != '\0')
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (p[i] - '0');
    return v <= 65535;
}

static bool ip_from_v4(const char *addr_port, char out[FXB_PEER_IP_MAX])
{
    const char *colon = strrchr(addr_port, ':');
    char addr[INET_ADDRSTRLEN];
    size_t n = colon == NULL ? 0 : (size_t)(colon - addr_port);
    if (n == 0 || n >= sizeof addr || !port_valid(colon))
        return false;
    memcpy(addr, addr_port, n);
    addr[n] = '\0';
    struct in_addr a;
    return inet_pton(AF_INET, addr, &a) == 1 &&
           inet_ntop(AF_INET, &a, out, FXB_PEER_IP_MAX) != NULL;
}

static bool ip_from_v6(const char *encoded, char out[FXB_PEER_IP_MAX])
{
    char text[PEER_MAX + 1];
    if (!percent_decode(encoded, text, sizeof text))
        return false;
    const char *start = text;
    const char *end; /* one past the address */
    const char *port;
    if (text[0] == '[') {
        start = text + 1;
        end = strchr(start, ']');
        if (end == NULL)
            return false;
        port = end + 1;
    } else {
        /* Old gRPC wrote "ipv6:::1:5678": the port follows the last ':'. */
        end = strrchr(text, ':');
        if (end == NULL)
            return false;
        port = end;
    }
    if (!port_valid(port))
        return false;
    const char *zone = memchr(start, '%', (size_t)(end - start));
    if (zone != NULL)
        end = zone;
    char addr[INET6_ADDRSTRLEN];
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= sizeof addr)
        return false;
    memcpy(addr, start, n);
    addr[n] = '\0';
    struct in6_addr a;
    if (inet_pton(AF_INET6, addr, &a) != 1)
        return false;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: one
         * client, one address, whichever socket it came through. */
        struct in_addr v4;
        memcpy(&v4, &a.s6_addr[12], sizeof v4);
        return inet_ntop(AF_INET, &v4, out, FXB_PEER_IP_MAX) != NULL;
    }
    return inet_ntop(AF_INET6, &a, out, FXB_PEER_IP_MAX) != NULL;
}

bool fxb_peer_ip(const char *peer, char out[FXB_PEER_IP_MAX])
{
    if (out == NULL)
        return false;
    out[0] = '\0';
    if (peer == NULL || strnlen(peer, PEER_MAX + 1) > PEER_MAX)
        return false;
    bool ok = false;
    if (strncmp(peer, "ipv4:", 5) == 0) {
        ok = ip_from_v4(peer + 5, out);
    } else if (strncmp(peer, "ipv6:", 5) == 0) {
        ok = ip_from_v6(peer + 5, out);
    } else if (strncmp(peer, "unix:", 5) == 0 || strncmp(peer, "unix-abstract:", 14) == 0) {
        memcpy(out, "unix", 5);
        ok = true;
    }
    if (!ok)
        out[0] = '\0';
    return ok;
}
