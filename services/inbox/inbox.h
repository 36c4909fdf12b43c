/* fxb.v1.InboxService: a subject's durable inbox of notices (store/inbox.h):
 * list newest first, mark read. Delegable with scope "inbox.read": an agent
 * reads the principal's inbox (a person's, or an enterprise's). */
#ifndef FXB_INBOX_SERVICE_H
#define FXB_INBOX_SERVICE_H

#include "server/handler.h"

extern const fxb_service fxb_inbox_service;

#endif
