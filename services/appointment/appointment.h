/* fxb.v1.AppointmentService (proto/fxb/v1/appointment.proto): hall visit
 * slots per department on working days, bookings, the green channel. */
#ifndef FXB_APPOINTMENT_SERVICE_H
#define FXB_APPOINTMENT_SERVICE_H

#include "server/handler.h"

extern const fxb_service fxb_appointment_service;

#endif
