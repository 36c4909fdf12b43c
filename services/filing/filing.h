/* fxb.v1.FilingService (proto/fxb/v1/filing.proto): the applicant's side
 * of applications; fxb.v1.OfficerService (proto/fxb/v1/officer.proto): the
 * department officers' side. Both over services/filing/application.h. */
#ifndef FXB_FILING_SERVICE_H
#define FXB_FILING_SERVICE_H

#include "server/config.h"
#include "server/handler.h"
#include "store/crypto.h"

typedef struct fxb_filing_deps {
    const fxb_crypto *crypto; /* licence numbers of completed applications */
} fxb_filing_deps;

void fxb_filing_service_init(const fxb_filing_deps *deps);

/* The data keys given to fxb_filing_service_init (NULL before), for the
 * officer side's licence results. */
const fxb_crypto *fxb_filing_crypto(void);

/* The sweeper thread (its own store connection): every interval_ms runs
 * fxb_app_sweep. Started after the server, stopped before it is freed. */
typedef struct fxb_sweeper fxb_sweeper;
fxb_sweeper *fxb_sweeper_start(const fxb_config *cfg, int interval_ms, fxb_err *err);
void fxb_sweeper_stop(fxb_sweeper *sw);

extern const fxb_service fxb_filing_service;
extern const fxb_service fxb_officer_service;

#endif
