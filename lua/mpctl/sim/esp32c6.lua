-- mpctl.sim.esp32c6: `mpctl sim esp32c6 --listen URL` and sim://esp32c6 (see mpctl.sim.esp, docs/simulators.md).
return require("mpctl.sim.esp").for_chip("esp32c6")
