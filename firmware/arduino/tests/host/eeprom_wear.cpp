// Prints the EEPROM wear of the ft_collector on an Uno over N readings with one ack each, as JSON
// (bench/firmware_sizes.py records it), written through (the default) and written behind with 1 ack
// in 100 late. Usage: eeprom_wear [readings]
#include <cstdio>
#include <cstdlib>

#include "wear_sim.h"

static void print(const char* name, const WearResult& w, uint32_t persist_after_ms, long late_every) {
  std::printf(
      "\"%s\": {\"readings\": %ld, \"persist_after_ms\": %u, \"late_ack_every\": %ld, \"hottest_cell\": %u, "
      "\"hottest_cell_writes\": %ld, \"meta_hottest_cell_writes\": %ld, \"meta_saves\": %u, \"endurance\": 100000, "
      "\"period_ms\": 5000, \"years\": %.3f}",
      name, w.readings, (unsigned)persist_after_ms, late_every, (unsigned)w.hottest_cell, w.hottest_writes,
      w.meta_hottest, (unsigned)w.meta_saves, wear_years(w));
}

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 1000000L;
  std::printf("{");
  print("write_through", simulate_wear(n), 0, 0);
  std::printf(", ");
  print("write_behind", simulate_wear(n, 1000, 100), 1000, 100);
  std::printf("}\n");
  return 0;
}
