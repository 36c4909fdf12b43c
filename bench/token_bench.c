/* fxb-bench-token: what checking one access token costs, per path, in one
 * run on this machine.
 *
 *   libjwt ES256 jwt_decode   the reference: libjwt 1.10 with the public PEM
 *                             (parses the PEM on every call). A libjwt-made
 *                             token with typ "JWT": libjwt refuses "at+jwt".
 *   fxb verify (miss)         fxb_token_verify, the complete check: header,
 *                             OpenSSL ECDSA with the pre-parsed key, claims
 *   fxb check (cache hit)     fxb_token_check over 1,000 distinct live tokens
 *                             in rotation, all cached
 *   fxb check (hit, N thr)    the same from N threads at once (ops/s summed)
 *   libjwt HS256 jwt_decode   reference for a symmetric key
 *   fxb sign                  fxb_token_sign (OpenSSL, pre-parsed key)
 *
 * Usage: fxb-bench-token [--quick] [THREADS]   (THREADS default 4)
 * Build with CMAKE_BUILD_TYPE=Release and without FXB_SANITIZE for figures
 * worth quoting. Keys are generated into a temporary directory and removed;
 * no token or key is printed. */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>

#include "auth/keys.h"
#include "auth/token.h"

#define ISS         "https://id.fxb.example"
#define AUD         "fxb-api"
#define LIVE_TOKENS 1000
#define MAX_THREADS 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *name, long ops, double secs, int threads)
{
    /* µs/op is wall time per op per thread; ops/s is the total rate. */
    double us = secs * 1e6 / (double)ops * threads;
    printf("%-28s %10ld ops %11.2f us/op %13.0f ops/s\n", name, ops, us, (double)ops / secs);
}

static void die(const char *what, const fxb_err *err)
{
    fprintf(stderr, "fxb-bench-token: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static fxb_token_params params(int64_t now, int i)
{
    fxb_token_params p;
    memset(&p, 0, sizeof(p));
    p.issuer = ISS;
    p.audience = AUD;
    snprintf(p.claims.sub, sizeof(p.claims.sub), "u_%d", 100000 + i);
    snprintf(p.claims.sid, sizeof(p.claims.sid), "s-%d", i);
    fxb_token_new_id(p.claims.jti, NULL);
    p.claims.iat = now;
    p.claims.nbf = now;
    p.claims.exp = now + 900;
    p.claims.auth_time = now - 60;
    p.claims.acr = 2;
    p.claims.roles = FXB_ROLE_CITIZEN;
    snprintf(p.claims.dept, sizeof(p.claims.dept), "civil_affairs");
    return p;
}

/* A libjwt-made token with the same claims (typ "JWT", as libjwt insists). */
static char *libjwt_token(jwt_alg_t alg, const unsigned char *key, int key_len, int64_t now)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0 || jwt_set_alg(jwt, alg, key, key_len) != 0)
        die("libjwt setup", NULL);
    char grants[512];
    snprintf(grants, sizeof(grants),
             "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"u_100000\",\"sid\":\"s-0\",\"jti\":\"j\","
             "\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,\"auth_time\":%lld,\"acr\":2,"
             "\"roles\":[\"citizen\"],\"dept\":\"civil_affairs\"}",
             ISS, AUD, (long long)now, (long long)now, (long long)now + 900, (long long)now - 60);
    jwt_add_header(jwt, "kid", "bench");
    if (jwt_add_grants_json(jwt, grants) != 0)
        die("libjwt grants", NULL);
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (tok == NULL)
        die("libjwt encode", NULL);
    return tok;
}

typedef struct {
    fxb_token_cache *cache;
    const fxb_token_verifier *v;
    char **toks;
    int64_t now;
    long ops;
    long failures;
    int offset;
} hit_arg;

