// Compile-time configuration of the sketches. Every value can be overridden with a build flag
// (-DIOTGW_SAMPLE_MS=200 ...), which is how the simulated-board tests shorten the periods.
// docs/firmware.md lists them with wiring per board.
#ifndef IOTGW_CONFIG_H
#define IOTGW_CONFIG_H

// Role of a redundant_collector node, as the classic sketch did with `#define SLAVE`.
#if defined(SLAVE) && !defined(IOTGW_SECONDARY)
#define IOTGW_SECONDARY 1
#endif

#ifndef IOTGW_DEVICE
#ifdef IOTGW_PAIR
#define IOTGW_DEVICE "pair-1"
#else
#define IOTGW_DEVICE "ft-1"
#endif
#endif
#ifndef IOTGW_NODE
#if defined(IOTGW_PAIR) && defined(IOTGW_SECONDARY)
#define IOTGW_NODE "b"
#else
#define IOTGW_NODE "a"
#endif
#endif
#ifndef IOTGW_UNIT
#define IOTGW_UNIT "V"
#endif

#ifndef IOTGW_BAUD
#define IOTGW_BAUD 115200
#endif
#ifndef IOTGW_LED_PIN
#if defined(IOTGW_WITH_SD) || defined(IOTGW_WITH_MQTT)
#define IOTGW_LED_PIN 7  // 13 is SPI clock, busy with the SD card / Ethernet shield
#else
#define IOTGW_LED_PIN 13
#endif
#endif
#ifndef IOTGW_LED_MS
#define IOTGW_LED_MS 50
#endif
#ifndef IOTGW_ADC_PIN
#define IOTGW_ADC_PIN A0
#endif
#ifndef IOTGW_ADC_REF_MV
#define IOTGW_ADC_REF_MV 5000L  // AVR default reference: Vcc
#endif

// Timing (ms).
#ifndef IOTGW_SAMPLE_MS
#define IOTGW_SAMPLE_MS 5000UL
#endif
#ifndef IOTGW_ACK_TIMEOUT_MS
#define IOTGW_ACK_TIMEOUT_MS 5000UL
#endif
// 0: every record is written to the cache before it is sent (no reading lost at a power cut). Above 0:
// written only when not acknowledged after this long (write-behind). The EEPROM cache defaults to
// write-behind: written through, an Uno's EEPROM wears out in months at a 5 s period, written behind it lasts
// decades, and a power cut can cost at most the newest, never acknowledged reading (docs/firmware.md
// "EEPROM wear"). An SD card levels its own wear, so the SD cache writes through.
#ifndef IOTGW_PERSIST_AFTER_MS
#if defined(IOTGW_WITH_SD)
#define IOTGW_PERSIST_AFTER_MS 0UL
#else
#define IOTGW_PERSIST_AFTER_MS 1000UL
#endif
#endif
// Status (protocol section 6) at start, on every role change and this often.
#ifndef IOTGW_STATUS_MS
#define IOTGW_STATUS_MS 60000UL
#endif
#ifndef IOTGW_HEARTBEAT_MS
#define IOTGW_HEARTBEAT_MS 1000UL
#endif
#ifndef IOTGW_TIMEOUT_MS
#define IOTGW_TIMEOUT_MS 3500UL
#endif
#ifndef IOTGW_HANDBACK_BEATS
#define IOTGW_HANDBACK_BEATS 3
#endif

// I2C address the secondary listens on (the DS1307 is at 0x68).
#ifndef IOTGW_I2C_ADDR
#define IOTGW_I2C_ADDR 0x42
#endif

// I2C transfers give up (and reset the bus) after this long instead of hanging the loop.
#ifndef IOTGW_I2C_TIMEOUT_US
#define IOTGW_I2C_TIMEOUT_US 25000UL
#endif

// EEPROM layout: boot counter at IOTGW_EEPROM_BASE, then the cache up to the end of EEPROM.
#ifndef IOTGW_EEPROM_BASE
#define IOTGW_EEPROM_BASE 0
#endif
#ifndef IOTGW_EEPROM_CACHE_BYTES
#define IOTGW_EEPROM_CACHE_BYTES 0  // 0: the rest of the EEPROM
#endif

// SD card cache (registry builds with IOTGW_WITH_SD).
#ifndef IOTGW_SD_CS_PIN
#define IOTGW_SD_CS_PIN 4
#endif
#ifndef IOTGW_SD_FILE
#define IOTGW_SD_FILE "IOTGW.LOG"
#endif
#ifndef IOTGW_SD_BYTES
#define IOTGW_SD_BYTES 65536UL
#endif

// MQTT over Ethernet (registry builds with IOTGW_WITH_MQTT).
// MQTT user name and password (the device credentials of the broker's ACL, docs/firmware.md); unset:
// connect without.
#if defined(IOTGW_MQTT_USER) && !defined(IOTGW_MQTT_PASSWORD)
#define IOTGW_MQTT_PASSWORD ""
#endif
// The W5100's chip select on an Ethernet shield: kept high (deselected) while the SD card starts.
#ifndef IOTGW_W5100_CS_PIN
#define IOTGW_W5100_CS_PIN 10
#endif
#ifndef IOTGW_MQTT_HOST
#define IOTGW_MQTT_HOST 192, 168, 1, 10
#endif
#ifndef IOTGW_MQTT_PORT
#define IOTGW_MQTT_PORT 1883
#endif
// A second broker (e.g. -DIOTGW_MQTT_HOST2=192,168,1,11): when a connection fails the collector tries the
// other one at its next reconnect (every 5 s). Unset: one broker.
#if defined(IOTGW_MQTT_HOST2) && !defined(IOTGW_MQTT_PORT2)
#define IOTGW_MQTT_PORT2 IOTGW_MQTT_PORT
#endif
#ifndef IOTGW_MQTT_PREFIX
#define IOTGW_MQTT_PREFIX "iot"
#endif
#ifndef IOTGW_SITE
#define IOTGW_SITE "site-1"
#endif
#ifndef IOTGW_MAC
#define IOTGW_MAC 0xDE, 0xAD, 0xBE, 0xEF, 0xFE, 0x01
#endif

#endif
