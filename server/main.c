/* fxb-server: reads the configuration, checks the store schema, starts the
 * gRPC runtime and the metrics listener, then waits for SIGINT/SIGTERM while
 * watching Redis for the health status. Exit codes: 0 clean stop, 1 runtime
 * failure, 2 bad configuration or usage, 3 store schema mismatch. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <grpc/grpc.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "runtime.h"
#include "auth/authn.h"
#include "auth/keys.h"
#include "auth/revocation.h"
#include "auth/secret.h"
#include "auth/sms.h"
#include "auth/token.h"
#include "services/accessibility/accessibility.h"
#include "services/appointment/appointment.h"
#include "services/auth/auth_service.h"
#include "services/benefit/benefit.h"
#include "services/benefit/engine.h"
#include "services/benefit/profile.h"
#include "services/calendar/calendar.h"
#include "services/catalog/catalog.h"
#include "services/diag/diag.h"
#include "services/enterprise/enterprise.h"
#include "services/filing/filing.h"
#include "services/health/health.h"
#include "services/identity/devkey.h"
#include "services/identity/identity.h"
#include "services/inbox/inbox.h"
#include "services/inbox/push.h"
#include "services/material/material.h"
#include "services/proxy/proxy.h"
#include "services/rating/rating.h"
#include "services/reflection/reflection.h"
#include "services/system/system.h"
#include "store/migrate.h"
#include "store/store.h"

#define MONITOR_PERIOD_MS 500

static void usage(FILE *out)
{
    fprintf(out, "usage: fxb-server [--config FILE] [--help] [--version]\n\n"
                 "Serves the fxb gRPC API. Settings come from FXB_* environment variables,\n"
                 "which override those in --config FILE (KEY=VALUE lines).\n\n");
    fxb_config_print_help(out);
}

/* Parses argv and loads the configuration; returns 0 to go on, or the exit
 * code. */
