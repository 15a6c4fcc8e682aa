-- Issue 8's fault matrix, ESP8266 half (the other chip's half is fault_matrix_esp32_test.lua, so ctest
-- runs the two side by side): seeded faults (drop, corrupt, stall, reset) on the frames the board
-- receives, sends, or both, at two rates, in stub and ROM mode; every case
-- asserts the invariant (tests/esp/faultmatrix.lua): a verified exit 0 means the whole flash
-- equals the image inside its sectors and the previous content outside; every failure is a
-- structured error whose claims about the outside are true. No timing: the simulator runs with
-- timing=off and the client's reply timeouts are scaled down (timeout_scale) only to keep lost
-- replies cheap; whether a case recovers is not asserted (bench/fault_matrix.lua reports it).
require("faultmatrix").define_tests("esp8266")
