-- mpctl.sim.esp32c3: `mpctl sim esp32c3 --listen URL` and sim://esp32c3 (see mpctl.sim.esp, docs/simulators.md).
return require("mpctl.sim.esp").for_chip("esp32c3")
