// Readings over MQTT (Ethernet shield + PubSubClient), compiled only in the PlatformIO environments that
// fetch those libraries (IOTGW_WITH_MQTT). PubSubClient publishes at QoS 0 and holds one packet; that is
// safe because a record leaves the cache only on the gateway's end-to-end ack (protocol section 5).
#ifndef IOTGW_MQTT_LINK_H
#define IOTGW_MQTT_LINK_H

#include <PubSubClient.h>

#include "iotgw.h"
#include "iotgw_config.h"

namespace iotgw {

class MqttLink : public ReadingLink {
 public:
  MqttLink(PubSubClient& client, const NodeConfig& cfg) : client_(client), cfg_(cfg) {}

  // Topics: P/<site>/<device>/{reading,status,ack}.
  void begin() {
    topic(reading_, "/reading");
    topic(status_, "/status");
    topic(ack_, "/ack");
  }
  bool connected() override { return client_.connected(); }
  // Connects (with IOTGW_MQTT_USER/IOTGW_MQTT_PASSWORD when set: the device credentials of the broker's
  // ACL) with the status topic as last will, subscribes to the acks and publishes the status. Call when
  // !connected().
  bool connect(const Status& st) {
    char will[80];  // {"v":1,"dev":<32>,"node":<16>,"state":"offline"}: 76 bytes at most
    BufferOut w(will, sizeof will);
    w.str("{\"v\":1,\"dev\":\"");
    w.str(cfg_.dev);
    w.str("\",\"node\":\"");
    w.str(cfg_.node);
    w.str("\",\"state\":\"offline\"}");
    char id[50];
    BufferOut i(id, sizeof id);
    i.str(cfg_.dev);
    i.put('-');
    i.str(cfg_.node);
#if defined(IOTGW_MQTT_USER)
    if (!client_.connect(id, IOTGW_MQTT_USER, IOTGW_MQTT_PASSWORD, status_, 1, true, will)) return false;
#else
    if (!client_.connect(id, status_, 1, true, will)) return false;
#endif
    client_.subscribe(ack_, 1);
    send_status(st);
    return true;
  }
  // Retained, so the gateway (and anyone subscribing later) sees the latest one (protocol section 6).
  bool send_status(const Status& st) {
    if (!client_.beginPublish(status_, status_length(cfg_, st), true)) return false;
    ClientOut out(client_);
    write_status(out, cfg_, st);
    return client_.endPublish();
  }
  bool send_reading(const NodeConfig& cfg, const Record& r, bool cached) override {
    size_t n = reading_length(cfg, r, cached);
    if (!client_.beginPublish(reading_, n, false)) return false;
    ClientOut out(client_);
    write_reading(out, cfg, r, cached);
    return client_.endPublish();
  }
  // For the PubSubClient callback: true if `topic` is our ack topic and the payload an ack.
  bool ack_from(const char* t, const uint8_t* payload, unsigned len, Ack* ack) {
    size_t k = 0;
    while (ack_[k] && t[k] == ack_[k]) ++k;
    return ack_[k] == '\0' && t[k] == '\0' && parse_ack(reinterpret_cast<const char*>(payload), len, ack);
  }

 private:
  class ClientOut : public Out {
   public:
    explicit ClientOut(PubSubClient& c) : c_(c) {}
    void write(const char* s, size_t n) override { c_.write(reinterpret_cast<const uint8_t*>(s), n); }

   private:
    PubSubClient& c_;
  };
  void topic(char* buf, const char* leaf) {
    BufferOut o(buf, sizeof reading_);
    o.str(IOTGW_MQTT_PREFIX "/" IOTGW_SITE "/");
    o.str(cfg_.dev);
    o.str(leaf);
  }
  PubSubClient& client_;
  const NodeConfig& cfg_;
  char reading_[72];
  char status_[72];
  char ack_[72];
};

}  // namespace iotgw

#endif
