// Compile check of the board glue that only registry builds compile (SD card, MQTT): catches type and
// API mistakes on the host. Built with -fsyntax-only against stubs/ (declarations only).
#include "mqtt_link.h"
#include "sd_storage.h"

static iotgw::NodeConfig cfg = {"ft-1", "a", "V"};
void glue_check(PubSubClient& client, iotgw::Record& r, iotgw::Ack* ack) {
  iotgw::MqttLink link(client, cfg);
  link.begin();
  iotgw::Status st = {1, iotgw::kRoleSingle, 0, 38, 0, iotgw::kResetPower, 0, iotgw::kClockRtc, 5000};
  link.connect(st);
  link.send_status(st);
  link.send_reading(cfg, r, false);
  link.ack_from("iot/site-1/ft-1/ack", reinterpret_cast<const uint8_t*>("{}"), 2, ack);
  iotgw::SdStorage sd;
  sd.begin(4, "IOTGW.LOG", 65536UL);
  iotgw::RecordLog log(sd, 0, sd.size());
  log.open();
}
