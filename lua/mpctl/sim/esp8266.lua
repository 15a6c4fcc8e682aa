-- mpctl.sim.esp8266: `mpctl sim esp8266 --listen URL` and sim://esp8266 (see mpctl.sim.esp, docs/simulators.md).
return require("mpctl.sim.esp").for_chip("esp8266")
