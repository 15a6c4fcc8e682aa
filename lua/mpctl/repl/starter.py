# mpctl's starter post-flash test, run on the board (lua/mpctl/repl/starter.lua sends it, then calls
# _mpctl_check(name, arg)). Each check prints one line: 'pass DETAIL', 'fail DETAIL' or
# 'skip WHY'. Only what every MicroPython port has is assumed; the rest is probed.

def _mpctl_led(p):
 import machine, time
 if isinstance(p, str):
  p = p.split()[0]
 pin = machine.Pin(p, machine.Pin.OUT)
 seen = []
 for _ in range(3):
  pin.on()
  time.sleep_ms(150)
  seen.append(pin.value())
  pin.off()
  time.sleep_ms(150)
  seen.append(pin.value())
 if seen != [1, 0] * 3:
  print('fail pin', p, 'read back', seen, 'after on/off (expected [1, 0, ...])')
 else:
  print('pass pin', p, 'blinked 3 times')

# Temperature in degrees C from the chip's own sensor, or an ADC reading: the first source this
# port has. Conversions: ESP32 raw_temperature() is Fahrenheit (esp32 port docs); RP2040 ADC
# input 4, T = 27 - (V - 0.706) / 0.001721 (RP2040 datasheet 4.9.5); STM32 pyb.ADCAll(12,
# 0x70000).read_core_temp() (pyboard docs).
def _mpctl_temp(_):
 import sys
 t, how = None, None
 try:
  import esp32
  if hasattr(esp32, 'mcu_temperature'):
   t, how = esp32.mcu_temperature(), 'esp32.mcu_temperature()'
  elif hasattr(esp32, 'raw_temperature'):
   t, how = (esp32.raw_temperature() - 32) / 1.8, 'esp32.raw_temperature() (F)'
 except ImportError:
  pass
 if t is None and sys.platform == 'rp2':
  import machine
  v = machine.ADC(4).read_u16() * 3.3 / 65535
  t, how = 27 - (v - 0.706) / 0.001721, 'ADC(4) sensor'
 if t is None and sys.platform == 'pyboard':
  import pyb
  t, how = pyb.ADCAll(12, 0x70000).read_core_temp(), 'pyb.ADCAll core temperature'
 if t is not None:
  if -40 <= t <= 125:
   print('pass %.1f C from %s' % (t, how))
  else:
   print('fail %.1f C from %s is outside -40..125 C' % (t, how))
  return
 try:
  import machine
  a = machine.ADC(0)
  v = a.read_u16() if hasattr(a, 'read_u16') else a.read() * 64
 except Exception as e:
  print('skip no temperature sensor or ADC found on this port (%s)' % e)
  return
 if 0 <= v <= 65535:
  print('pass ADC(0) reads %d of 65535 (no temperature sensor on this port)' % v)
 else:
  print('fail ADC(0) reads %d, outside 0..65535' % v)

def _mpctl_fs(_):
 import os
 p = '.mpctl_probe'
 data = bytes(range(256)) * 4
 try:
  with open(p, 'wb') as f:
   f.write(data)
  with open(p, 'rb') as f:
   back = f.read()
  os.remove(p)
 except OSError as e:
  print('fail cannot write a file in %s: OSError %s' % (os.getcwd(), e.args[0]))
  return
 if back != data:
  print('fail %s read back %d bytes that differ from the %d written' % (p, len(back), len(data)))
 else:
  print('pass wrote, read back and removed %d bytes in %s' % (len(data), os.getcwd()))

def _mpctl_mem(_):
 import gc
 gc.collect()
 f = gc.mem_free()
 a = gc.mem_alloc()
 print('pass %d bytes free of %d' % (f, f + a))

def _mpctl_check(name, arg):
 try:
  globals()['_mpctl_' + name](arg)
 except Exception as e:
  print('fail %s: %s' % (type(e).__name__, e))
