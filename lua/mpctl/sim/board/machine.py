# The `machine` module of mpctl's simulated boards (docs/simulators.md "The board's hardware").
# Injected into the WebAssembly MicroPython (which has no `machine`) through its raw REPL when the
# simulated board boots, as sys.modules['machine'], so `import machine` and the same post-flash
# test work on a simulated board and on a real one. The hardware is virtual: what the code does
# to it is reported to the simulator in-band as "\x1b]mpctl;EVENT\x07" on stdout, which the
# simulator strips from the output and writes to its trace ("board: pin 2 1", "board: led on").
# Constants and behaviour follow MicroPython's esp32 port docs (docs/library/machine.*.rst).
import sys


def _ev(*a):
    sys.stdout.write("\x1b]mpctl;" + " ".join(str(x) for x in a) + "\x07")


_CFG = {"led": 2, "temp": 24.0, "i2c": 0x48, "uid": b"\x24\x0a\xc4\x00\x00\x01",
        "freq": 160000000, "adc": 21000}
_PINS = {}


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self._id = id
        self._mode = Pin.IN
        self._v = _PINS.get(id, 0)
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1 and mode is not None:
            self._mode = mode
        if pull == Pin.PULL_UP and self._mode == Pin.IN:
            self._v = 1
        if value is not None:
            self.value(value)

    def _set(self, v):
        v = 1 if v else 0
        if v != self._v or self._id not in _PINS:
            self._v = v
            _PINS[self._id] = v
            _ev("pin", self._id, v)
            if self._id == _CFG["led"]:
                _ev("led", "on" if v else "off")

    def value(self, v=None):
        if v is None:
            return self._v
        self._set(v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self._set(1)

    def off(self):
        self._set(0)

    def toggle(self):
        self._set(not self._v)

    def irq(self, handler=None, trigger=3):
        return None

    def __repr__(self):
        return "Pin(%s)" % self._id


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 0
    WIDTH_10BIT = 1
    WIDTH_11BIT = 2
    WIDTH_12BIT = 3

    def __init__(self, pin, atten=None):
        self._pin = pin
        self._n = 0

    def atten(self, a):
        pass

    def width(self, w):
        pass

    def read_u16(self):
        # a floating input near mid-scale with a little noise, as a bare ADC pin reads
        self._n = (self._n * 1103515245 + 12345) & 0x7FFFFFFF
        return _CFG["adc"] + (self._n >> 16) % 512

    def read(self):
        return self.read_u16() >> 4

    def read_uv(self):
        return self.read_u16() * 3300000 // 65535


class I2C:
    # One simulated temperature sensor modelled on the TI TMP102 (and LM75): register 0 holds the
    # temperature as a 12-bit two's complement value, left-justified in 2 bytes, 0.0625 C/LSB;
    # register 1 the configuration (0x60A0 at power-up). Other addresses do not answer
    # (OSError ENODEV, errno 19, as the esp32 port raises).
    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._reg = 0

    def init(self, *a, **k):
        pass

    def scan(self):
        return [_CFG["i2c"]]

    def _check(self, addr):
        if addr != _CFG["i2c"]:
            raise OSError(19)

    def _regbytes(self, reg):
        if reg == 0:
            raw = int(round(_CFG["temp"] / 0.0625)) & 0xFFF
            return bytes([(raw >> 4) & 0xFF, (raw << 4) & 0xF0])
        if reg == 1:
            return b"\x60\xa0"
        return b"\x00\x00"

    def readfrom_mem(self, addr, reg, n, *, addrsize=8):
        self._check(addr)
        _ev("i2c", addr, "read", reg)
        return (self._regbytes(reg) * n)[:n]

    def readfrom_mem_into(self, addr, reg, buf, *, addrsize=8):
        data = self.readfrom_mem(addr, reg, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, reg, buf, *, addrsize=8):
        self._check(addr)
        _ev("i2c", addr, "write", reg)

    def readfrom(self, addr, n, stop=True):
        self._check(addr)
        return (self._regbytes(self._reg) * n)[:n]

    def readfrom_into(self, addr, buf, stop=True):
        data = self.readfrom(addr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto(self, addr, buf, stop=True):
        self._check(addr)
        if len(buf) > 0:
            self._reg = buf[0]
        return len(buf)


SoftI2C = I2C


def unique_id():
    return _CFG["uid"]


def freq(f=None):
    if f is None:
        return _CFG["freq"]
    _CFG["freq"] = f


def reset():
    # the simulator power-cycles the board as soon as the REPL is idle (the code after this call
    # still runs here, where a real board would already be resetting)
    _ev("reset")


def soft_reset():
    raise SystemExit


def bootloader():
    _ev("bootloader")


def idle():
    pass


def lightsleep(ms=None):
    pass


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def reset_cause():
    return 1  # PWRON_RESET


PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