static int load_config(int argc, char **argv, fxb_config *cfg)
{
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("fxb-server %s\n", FXB_VERSION);
            exit(0);
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        } else {
            fprintf(stderr, "fxb-server: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    fxb_err err;
    fxb_err_clear(&err);
    fxb_config_defaults(cfg);
    if ((file && fxb_config_load_file(cfg, file, &err) != FXB_OK) ||
        fxb_config_load_env(cfg, NULL, &err) != FXB_OK ||
        fxb_config_validate(cfg, &err) != FXB_OK) {
        fprintf(stderr, "fxb-server: %s\n", err.message);
        return 2;
    }
    fxb_store_url url;
    if (fxb_store_url_parse(cfg->redis_url, &url, &err) != FXB_OK) {
        fprintf(stderr, "fxb-server: FXB_REDIS_URL: %s\n", err.message);
        return 2;
    }
    return 0;
}

/* Checks Redis and its schema (one GET, which doubles as the ping); returns
 * whether the server may serve. Logs each change of state once. */
static bool store_ready(fxb_store *st, int *last_state)
{
    fxb_err err;
    int state = 0;
    if (fxb_migrate_check(st, &err) != FXB_OK)
        state = err.code == FXB_UNAVAILABLE ? 1 : 2;
    if (state != *last_state) {
        if (state == 0)
            fxb_log(FXB_LOG_INFO, "redis reachable and schema current: SERVING");
        else if (state == 1)
            fxb_log(FXB_LOG_WARN, "redis unreachable: NOT_SERVING until it returns");
        else
            fxb_log(FXB_LOG_ERROR, "NOT_SERVING: %s", err.message);
    }
    *last_state = state;
    return state == 0;
}

/* What authentication needs: keys, token verifier and cache, revocation
 * feed, field encryption, SMS sender. In development missing key files are
 * created; in production they must have been provisioned (fxb-admin keys). */
typedef struct auth_parts {
    fxb_keyring *keyring;
    fxb_token_verifier *verifier;
    fxb_token_cache *cache;
    fxb_revocation *revocation;
    fxb_crypto *crypto;
    fxb_sms_sender *sms;
    fxb_authn authn;
} auth_parts;

static void auth_parts_free(auth_parts *p)
{
    fxb_revocation_stop(p->revocation);
    fxb_token_cache_free(p->cache);
    fxb_token_verifier_free(p->verifier);
    fxb_keyring_free(p->keyring);
    fxb_crypto_free(p->crypto);
    fxb_sms_free(p->sms);
    memset(p, 0, sizeof *p);
}

static fxb_code auth_parts_init(const fxb_config *cfg, auth_parts *p, fxb_err *err)
{
    memset(p, 0, sizeof *p);
    bool dev = cfg->env == FXB_ENV_DEVELOPMENT;
    char dir[FXB_KEYRING_PATH_MAX];
    if (fxb_keyring_path(cfg->data_dir, dir, sizeof dir, err) != FXB_OK)
        return err->code;
    p->keyring = fxb_keyring_load(dir, err);
    if (p->keyring == NULL && dev && err->code == FXB_NOT_FOUND) {
        if (fxb_keyring_generate(dir, NULL, err) != FXB_OK)
            return err->code;
        fxb_log(FXB_LOG_WARN, "no token signing key: generated one (development)");
        p->keyring = fxb_keyring_load(dir, err);
    }
    if (p->keyring == NULL)
        return err->code;
    char cdir[FXB_CONFIG_STR_MAX + 32];
    snprintf(cdir, sizeof cdir, "%s/%s", cfg->data_dir, FXB_CRYPTO_KEY_SUBDIR);
    p->crypto = fxb_crypto_load(cdir, dev, err);
    if (p->crypto == NULL)
        return err->code;
    fxb_auth_deps deps;
    memset(&deps, 0, sizeof deps);
    if (fxb_secret_load_or_create(cfg->data_dir, deps.secret, dev, err) != FXB_OK)
        return err->code;
    p->verifier = fxb_token_verifier_new(p->keyring, cfg->jwt_issuer, cfg->jwt_audience, err);
    if (p->verifier == NULL)
        return err->code;
    p->cache = fxb_token_cache_new((size_t)cfg->token_cache_entries);
    if (p->cache == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "", "token cache");
    p->revocation = fxb_revocation_start(cfg->redis_url, cfg->redis_connect_timeout_ms, err);
    if (p->revocation == NULL)
        return err->code;
    bool sms_dev = strcmp(cfg->sms, "dev") == 0 || (strcmp(cfg->sms, "auto") == 0 && dev);
    if (sms_dev) {
        fxb_store_options so = {.url = cfg->redis_url,
                                .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                                .command_timeout_ms = cfg->redis_command_timeout_ms};
        p->sms = fxb_sms_dev_new(&so, !dev, err);
        if (p->sms == NULL)
            return err->code;
    }
    deps.keyring = p->keyring;
    deps.cache = p->cache;
    deps.revocation = p->revocation;
    deps.crypto = p->crypto;
    deps.sms = p->sms;
    fxb_otp_params_init(&deps.otp, deps.secret);
    deps.otp.daily_limit_phone = cfg->otp_daily_phone;
    deps.otp.daily_limit_ip = cfg->otp_daily_ip;
    deps.issuer = cfg->jwt_issuer;
    deps.audience = cfg->jwt_audience;
    deps.access_ttl_s = cfg->access_ttl_s;
    fxb_auth_service_init(&deps);
    memset(deps.secret, 0, sizeof deps.secret);
    p->authn.verifier = p->verifier;
    p->authn.cache = p->cache;
    p->authn.revocation = p->revocation;
    return FXB_OK;
}

/* Identity verification: the face-verification provider's pinned public
 * keys from <FXB_DATA_DIR>/keys/ekyc (<kid>.pub.pem; the dev key of
 * fxb-ekyc-sim only outside production, a production directory holding it
 * refuses to start) and the population registry (the dev registry until
 * the national service is plugged in). In development a missing key is
 * generated; in production without keys the service runs but
 * CompleteVerification answers UNAVAILABLE. */
static fxb_code identity_parts_init(const fxb_config *cfg, const fxb_crypto *crypto,
                                    fxb_attestation_verifier **out, fxb_err *err)
{
    *out = NULL;
    bool dev = cfg->env == FXB_ENV_DEVELOPMENT;
    fxb_attestation_verifier *v = fxb_attestation_verifier_new(dev, err);
    if (v == NULL)
        return err->code;
    char dir[FXB_CONFIG_STR_MAX + 32];
    snprintf(dir, sizeof dir, "%s/keys/ekyc", cfg->data_dir);
    fxb_code rc = fxb_attestation_verifier_load_dir(v, dir, err);
    if (rc == FXB_NOT_FOUND && dev) {
        /* as for the token key: development makes what it lacks */
        if (fxb_ekyc_dev_keygen(dir, err) != FXB_OK) {
            fxb_attestation_verifier_free(v);
            return err->code;
        }
        /* expected on every fresh development store: not a warning */
        fxb_log(FXB_LOG_INFO,
                "no eKYC provider key: generated the simulator's dev key pair "
                "in %s (development)",
                dir);
        rc = fxb_attestation_verifier_load_dir(v, dir, err);
    }
    if (rc != FXB_OK) {
        fxb_attestation_verifier_free(v);
        if (err->code != FXB_NOT_FOUND)
            return err->code;
        fxb_log(FXB_LOG_WARN,
                "no face-verification provider keys in %s: identity verification "
                "unavailable",
                dir);
        v = NULL;
    }
    fxb_identity_deps deps = {.verifier = v,
                              .crypto = crypto,
                              .registry = fxb_registry_dev(crypto),
                              .min_score = cfg->ekyc_min_score};
    fxb_identity_service_init(&deps);
    *out = v;
    return FXB_OK;
}

int main(int argc, char **argv)
{
    fxb_config cfg;
    int rc = load_config(argc, argv, &cfg);
    if (rc != 0)
        return rc;
    fxb_log_set_level(cfg.log_level);

    /* Every client connection is a descriptor: allow as many as permitted. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* Signals are taken synchronously by this thread only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    fxb_err err;
    fxb_err_clear(&err);
    fxb_store_options so = {.url = cfg.redis_url,
                            .connect_timeout_ms = cfg.redis_connect_timeout_ms,
                            .command_timeout_ms = cfg.redis_command_timeout_ms};
    fxb_store *monitor = fxb_store_new(&so, &err);
    if (monitor == NULL) {
        fprintf(stderr, "fxb-server: %s\n", err.message);
        return 2;
    }
    /* A reachable store on the wrong schema is an operator error: refuse to
     * start. An unreachable one is checked again when it returns. */
    if (fxb_store_ping(monitor) && fxb_migrate_check(monitor, &err) != FXB_OK) {
        fxb_log(FXB_LOG_ERROR, "%s", err.message);
        fprintf(stderr, "fxb-server: %s\n", err.message);
        fxb_store_free(monitor);
        return 3;
    }

    auth_parts auth;
    if (auth_parts_init(&cfg, &auth, &err) != FXB_OK) {
        fxb_log(FXB_LOG_ERROR, "authentication setup failed: %s", err.message);
        fprintf(stderr, "fxb-server: %s\n", err.message);
        auth_parts_free(&auth);
        fxb_store_free(monitor);
        return 2;
    }

    fxb_attestation_verifier *ekyc = NULL;
    if (identity_parts_init(&cfg, auth.crypto, &ekyc, &err) != FXB_OK) {
        fxb_log(FXB_LOG_ERROR, "identity verification setup failed: %s", err.message);
        fprintf(stderr, "fxb-server: %s\n", err.message);
        auth_parts_free(&auth);
        fxb_store_free(monitor);
        return 2;
    }

    /* enterprises: the dev registry until the market regulation service is
     * plugged in */
    fxb_enterprise_deps ent = {.crypto = auth.crypto, .registry = fxb_entreg_dev()};
    fxb_enterprise_service_init(&ent);
    fxb_proxy_deps proxy = {.crypto = auth.crypto};
    fxb_proxy_service_init(&proxy);
    fxb_material_deps material = {
        .crypto = auth.crypto, .data_dir = cfg.data_dir, .max_upload_bytes = cfg.upload_max_bytes};
    fxb_material_service_init(&material);
    fxb_filing_deps filing = {.crypto = auth.crypto};
    fxb_filing_service_init(&filing);
    fxb_profile_deps profile = {.crypto = auth.crypto};
    fxb_profile_service_init(&profile);
    fxb_benefit_deps benefit = {.crypto = auth.crypto};
    fxb_benefit_service_init(&benefit);

    grpc_init();
    fxb_sweeper *sweeper = NULL;
    fxb_server *srv = fxb_server_new(&cfg, &err);
    if (srv)
        fxb_server_set_authenticator(srv, fxb_authn_authenticate, &auth.authn);
    static const fxb_delegation_ops delegation = {.check_item = fxb_authn_check_item,
                                                  .record = fxb_authn_record_act};
    if (srv)
        fxb_server_set_delegation(srv, &delegation, &auth.authn);
    /* diag last: it is left out when off */
    const fxb_service *services[] = {
        &fxb_system_service,      &fxb_health_service,        &fxb_reflection_service,
        &fxb_auth_service,        &fxb_accessibility_service, &fxb_identity_service,
        &fxb_enterprise_service,  &fxb_proxy_service,         &fxb_inbox_service,
        &fxb_catalog_service,     &fxb_calendar_service,      &fxb_material_service,
        &fxb_filing_service,      &fxb_officer_service,       &fxb_rating_service,
        &fxb_appointment_service, &fxb_profile_service,       &fxb_benefit_service,
        &fxb_diag_service};
    size_t n_services = sizeof services / sizeof services[0] - (cfg.diag ? 0 : 1);
    const char *paths[FXB_MAX_METHODS];
    size_t n_paths = 0;
    for (size_t i = 0; srv && i < n_services; i++) {
        if (fxb_server_add_service(srv, services[i], &err) != FXB_OK)
            goto fail;
        for (size_t j = 0; j < services[i]->n_methods; j++)
            paths[n_paths++] = services[i]->methods[j].path;
    }
    if (srv == NULL)
        goto fail;
    const char *names[FXB_MAX_SERVICES];
    size_t n_names = fxb_server_service_names(srv, names, FXB_MAX_SERVICES);
    if (fxb_health_init(names, n_names) != FXB_OK) {
        fxb_err_set(&err, FXB_INTERNAL, "INIT_FAILED", "", "cannot initialise health service");
        goto fail;
    }
    if (fxb_reflection_init(names, n_names, &err) != FXB_OK)
        goto fail;
    if (fxb_metrics_init(n_paths, paths) != FXB_OK) {
        fxb_err_set(&err, FXB_INTERNAL, "INIT_FAILED", "", "cannot initialise metrics");
        goto fail;
    }
    fxb_metrics_set_redis_errors_source(fxb_store_error_count);
    if (strcmp(cfg.metrics_listen, "off") != 0 &&
        fxb_metrics_listen(cfg.metrics_listen, &err) != FXB_OK)
        goto fail;
    if (fxb_server_start(srv, &err) != FXB_OK)
        goto fail;
    /* ends applications whose fix / supplement / rectify deadline passed */
    fxb_err_clear(&err);
    sweeper = fxb_sweeper_start(&cfg, cfg.sweep_interval_ms, &err);
    if (sweeper == NULL && err.code != FXB_OK)
        goto fail;
    /* live inbox delivery across servers, and the vendor-push outbox */
    if (fxb_inbox_push_start(&cfg, &err) != FXB_OK)
        goto fail;
    /* continuous benefit matching (one leader per Redis) */
    if (cfg.benefit_engine && fxb_engine_start(&cfg, cfg.benefit_recheck_ms, &err) != FXB_OK)
        goto fail;

    int last_state = -1;
    fxb_health_set_serving(store_ready(monitor, &last_state));
    fxb_log(FXB_LOG_INFO, "fxb-server %s listening on %s (port %d), %d workers, env %s",
            FXB_VERSION, cfg.listen, fxb_server_port(srv), cfg.workers,
            cfg.env == FXB_ENV_PRODUCTION ? "production" : "development");

    for (;;) {
        struct timespec ts = {MONITOR_PERIOD_MS / 1000, (MONITOR_PERIOD_MS % 1000) * 1000000L};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            fxb_log(FXB_LOG_INFO, "signal %d: shutting down (grace %d ms)", sig, cfg.grace_ms);
            break;
        }
        fxb_health_set_serving(store_ready(monitor, &last_state));
    }

    fxb_health_shutdown();
    fxb_engine_stop();
    fxb_inbox_push_stop();
    fxb_sweeper_stop(sweeper);
    sweeper = NULL;
    fxb_server_shutdown(srv, cfg.grace_ms);
    rc = 0;
    goto teardown;

fail:
    fxb_log(FXB_LOG_ERROR, "start-up failed: %s", err.message);
    fprintf(stderr, "fxb-server: %s\n", err.message);
    rc = 1;
teardown:
    /* one order for both exits: server first, then what its calls used */
    fxb_sweeper_stop(sweeper);
    fxb_engine_stop();
    fxb_inbox_push_stop();
    fxb_server_free(srv);
    fxb_catalog_cache_clear();
    fxb_metrics_stop();
    fxb_metrics_shutdown();
    fxb_reflection_shutdown();
    fxb_health_cleanup();
    auth_parts_free(&auth);
    fxb_attestation_verifier_free(ekyc);
    fxb_store_free(monitor);
    grpc_shutdown();
    if (rc == 0)
        fxb_log(FXB_LOG_INFO, "stopped");
    return rc;
}
