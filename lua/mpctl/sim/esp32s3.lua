-- mpctl.sim.esp32s3: `mpctl sim esp32s3 --listen URL` and sim://esp32s3 (see mpctl.sim.esp, docs/simulators.md).
return require("mpctl.sim.esp").for_chip("esp32s3")
