// Declarations of the PubSubClient 2.8 API that mqtt_link.h uses, for a host compile check only: the
// library is fetched by PlatformIO's registry environments and cannot be installed offline.
#pragma once
#include <cstddef>
#include <cstdint>
typedef bool boolean;
class PubSubClient {
 public:
  boolean connect(const char* id, const char* willTopic, uint8_t willQos, boolean willRetain, const char* willMessage);
  boolean connect(const char* id, const char* user, const char* pass, const char* willTopic, uint8_t willQos,
                  boolean willRetain, const char* willMessage);
  boolean connected();
  boolean subscribe(const char* topic, uint8_t qos);
  boolean publish(const char* topic, const char* payload, boolean retained);
  boolean beginPublish(const char* topic, unsigned int plength, boolean retained);
  int endPublish();
  size_t write(const uint8_t* buffer, size_t size);
};
