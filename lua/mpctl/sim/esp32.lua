-- mpctl.sim.esp32: `mpctl sim esp32 --listen URL` and sim://esp32 (see mpctl.sim.esp, docs/simulators.md).
return require("mpctl.sim.esp").for_chip("esp32")
