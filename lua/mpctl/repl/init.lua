--[[ mpctl.repl: talk to a MicroPython REPL over any mpctl port.

Where things live (lua/mpctl/repl/):
    init.lua      this API: attach() builds the client object from the modules below
    protocol.lua  raw REPL, raw-paste, exec, soft reset, interrupt, entering raw mode while booting
    link.lua      byte I/O on the port's own buffer, counters and trace hook; the REPL's errors
    transfer.lua  put/get in binary, base64 and deflate modes, verified by sha256, with retries
    files.lua     ls, stat, sha256, rm, mkdir, rmdir; device OSErrors in words (errno.lua)
    device.py     the Python the device runs (helpers sent once per session; tested on MicroPython)
    commands.lua  what exec/run/verify_repl do and print
    starter.lua   the starter post-flash test (LED, temperature, filesystem, memory; device side starter.py)
    pysrc.lua, errors.lua   Python literals and .py loading, the error values (base64: mpctl.base64)

    local r = repl.attach(port, opts)  -- Ctrl-C, enter the raw REPL (asking again within tens of ms
                                       -- while a board boots, at once when its prompt shows), probe
                                       -- sys.platform before any raw-paste
       opts: timeout (s per operation, 10), raw_paste (nil detect | true | false), binary (nil probe |
             false), chunk (binary chunk, 256), window (binary chunks in flight, 2), batch (file bytes
             per base64 exec, 8192), line (file bytes per base64 line, 1536), soft_reset (bool),
             owns_port (close() closes the port), name (for messages), trace(dir, bytes), pace (s),
             attempts (a corrupted put is sent again up to this many times in all, 3),
             rx_silence (s the device's binary receiver waits for the next byte before it gives up, 2)
    r:exec(code, {timeout=, on_output=fn, raw_output=bool}) -> stdout
                                       -- "\r\n" folded to "\n" unless raw_output; on_output streams
                                       -- pieces; on timeout Ctrl-C is sent and the error says whether
                                       -- the device came back (err.recovered)
    r:eval(expr) -> repr text;  r:info() -> {name=, version=, machine=, build=, mpy=, platform=,
                                             uname={sysname=, nodename=, release=, version=, machine=}|nil}
    r:interrupt{timeout=}        -- Ctrl-C until the friendly prompt comes back, or a clean timeout error
    r:friendly(line) -> output   -- one line at the friendly '>>> ' prompt
    r:enter_raw(); r:leave_raw(); r:soft_reset() -> how ("soft reboot"|"banner"|"eof")
    r:ls(path, {all=}) -> { {name=, size=|nil for dirs, type="file"|"dir"}, ... } (sorted; size from
                                       -- os.stat; a file lists itself; put's temporaries hidden)
    r:stat(path) -> {size=, type=} | nil (absent)
    r:put(data, path, {force=, mode="binary"|"base64", compress=, timeout=}) -> stats;  r:put_file(local, path, opts)
    r:get(path, {mode=, verify=, timeout=}) -> data, stats;  r:get_file(path, local, opts) -> stats
    r:rm(path, {recursive=}); r:mkdir(path, {exist_ok=}); r:rmdir(path)
    r:sha256(path) -> hex | nil (absent), computed on the device
    r:close()                    -- leaves the raw REPL; closes the port if opts.owns_port
    r.tx, r.rx                   -- bytes the port sent / received since attach (port:counters())
    stats = {mode=, bytes=, wire_bytes= (payload direction), wire_out=, wire_in=, wire_per_byte=,
             seconds=, rate= (file bytes/s), sha256=, status="written"|"up to date", skipped=,
             attempts= (put: transfers made), cleaned= (put: stale temporaries removed)}

Errors: every error value is an mpctl.errors object (kind, where, detail, msg) that also has
.message (the same text); repl.is_error(e[, kind]) tests for one:
    kind="device"   the code raised on the device: .traceback (device stderr, as sent), .exception
                    (its last line, e.g. "ZeroDivisionError: divide by zero"), .stdout;
                    tostring(e) starts with the exception line, then the traceback.
    kind="timeout"  nothing expected came within the time: .what, .seen (last bytes; escaped in the text)
    kind="eof"      the device hung up (end of file, broken pipe) when it was not asked to
                    (is_error(e, "reset") still matches it)
    kind="protocol" unexpected bytes (garbage where flow control was expected, hash mismatch:
                    .sha256 / .device_sha256)
    kind="unsupported" a mode the device lacks (raw-paste broken, stdin not binary-readable)
    kind="not_found", "device" with .op, .path, .reason, .errno, .errno_name: a file operation's
                    OSError in words: "cat: :nope.py: no such file (OSError 44 ENOENT on ...)"
    kind="io"       the port itself failed

Transfer modes (stats.mode):
    "binary"       file bytes raw on the wire. put: a small receiver run with micropython.kbd_intr(-1)
                   reads sys.stdin.buffer in chunks and acks each with \x06 (the host keeps `window`
                   chunks in flight, so the line never idles); get: the device writes the file to
                   sys.stdout.buffer after a length line, so no \x04 framing can be confused.
    "base64-paste" base64 lines `_w(_d(b'...'))`, many per exec, streamed through raw-paste windows.
    "base64-raw"   the same through the plain raw REPL (device without working raw-paste).
    "...+deflate"  put only: data that deflates by >= 10 % (source files) travels zlib-compressed
                   into "<path>.mpctl~z", which the device inflates (deflate module,
                   MicroPython >= 1.21, 32 KB window) and removes; a device error there (no RAM)
                   turns compression off for the connection and the file is sent plain.
Every transfer ends with sha256 computed on the device (hashlib) compared with the host's (a device
without hashlib is read back instead); put first compares hashes and skips a file that matches.
put writes "<path>.mpctl~" and renames it to path only once the device's hash matches the host's,
so a transfer that fails, is cut short or arrives corrupted leaves path as it was; a corrupted
transfer is sent again (opts.attempts in all) before put fails saying how many attempts it made.
A stray ".mpctl~" file of a put that was killed is removed by the next put into that folder, and
ls hides such files. The binary receiver gives up by itself after rx_silence seconds without a
byte (restoring Ctrl-C), so a client killed mid-chunk never leaves the board deaf to the next one.
get_file writes the local file the same way (mpctl.fs.write).

WebAssembly MicroPython (banner "JS with Emscripten" / sys.platform 'webassembly'): its raw-paste
answers R\x01 and then hangs, its stdin cannot be read by code, Ctrl-C cannot stop running code and
a soft reset ends the process; attach() detects it before the first paste and uses plain raw + base64
for put (binary get works: it only needs stdout). A \x04 right after the raw-paste window on any
other device is taken as the same bug (kind="unsupported"; raw-paste is then off for the connection).
]]
local errors = require("mpctl.repl.errors")
local pysrc = require("mpctl.repl.pysrc")
local commands = require("mpctl.repl.commands")

local M = {}

-- The client object's methods come from the modules of each concern.
local R = {}
-- r.tx / r.rx: bytes the port sent / received since attach (the port's own counters)
R.__index = function(self, k)
  if k == "tx" or k == "rx" then
    return self.port:counters()[k] - self.base[k]
  end
  return R[k]
end
for _, part in ipairs({"link", "protocol", "files", "transfer"}) do
  for k, v in pairs(require("mpctl.repl." .. part)) do
    if type(v) == "function" then R[k] = v end
  end
end

M.escape = errors.escape
M.is_error = errors.is_error
M.pyquote = pysrc.quote
M.run_streaming = commands.run_streaming
M.verify = commands.verify
M.starter = require("mpctl.repl.starter")
M.name_traceback = commands.name_traceback
M.machine_call = commands.machine_call

--- Attaches to the REPL on `port` (an mpctl port). opts: see the top of this file.
-- pace: seconds to sleep after each 256 bytes of plain raw-REPL input, as mpremote does for boards
-- whose UART drops bytes; 0 by default: raw-paste has real flow control and is used when present.
function M.attach(port, opts)
  opts = opts or {}
  local self = setmetatable({
    port = port, name = opts.name or port.name or tostring(port),
    raw = false, base = port:counters(),
    timeout = opts.timeout or 10,
    paste = opts.raw_paste, binary = opts.binary, paste_checked = false,
    chunk = opts.chunk or 256, window = opts.window or 2,
    batch = opts.batch or 8192, line = opts.line or 1536,
    owns_port = opts.owns_port, pace = opts.pace, traced = opts.trace ~= nil,
    attempts = opts.attempts or 3, rx_silence = opts.rx_silence or 2,
    cleaned = {},
  }, R)
  -- line must be a multiple of 3 so each base64 line decodes on its own without padding
  self.line = self.line - self.line % 3
  if opts.trace then port:set_trace(opts.trace) end
  self:enter_raw()
  if opts.soft_reset then self:soft_reset() end
  self:_probe()
  return self
end

function R:close()
  if self.raw and not self.gone then pcall(self.leave_raw, self, 1) end
  if self.traced then pcall(self.port.set_trace, self.port, nil) end
  if self.owns_port then pcall(self.port.close, self.port) end
end

return M
