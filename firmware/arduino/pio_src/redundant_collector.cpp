// PlatformIO builds the sketch through this file (its .ino conversion only looks at the top of src_dir).
// The sketch is plain C++, so including it is all it takes; the Arduino IDE opens the .ino directly.
#include "../sketches/redundant_collector/redundant_collector.ino"
