/* placeholder: replaced by the calendar implementation */
#include "services/calendar/calendar.h"

#include <stddef.h>

const fxb_service fxb_calendar_service = {"fxb.v1.CalendarService", NULL, 0};
