// Prints the EEPROM wear of the ft_collector on an Uno over N readings with one ack each, as JSON
// (bench/firmware_sizes.py records it). Usage: eeprom_wear [readings]
#include <cstdio>
#include <cstdlib>

#include "wear_sim.h"

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 1000000L;
  WearResult w = simulate_wear(n);
  std::printf(
      "{\"readings\": %ld, \"hottest_cell\": %u, \"hottest_cell_writes\": %ld, \"meta_hottest_cell_writes\": %ld, "
      "\"meta_saves\": %u, \"endurance\": 100000, \"period_ms\": 5000, \"years\": %.3f}\n",
      w.readings, (unsigned)w.hottest_cell, w.hottest_writes, w.meta_hottest, (unsigned)w.meta_saves, wear_years(w));
  return 0;
}
