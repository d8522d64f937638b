// EEPROM wear of the ft_collector's layout on an Uno: the boot counter, then the cache over the rest
// of the 1024 bytes, driven through the Collector with one prompt ack per reading (the steady state of
// a healthy link). Counts, per cell, the writes that change it (the board writes with EEPROM.update).
// persist_after_ms > 0 runs the collector write-behind; then every `late_every`-th ack (0: none) comes
// only after the record was written, as on a link with hiccups.
#ifndef IOTGW_WEAR_SIM_H
#define IOTGW_WEAR_SIM_H

#include "fakes.h"
#include "iotgw.h"

struct WearResult {
  long readings;
  long hottest_writes;      // writes of the most written cell
  uint32_t hottest_cell;
  long meta_hottest;        // the most written cell of the boot counter and trim state
  uint32_t meta_saves;
};

inline WearResult simulate_wear(long readings, uint32_t persist_after_ms = 0, long late_every = 0,
                                uint32_t eeprom_bytes = 1024, uint32_t period_ms = 5000) {
  using namespace iotgw;
  RamStorage mem(eeprom_bytes);
  uint32_t boot = next_boot(mem, 0, 0);
  RecordLog log(mem, kBootCounterBytes, eeprom_bytes - kBootCounterBytes);
  NodeConfig cfg = {"ft-1", "a", "V"};
  FakeLink link;
  Collector col(cfg, log, link, nullptr, 5000, persist_after_ms);
  col.begin(boot, 0);
  uint32_t now = 0;
  const int64_t t0 = 1700000000000LL;
  for (long i = 0; i < readings; ++i, now += period_ms) {
    col.record(now, t0 + (int64_t)i * period_ms, kSrcRtc, (int32_t)(1000 + (i * 7919) % 4000));
    col.poll(now);
    uint32_t ack_at = now + 20;
    if (persist_after_ms && late_every && i % late_every == late_every - 1) {
      ack_at = now + persist_after_ms + 500;
      col.poll(ack_at - 1);  // the ack is late: the record is written first
    }
    Ack a = {"ft-1", 4, "a", 1, boot, (uint32_t)i, kNoTime};
    col.on_ack(a, ack_at);
    link.sent.clear();
  }
  WearResult w = {readings, 0, 0, 0, log.meta_saves()};
  for (uint32_t c = 0; c < eeprom_bytes; ++c) {
    if (mem.cell_writes[c] > w.hottest_writes) {
      w.hottest_writes = mem.cell_writes[c];
      w.hottest_cell = c;
    }
    if (c < kBootCounterBytes + RecordLog::kMetaBytes && mem.cell_writes[c] > w.meta_hottest)
      w.meta_hottest = mem.cell_writes[c];
  }
  return w;
}

// Years until the most written cell reaches `endurance` writes at one reading per `period_ms`.
inline double wear_years(const WearResult& w, double endurance = 100000.0, double period_ms = 5000.0) {
  if (!w.hottest_writes) return 1e9;  // nothing written at all
  double readings_to_wear = endurance / (double)w.hottest_writes * (double)w.readings;
  return readings_to_wear * period_ms / 1000.0 / (365.25 * 86400.0);
}

#endif