static void *hit_loop(void *p)
{
    hit_arg *a = p;
    fxb_token_claims c;
    fxb_err err;
    for (long i = 0; i < a->ops; i++) {
        const char *t = a->toks[(i + a->offset) % LIVE_TOKENS];
        if (fxb_token_check(a->cache, a->v, t, a->now, &c, &err) != FXB_OK)
            a->failures++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int quick = 0;
    int threads = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else
            threads = atoi(argv[i]);
    }
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "usage: fxb-bench-token [--quick] [THREADS 1..%d]\n", MAX_THREADS);
        return 2;
    }
    long scale = quick ? 10 : 1;

    char base[] = "/tmp/fxb-bench-token.XXXXXX";
    if (mkdtemp(base) == NULL)
        die("mkdtemp", NULL);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/keys/jwt", base);
    fxb_err err;
    if (fxb_keyring_generate(dir, NULL, &err) != FXB_OK)
        die("generate", &err);
    fxb_keyring *ring = fxb_keyring_load(dir, &err);
    if (ring == NULL)
        die("load", &err);
    fxb_token_verifier *v = fxb_token_verifier_new(ring, ISS, AUD, &err);
    if (v == NULL)
        die("verifier", &err);
    int64_t now = (int64_t)time(NULL);
    const fxb_key *key = fxb_keyring_active(ring);
    size_t pub_len = 0;
    size_t priv_len = 0;
    const char *pub = fxb_key_public_pem(key, &pub_len);
    const char *priv = fxb_key_private_pem(key, &priv_len);

    printf("fxb-bench-token: %d thread(s) for the concurrent row%s\n", threads,
           quick ? ", quick" : "");
    printf("%-28s %14s %17s %19s\n", "path", "ops", "us/op", "ops/s");

    /* (a) libjwt ES256. */
    char *es = libjwt_token(JWT_ALG_ES256, (const unsigned char *)priv, (int)priv_len, now);
    long n = 2000 / scale;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        jwt_t *jwt = NULL;
        if (jwt_decode(&jwt, es, (const unsigned char *)pub, (int)pub_len) != 0 ||
            jwt_get_alg(jwt) != JWT_ALG_ES256)
            die("libjwt ES256 decode", NULL);
        jwt_free(jwt);
    }
    report("libjwt ES256 jwt_decode", n, now_s() - t0, 1);
    free(es);

    /* (b) the complete verification, as on a cache miss. */
    fxb_token_params p = params(now, 0);
    char *tok = NULL;
    if (fxb_token_sign(ring, &p, &tok, &err) != FXB_OK)
        die("sign", &err);
    fxb_token_claims c;
    n = 20000 / scale;
    t0 = now_s();
    for (long i = 0; i < n; i++) {
        if (fxb_token_verify(v, tok, now, &c, &err) != FXB_OK)
            die("verify", &err);
    }
    report("fxb verify (miss path)", n, now_s() - t0, 1);
    printf("%-28s %d bytes\n", "  token length", (int)strlen(tok));
    free(tok);

    /* (c) cache hits over 1,000 live tokens. */
    char **toks = calloc(LIVE_TOKENS, sizeof(char *));
    fxb_token_cache *cache = fxb_token_cache_new(0);
    if (toks == NULL || cache == NULL)
        die("alloc", NULL);
    n = LIVE_TOKENS;
    t0 = now_s();
    for (int i = 0; i < LIVE_TOKENS; i++) {
        p = params(now, i);
        if (fxb_token_sign(ring, &p, &toks[i], &err) != FXB_OK)
            die("sign", &err);
    }
    report("fxb sign", n, now_s() - t0, 1);
    t0 = now_s();
    for (int i = 0; i < LIVE_TOKENS; i++) {
        if (fxb_token_check(cache, v, toks[i], now, &c, &err) != FXB_OK)
            die("check (fill)", &err);
    }
    report("fxb check (miss + insert)", LIVE_TOKENS, now_s() - t0, 1);
    hit_arg one = {.cache = cache, .v = v, .toks = toks, .now = now, .ops = 2000000 / scale};
    t0 = now_s();
    hit_loop(&one);
    report("fxb check (cache hit)", one.ops, now_s() - t0, 1);

    pthread_t th[MAX_THREADS];
    hit_arg args[MAX_THREADS];
    t0 = now_s();
    for (int i = 0; i < threads; i++) {
        args[i] = (hit_arg){.cache = cache,
                            .v = v,
                            .toks = toks,
                            .now = now,
                            .ops = 1000000 / scale,
                            .offset = i * (LIVE_TOKENS / threads)};
        pthread_create(&th[i], NULL, hit_loop, &args[i]);
    }
    long total = 0;
    long failures = one.failures;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += args[i].ops;
        failures += args[i].failures;
    }
    char name[64];
    snprintf(name, sizeof(name), "fxb check (hit, %d thr)", threads);
    report(name, total, now_s() - t0, threads);
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    printf("%-28s hits %llu, misses %llu, entries %zu, verifications %llu, failures %ld\n",
           "  cache", (unsigned long long)st.hits, (unsigned long long)st.misses, st.entries,
           (unsigned long long)fxb_token_verifier_count(v), failures);

    /* (d) libjwt HS256, the symmetric reference. */
    static const unsigned char secret[32] = "0123456789abcdef0123456789abcdef";
    char *hs = libjwt_token(JWT_ALG_HS256, secret, (int)sizeof(secret), now);
    n = 200000 / scale;
    t0 = now_s();
    for (long i = 0; i < n; i++) {
        jwt_t *jwt = NULL;
        if (jwt_decode(&jwt, hs, secret, (int)sizeof(secret)) != 0 ||
            jwt_get_alg(jwt) != JWT_ALG_HS256)
            die("libjwt HS256 decode", NULL);
        jwt_free(jwt);
    }
    report("libjwt HS256 jwt_decode", n, now_s() - t0, 1);
    free(hs);

    for (int i = 0; i < LIVE_TOKENS; i++)
        free(toks[i]);
    free(toks);
    fxb_token_cache_free(cache);
    fxb_token_verifier_free(v);
    fxb_keyring_free(ring);
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failures == 0 ? 0 : 1;
}
