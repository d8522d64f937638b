// The portable core of the iotgw collectors: no Arduino headers, tested on the host with g++.
#ifndef IOTGW_H
#define IOTGW_H

#include "broker_choice.h"
#include "collector.h"
#include "crc16.h"
#include "ds1307.h"
#include "iotgw_out.h"
#include "pair.h"
#include "protocol.h"
#include "record_log.h"
#include "reset_reason.h"
#include "rtc.h"
#include "storage.h"
#include "timing.h"

#endif
