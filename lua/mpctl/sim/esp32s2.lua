-- mpctl.sim.esp32s2: `mpctl sim esp32s2 --listen URL` and sim://esp32s2 (see mpctl.sim.esp, docs/simulators.md).
return require("mpctl.sim.esp").for_chip("esp32s2")
