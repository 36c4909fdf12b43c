/* fxb.v1.RatingService (proto/fxb/v1/rating.proto): 好差评 per application,
 * follow-up cases of bad real-name ratings, public aggregates. */
#ifndef FXB_RATING_SERVICE_H
#define FXB_RATING_SERVICE_H

#include "server/handler.h"
#include "store/store.h"

/* Sends the rating invitation for an application that just ended (called
 * by services/filing/application.c on every transition into an ended
 * status). Best effort: failures are logged. */
void fxb_rating_invite(fxb_store *s, const char *aid, const char *subject, const char *item_name,
                       int64_t now_ms);

extern const fxb_service fxb_rating_service;

#endif
