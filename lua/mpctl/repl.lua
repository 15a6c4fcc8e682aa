--[[ mpctl.repl: talk to a MicroPython REPL over any mpctl port.

    local r = repl.attach(port, opts)  -- Ctrl-C, enter the raw REPL (asking again each second while
                                       -- a board boots), probe sys.platform before any raw-paste
       opts: timeout (s per operation, 10), raw_paste (nil detect | true | false), binary (nil probe |
             false), chunk (binary chunk, 256), window (binary chunks in flight, 2), batch (file bytes
             per base64 exec, 8192), line (file bytes per base64 line, 1536), soft_reset (bool),
             owns_port (close() closes the port), name (for messages), trace(dir, bytes), pace (s)
    r:exec(code, {timeout=, on_output=fn, raw_output=bool}) -> stdout
                                       -- "\r\n" folded to "\n" unless raw_output; on_output streams
                                       -- pieces; on timeout Ctrl-C is sent and the error says whether
                                       -- the device came back (err.recovered)
    r:eval(expr) -> repr text;  r:info() -> {name=, version=, machine=, build=, mpy=, platform=,
                                             uname={sysname=, nodename=, release=, version=, machine=}|nil}
    r:interrupt{timeout=}        -- Ctrl-C until the friendly prompt comes back, or a clean timeout error
    r:friendly(line) -> output   -- one line at the friendly '>>> ' prompt
    r:enter_raw(); r:leave_raw(); r:soft_reset() -> how ("soft reboot"|"banner"|"eof")
    r:ls(path) -> { {name=, size=|nil for dirs, type="file"|"dir"}, ... } (sorted; size from os.stat)
    r:stat(path) -> {size=, type=} | nil (any OSError counts as absent)
    r:put(data, path, {force=, mode="binary"|"base64", compress=, timeout=}) -> stats;  r:put_file(local, path, opts)
    r:get(path, {mode=, verify=, timeout=}) -> data, stats;  r:get_file(path, local, opts) -> stats
    r:rm(path, {recursive=}); r:mkdir(path, {exist_ok=}); r:rmdir(path)
    r:sha256(path) -> hex | nil (absent), computed on the device
    r:close()                    -- leaves the raw REPL; closes the port if opts.owns_port
    r.tx, r.rx                   -- bytes written / read on the port so far
    stats = {mode=, bytes=, wire_bytes= (payload direction), wire_out=, wire_in=, wire_per_byte=,
             seconds=, rate= (file bytes/s), sha256=, status="written"|"up to date", skipped=}

Errors: every error value is a table with a __tostring and a .message (so handlers that print
tostring(e) or e.message work) and a .kind; repl.is_error(e[, kind]) tests for one:
    kind="device"   the code raised on the device: .traceback (device stderr, as sent), .exception
                    (its last line, e.g. "ZeroDivisionError: divide by zero"), .stdout;
                    tostring(e) starts with the exception line, then the traceback.
    kind="timeout"  nothing expected came within the time: .what, .seen (last bytes; escaped in the text)
    kind="reset"    the device hung up (end of file, broken pipe) when it was not asked to
    kind="protocol" unexpected bytes (garbage where flow control was expected, hash mismatch:
                    .sha256 / .device_sha256)
    kind="unsupported" a mode the device lacks (raw-paste broken, stdin not binary-readable)
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
so a transfer that fails, is cut short or arrives corrupted leaves path as it was (a stray
".mpctl~" file at worst); get_file writes the local file the same way (mpctl.fs.write).

WebAssembly MicroPython (banner "JS with Emscripten" / sys.platform 'webassembly'): its raw-paste
answers R\x01 and then hangs, its stdin cannot be read by code, Ctrl-C cannot stop running code and
a soft reset ends the process; attach() detects it before the first paste and uses plain raw + base64
for put (binary get works: it only needs stdout). A \x04 right after the raw-paste window on any
other device is taken as the same bug (kind="unsupported"; raw-paste is then off for the connection).
]]
local time = require("mpctl.time")
local hash = require("mpctl.hash")
local b64 = require("mpctl.repl.b64")

local M = {}
local R = {}
R.__index = R

local RAW_BANNER = "raw REPL; CTRL-B to exit\r\n"
local now = time.now

-- Seconds left until deadline, never zero: a wait whose time is up still looks at what arrived.
local function time_left(deadline) return math.max(deadline - now(), 0.001) end

---------------------------------------------------------------------------------------------
-- errors

local function escape(s, max)
  max = max or 64
  if #s > max then s = s:sub(-max) end
  return (s:gsub("[^\32-\126]", function(c)
    if c == "\r" then return "\\r" elseif c == "\n" then return "\\n" end
    return string.format("\\x%02x", c:byte())
  end):gsub('"', '\\"'))
end
M.escape = escape

local ErrMT = {}
ErrMT.__index = ErrMT
ErrMT.__tostring = function(e) return e.message end

local function raise(kind, message, fields)
  local e = fields or {}
  e.kind, e.message = kind, message
  error(setmetatable(e, ErrMT), 0)
end

function M.is_error(v, kind)
  return getmetatable(v) == ErrMT and (kind == nil or v.kind == kind)
end

-- The exception line of a MicroPython traceback: the last non-blank line.
local function exception_line(tb)
  local last
  for line in tb:gmatch("[^\r\n]+") do
    if line:find("%S") then last = line end
  end
  return last or tb
end

---------------------------------------------------------------------------------------------
-- Python source helpers

-- A Python string literal for s. Bytes >= 0x80 pass through unchanged: source is UTF-8 and
-- device file names are UTF-8 too.
local function pyquote(s)
  return "'" .. s:gsub("[%c'\\]", function(c)
    if c == "'" then return "\\'" elseif c == "\\" then return "\\\\" end
    return string.format("\\x%02x", c:byte())
  end) .. "'"
end
M.pyquote = pyquote

-- Device-side helpers, defined once per raw-REPL session. _mpctl_h prints a hash line so the
-- host can tell "absent" (?) and "no hashlib" (-) from a digest. _mpctl_rx is the binary receiver:
-- it announces itself with \x06, then reads n bytes from stdin in c-byte chunks, acking each chunk
-- with \x06 as soon as it is read (before writing it, so the next chunk already flows while the
-- file write runs). kbd_intr(-1) lets \x03 through as data. p=None discards (capability probe).
-- _mpctl_fin ends every put: the data went into a temporary file t (inflated from z first when
-- compressed), which replaces p only when its hash is the host's w, so a transfer cut short or
-- corrupted never leaves a file at p that looks complete; a mismatching t is removed, and without
-- hashlib ('-') t stays for the host to read back.
local HELPERS = [[
def _mpctl_h(p):
 try:
  import hashlib,binascii
 except ImportError:
  return '-'
 try:
  f=open(p,'rb')
 except OSError:
  return '?'
 h=hashlib.sha256();b=bytearray(1024);m=memoryview(b)
 while True:
  n=f.readinto(b)
  if not n:
   break
  h.update(m[:n])
 f.close()
 return binascii.hexlify(h.digest()).decode()
def _mpctl_rx(p,n,c):
 import sys,micropython
 i=sys.stdin.buffer;o=sys.stdout
 micropython.kbd_intr(-1)
 try:
  f=open(p,'wb') if p else None
  try:
   o.write('\x06')
   while n>0:
    k=min(n,c);d=i.read(k)
    while len(d)<k:
     d+=i.read(k-len(d))
    o.write('\x06')
    if f:
     f.write(d)
    n-=len(d)
  finally:
   if f:
    f.close()
 finally:
  micropython.kbd_intr(3)
def _mpctl_tx(p,c,e):
 import sys,os
 o=sys.stdout.buffer if e==0 else sys.stdout
 n=os.stat(p)[6];f=open(p,'rb')
 sys.stdout.write('#%d\n'%n)
 if e:
  from binascii import b2a_base64
 b=bytearray(c);m=memoryview(b)
 while True:
  k=f.readinto(b)
  if not k:
   break
  o.write(m[:k] if e==0 else b2a_base64(m[:k]))
 f.close()
def _mpctl_inflate(s,d):
 import deflate,os
 with open(s,'rb') as i:
  z=deflate.DeflateIO(i,deflate.ZLIB);b=bytearray(1024);m=memoryview(b)
  with open(d,'wb') as o:
   while True:
    n=z.readinto(b)
    if not n:
     break
    o.write(m[:n])
 os.remove(s)
def _mpctl_mv(t,p):
 import os
 try:
  os.rename(t,p)
 except OSError:
  os.remove(p)
  os.rename(t,p)
def _mpctl_fin(t,p,w,z):
 import os
 if z:
  _mpctl_inflate(z,t)
 h=_mpctl_h(t)
 if h==w:
  _mpctl_mv(t,p)
 elif h!='-':
  os.remove(t)
 return h
def _mpctl_ls(d):
 import os
 for e in os.ilistdir(d):
  p=(d.rstrip('/') or '')+'/'+e[0]
  try:
   s=os.stat(p)[6]
  except OSError:
   s=-1
  print(e[1],s,e[0])
]]

---------------------------------------------------------------------------------------------
-- byte I/O with an input buffer of our own (the device may send one byte per write, so reads
-- accumulate in a list and are joined once)

function R:_write(data)
  local ok, err = pcall(self.port.write, self.port, data)
  if not ok then
    local eof = self.port.is_eof and select(2, pcall(self.port.is_eof, self.port)) == true
    local msg = tostring(err)
    if eof or msg:find("closed", 1, true) or msg:find("Broken pipe", 1, true) then
      raise("reset", string.format("repl %s: device hung up (%s)", self.name, msg), {eof = true})
    end
    raise("io", string.format("repl %s: %s", self.name, msg))
  end
  self.tx = self.tx + #data
  if self.trace then self.trace("tx", data) end
end

-- Every read from the port goes through here, so rx and the trace see every byte.
function R:_read_port(max, timeout)
  local s = self.port:read(max, timeout)
  if s ~= "" then
    self.rx = self.rx + #s
    if self.trace then self.trace("rx", s) end
  end
  return s
end

-- Reads what arrives within `left` seconds (at least one byte, or "" on timeout).
function R:_recv(left)
  local s = self:_read_port(65536, left > 0 and left or 0)
  if s == "" and self.port.is_eof and self.port:is_eof() then
    raise("reset", string.format("repl %s: device hung up (end of file) while waiting", self.name),
      {eof = true})
  end
  return s
end

function R:_timeout(what, timeout, seen)
  raise("timeout", string.format('repl %s: timeout after %.1f s waiting for %s; last bytes seen: "%s"',
    self.name, timeout, what, escape(seen or "")), {what = what, seen = seen or ""})
end

-- Everything before delim (delim consumed). With sink, bytes are handed to sink(piece) as they
-- come instead of being returned (delim must then be one byte).
function R:_read_until(delim, timeout, what, sink)
  local buf = self.rbuf
  local i = buf:find(delim, 1, true)
  if i then
    self.rbuf = buf:sub(i + #delim)
    local head = buf:sub(1, i - 1)
    if sink then sink(head) return "" end
    return head
  end
  local parts, n = {}, 0
  if sink then
    if buf ~= "" then sink(buf) end
    buf = ""
  end
  if buf ~= "" then n = 1; parts[1] = buf end
  self.rbuf = ""
  local keep = #delim - 1
  local tail = keep > 0 and buf:sub(-keep) or ""
  local seen_tail = buf
  local deadline = now() + timeout
  while true do
    local left = deadline - now()
    if left <= 0 then
      if not sink then self.rbuf = table.concat(parts) end
      self:_timeout(what or string.format('"%s"', escape(delim)), timeout, seen_tail)
    end
    local ok, s = pcall(self._recv, self, left)
    if not ok then
      if not sink then self.rbuf = table.concat(parts) end
      error(s, 0)
    end
    if s ~= "" then
      seen_tail = (seen_tail .. s):sub(-64)
      local probe = tail .. s
      local j = probe:find(delim, 1, true)
      if j then
        if sink then
          if j > 1 then sink(probe:sub(#tail + 1, j - 1)) end
          self.rbuf = probe:sub(j + #delim)
          return ""
        end
        n = n + 1; parts[n] = s
        local all = table.concat(parts)
        local at = #all - #probe + j
        self.rbuf = all:sub(at + #delim)
        return all:sub(1, at - 1)
      end
      if sink then sink(s) else n = n + 1; parts[n] = s end
      tail = keep > 0 and probe:sub(-keep) or ""
    end
  end
end

function R:_read_exact(count, timeout, what)
  local deadline = now() + timeout
  local parts, have = {self.rbuf}, #self.rbuf
  self.rbuf = ""
  while have < count do
    local left = deadline - now()
    if left <= 0 then
      local seen = table.concat(parts)
      self.rbuf = seen
      self:_timeout(what or (count .. " bytes"), timeout, seen)
    end
    local s = self:_recv(left)
    parts[#parts + 1] = s
    have = have + #s
  end
  local all = table.concat(parts)
  self.rbuf = all:sub(count + 1)
  return all:sub(1, count)
end

-- True when a byte is ready now (used while streaming, to pick up flow-control bytes early).
function R:_ready()
  if self.rbuf ~= "" then return true end
  local s = self:_read_port(65536, 0)
  if s ~= "" then
    self.rbuf = s
    return true
  end
  return false
end

-- Reads and discards until the line stays quiet for `quiet` seconds (bounded by `limit`).
function R:_drain(quiet, limit)
  local parts = {self.rbuf}
  self.rbuf = ""
  local deadline = now() + limit
  while now() < deadline do
    local s = self:_read_port(65536, quiet)
    if s == "" then break end
    parts[#parts + 1] = s
  end
  return table.concat(parts)
end

---------------------------------------------------------------------------------------------
-- attach / modes

local function note_banner(self, text)
  local banner = text:match("(MicroPython [^\r\n]*)")
  if banner then self.banner = banner end
  if text:find("JS with Emscripten", 1, true) then self.wasm = true end
end

--- Attaches to the REPL on `port` (an mpctl port). opts: timeout (default 10 s per operation),
-- raw_paste (nil = detect, true/false = force), binary (nil = probe on first use, false = never),
-- chunk (binary chunk, 256), window (binary chunks in flight, 2), batch (bytes per base64 exec,
-- 8192), line (raw bytes per base64 line, 1536), soft_reset (do one on attach), trace(dir, bytes),
-- pace (seconds to sleep after each 256 bytes of plain raw-REPL input, as mpremote does for boards
-- whose UART drops bytes; 0 by default: raw-paste has real flow control and is used when present).
function M.attach(port, opts)
  opts = opts or {}
  local self = setmetatable({
    port = port, name = opts.name or port.name or tostring(port),
    rbuf = "", tx = 0, rx = 0, raw = false,
    timeout = opts.timeout or 10,
    paste = opts.raw_paste, binary = opts.binary, paste_checked = false,
    chunk = opts.chunk or 256, window = opts.window or 2,
    batch = opts.batch or 8192, line = opts.line or 1536,
    trace = opts.trace, owns_port = opts.owns_port, pace = opts.pace,
  }, R)
  -- line must be a multiple of 3 so each base64 line decodes on its own without padding
  self.line = self.line - self.line % 3
  self:enter_raw()
  if opts.soft_reset then self:soft_reset() end
  self:_probe()
  return self
end

-- Learns the platform before the first raw-paste: the WebAssembly port answers R\x01 to the
-- raw-paste request and then hangs for good, so it must never be asked.
function R:_probe()
  local out = self:_exec_raw(
    "import sys\nprint(sys.platform)\nprint(getattr(sys.implementation,'_machine',''))", self.timeout)
  local platform, machine = out:match("^([^\r\n]*)\r?\n([^\r\n]*)")
  self.platform, self.machine = platform, machine
  if platform == "webassembly" or (machine or ""):find("JS with Emscripten", 1, true) then
    self.wasm = true
  end
  if self.wasm then
    if self.paste == nil then self.paste = false end
    if self.binary == nil then self.binary = "out" end  -- stdout works, stdin does not
  end
end

function R:enter_raw(timeout)
  if self.raw then return end
  timeout = timeout or self.timeout
  -- Ctrl-C stops a running program (on devices that can be interrupted); whatever it prints,
  -- including a banner from a fresh start, is read before asking for the raw REPL.
  self:_write("\r\x03\x03")
  local early = self:_drain(0.05, 1.0)
  note_banner(self, early)
  self:_write("\r\x01")
  -- a board still booting (just reset, or flashed) may drop what it gets before its REPL runs:
  -- ask again every second until the overall timeout
  local deadline = now() + timeout
  local ok, before, seen_so_far = false, nil, ""
  repeat
    local step = math.min(1, deadline - now())
    ok, before = pcall(self._read_until, self, RAW_BANNER .. ">", math.max(step, 0.001), "the raw REPL prompt")
    if ok or not M.is_error(before, "timeout") then break end
    seen_so_far = (seen_so_far .. before.seen):sub(-64)
    if now() >= deadline then before.seen = seen_so_far break end
    self.rbuf = self.rbuf:sub(-64)   -- a banner split across the step boundary still matches
    self:_write("\r\x03\x01")
  until false
  if not ok then
    -- show what the line carried since Ctrl-C too: garbage from a wrong baud rate comes early
    if M.is_error(before, "timeout") then
      self:_timeout("the raw REPL prompt", timeout, (early .. before.seen):sub(-64))
    end
    error(before, 0)
  end
  note_banner(self, before)
  self.raw, self.helpers = true, false
end

function R:leave_raw(timeout)
  if not self.raw then return end
  self:_write("\r\x02")
  local before = self:_read_until(">>> ", timeout or self.timeout, "the friendly prompt")
  note_banner(self, before)
  self.raw = false
end

--- Ctrl-C, then waits for the friendly prompt. A device that keeps running (an uninterruptible
-- loop) raises a timeout error; the object is then unusable until the device is reset.
function R:interrupt(opts)
  opts = opts or {}
  local timeout = opts.timeout or 3
  self:_write("\r\x03")
  local seen = self:_drain(0.05, math.min(timeout, 0.5))
  self:_write("\x03\x02")   -- Ctrl-B: the friendly REPL reprints its banner and prompt
  self.rbuf = seen .. self.rbuf
  local ok, err = pcall(self._read_until, self, ">>> ", timeout, "the prompt after Ctrl-C")
  if not ok then
    if M.is_error(err, "timeout") then
      raise("timeout", string.format('repl %s: device did not return to the prompt within %.1f s after Ctrl-C '
        .. '(code still running and not interruptible?); last bytes seen: "%s"', self.name, timeout,
        escape(err.seen)), {what = "prompt after Ctrl-C", seen = err.seen})
    end
    error(err, 0)
  end
  note_banner(self, err or "")
  -- Ctrl-C and Ctrl-B each bring a prompt; the second (after the banner) is still coming
  note_banner(self, self:_drain(0.05, 0.5))
  self.raw = false
end

--- One line at the friendly prompt; returns what the device printed before the next prompt
-- (echo removed, "\r\n" folded to "\n" as exec does).
function R:friendly(line, timeout)
  self:leave_raw()
  self:_write(line .. "\r")
  local out = self:_read_until(">>> ", timeout or self.timeout, "the friendly prompt")
  -- the device echoes the line first
  local echo = out:find("\r\n", 1, true)
  if echo then out = out:sub(echo + 2) end
  return (out:gsub("\r\n", "\n"))
end

---------------------------------------------------------------------------------------------
-- exec

-- Plain raw REPL: code, Ctrl-D, "OK".
function R:_send_raw(code, timeout)
  local pace = self.pace
  if pace and pace > 0 then
    for i = 1, #code, 256 do
      self:_write(code:sub(i, i + 255))
      time.sleep(pace)
    end
  else
    self:_write(code)
  end
  self:_write("\x04")
  local ok = self:_read_exact(2, timeout, '"OK" after the code')
  if ok ~= "OK" then
    local more = self:_drain(0.05, 0.3)
    raise("protocol", string.format('repl %s: expected "OK" after sending code, got "%s"', self.name,
      escape(ok .. more)), {seen = ok .. more})
  end
end

-- Raw-paste (anchors §3.2): \x05A\x01 -> R\x01 + window u16 LE (+ an immediate \x01 grant);
-- the host never sends more than it has been granted; \x01 adds one window; \x04 from the device
-- aborts. Returns true when the code went through raw-paste, false when the device does not
-- support it (the raw REPL is then waiting for plain input), "aborted" on a device abort.
function R:_send_paste(code, timeout)
  local deadline = now() + timeout
  self:_write("\x05A\x01")
  local r = self:_read_exact(2, timeout, "the raw-paste reply")
  if r == "R\x00" then
    -- pyexec prints its raw prompt again after R\x00 (do_reader_stdin returns to the loop)
    local ok = pcall(self._read_until, self, ">", math.min(timeout, 1), "the raw prompt after R\\x00")
    if not ok then self.rbuf = "" end
    self.paste = false
    return false
  elseif r ~= "R\x01" then
    -- old firmware: \x05A went into its line buffer and \x01 made it reprint the banner,
    -- which also clears the line
    self.rbuf = r .. self.rbuf
    self:_read_until(RAW_BANNER .. ">", timeout, "the raw REPL banner (no raw-paste)")
    self.paste = false
    return false
  end
  local w = self:_read_exact(2, timeout, "the raw-paste window size")
  local window = w:byte(1) | (w:byte(2) << 8)
  if window == 0 then raise("protocol", "repl " .. self.name .. ": raw-paste window of 0") end
  if not self.paste_checked then
    -- a device that aborts right after the window (the WebAssembly port) is broken, not busy:
    -- look once per connection, before any code is sent.
    local g = self:_read_exact(1, timeout, "the first raw-paste grant")
    self.rbuf = g .. self.rbuf
    local t = now() + 0.03
    while now() < t and #self.rbuf < 2 do
      self.rbuf = self.rbuf .. self:_read_port(16, t - now())
    end
    if self.rbuf:sub(2, 2) == "\x04" then
      self.paste, self.paste_broken = false, true
      raise("unsupported", string.format("repl %s: raw-paste aborted right after the window "
        .. "(broken raw-paste, as on WebAssembly MicroPython); the device must be reset", self.name))
    end
    self.paste_checked = true
  end
  self.paste = true
  self.paste_window = window
  local remain, i, len = window, 1, #code
  while i <= len do
    while remain == 0 or self:_ready() do
      local c = self:_read_exact(1, math.max(deadline - now(), 0), "a raw-paste grant")
      if c == "\x01" then
        remain = remain + window
      elseif c == "\x04" then
        self:_write("\x04")
        return "aborted"
      else
        local more = self:_drain(0.05, 0.3)
        raise("protocol", string.format('repl %s: unexpected byte during raw-paste after %d of %d bytes: "%s"',
          self.name, i - 1, len, escape(c .. more)), {seen = c .. more})
      end
    end
    local n = math.min(remain, len - i + 1)
    self:_write(code:sub(i, i + n - 1))
    i, remain = i + n, remain - n
  end
  self:_write("\x04")
  -- the device answers the end of data with \x04; grants may still be queued before it
  local extra = self:_read_until("\x04", math.max(deadline - now(), 0), "the raw-paste end acknowledgement")
  if extra:find("[^\1]") then
    raise("protocol", string.format('repl %s: unexpected bytes before the raw-paste end acknowledgement: "%s"',
      self.name, escape(extra)), {seen = extra})
  end
  return true
end

-- Sends code by the best available method; leaves the device running it.
function R:_send(code, timeout)
  if not self.raw then self:enter_raw(timeout) end
  if self.paste ~= false then
    local r = self:_send_paste(code, timeout)
    if r then return r end
  end
  self:_send_raw(code, timeout)
  return true
end

-- Reads stdout, stderr and the next prompt.
function R:_follow(timeout, sink)
  local deadline = now() + timeout
  local out = self:_read_until("\x04", timeout, "the end of the output", sink)
  local err = self:_read_until("\x04", time_left(deadline), "the end of the error output")
  self:_read_exact(1, time_left(deadline), "the raw REPL prompt")
  return out, err
end

function R:_device_error(out, err)
  local exc = exception_line(err)
  raise("device", string.format("%s (on %s)\n%s", exc, self.name, err:gsub("\r\n", "\n")),
    {traceback = err, exception = exc, stdout = out})
end

-- The result of code already sent: its stdout, or its traceback raised as a device error.
function R:_result(timeout, sink)
  local out, err = self:_follow(timeout, sink)
  if err ~= "" then self:_device_error(out, err) end
  return out
end

-- exec with the plain raw REPL only (used to probe before raw-paste is known to be safe)
function R:_exec_raw(code, timeout)
  if not self.raw then self:enter_raw(timeout) end
  self:_send_raw(code, timeout)
  return self:_result(timeout)
end

--- Runs code; returns its stdout. opts.timeout (s), opts.on_output(piece) streams stdout.
-- On timeout the device is sent Ctrl-C; the error says whether it came back.
function R:exec(code, opts)
  opts = opts or {}
  local timeout = opts.timeout or self.timeout
  local start = now()
  local sink = opts.on_output
  local flush = function() end
  if sink and not opts.raw_output then
    -- "\r\n" -> "\n" across piece boundaries: a trailing "\r" waits for the next piece
    local user, held = sink, ""
    sink = function(piece)
      piece = held .. piece
      held = piece:sub(-1) == "\r" and "\r" or ""
      if held ~= "" then piece = piece:sub(1, -2) end
      piece = piece:gsub("\r\n", "\n")
      if piece ~= "" then user(piece) end
    end
    flush = function() if held ~= "" then user(held) held = "" end end
  end
  local ok, res = pcall(function()
    local sent = self:_send(code, timeout)
    local out, err = self:_follow(math.max(timeout - (now() - start), 0.001), sink)
    flush()
    -- boards print "\r\n" (cooked stdout), the WebAssembly port "\n": exec returns "\n" lines
    -- unless opts.raw_output asks for the bytes as sent
    if not opts.raw_output then out = out:gsub("\r\n", "\n") end
    if sent == "aborted" and err == "" then
      raise("protocol", string.format("repl %s: device aborted the raw-paste transfer", self.name))
    end
    if err ~= "" then self:_device_error(out, err) end
    return out
  end)
  if ok then return res end
  if M.is_error(res, "timeout") and not opts.no_interrupt then
    local iok, ierr = pcall(self.interrupt, self, {timeout = opts.interrupt_timeout or 2})
    res.message = res.message .. (iok and "; interrupted with Ctrl-C, device back at the prompt"
      or ("; " .. tostring(ierr)))
    res.recovered = iok
  end
  error(res, 0)
end

--- Evaluates a Python expression; returns its repr() text.
function R:eval(expr, opts)
  local out = self:exec("print(repr(" .. expr .. "))", opts)
  return (out:gsub("\r?\n$", ""))
end

function R:_ensure_helpers()
  if self.helpers then return end
  self:exec(HELPERS)
  self.helpers = true
end

--- Soft reset. Returns how it was seen: "soft reboot" (MPY: soft reboot / raw banner), "banner"
-- (a fresh friendly banner: the fixture restarted the WebAssembly process) or "eof" (the device
-- hung up: a WebAssembly process on a bare pty). Afterwards the raw REPL is entered again unless
-- the port is gone.
function R:soft_reset(timeout)
  timeout = timeout or self.timeout
  if not self.raw then self:enter_raw(timeout) end
  self:_write("\x04")
  local how
  local ok, err = pcall(function()
    self:_read_until("OK", timeout, '"OK" after the soft reset request')
    local deadline = now() + timeout
    -- "MPY: soft reboot" often comes in the same read as the "OK" before it
    local seen = self.rbuf
    self.rbuf = ""
    while true do
      if seen:find("soft reboot", 1, true) or seen:find(RAW_BANNER, 1, true) then how = "soft reboot" break end
      if seen:find("MicroPython v", 1, true) then how = "banner" break end
      local left = deadline - now()
      if left <= 0 then self:_timeout("a soft reboot", timeout, seen) end
      seen = seen .. self:_recv(left)
    end
    self.rbuf = ""
    note_banner(self, seen)
    -- let the rest of the boot output (banner, boot.py) arrive before re-entering raw mode
    note_banner(self, self:_drain(0.1, 2))
  end)
  if not ok then
    if M.is_error(err, "reset") then
      self.raw, self.helpers, self.gone = false, false, true
      return "eof"
    end
    error(err, 0)
  end
  self.raw, self.helpers, self.paste_checked = false, false, false
  self:enter_raw(timeout)
  return how
end

--- Device identity: sys.implementation, sys.platform, os.uname() when present.
function R:info()
  local out = self:exec([[
import sys
i=sys.implementation
v=i.version
print('name',i.name)
print('version','%d.%d.%d'%v[:3]+('-'+v[3] if len(v)>3 and v[3] else ''))
print('machine',getattr(i,'_machine',''))
print('build',getattr(i,'_build',''))
print('mpy',getattr(i,'_mpy',''))
print('platform',sys.platform)
try:
 import os
 u=os.uname()
 for k in ('sysname','nodename','release','version','machine'):
  print('uname.'+k,getattr(u,k))
except Exception:
 pass
]])
  local info = {}
  for line in out:gmatch("[^\r\n]+") do
    local k, v = line:match("^(%S+) ?(.*)$")
    if k then
      local sub = k:match("^uname%.(.*)")
      if sub then
        info.uname = info.uname or {}
        info.uname[sub] = v
      else
        info[k] = v
      end
    end
  end
  return info
end

---------------------------------------------------------------------------------------------
-- file operations

function R:ls(path)
  self:_ensure_helpers()
  local out = self:exec("_mpctl_ls(" .. pyquote(path or "/") .. ")")
  local list = {}
  for line in out:gmatch("[^\r\n]+") do
    local t, size, name = line:match("^(%d+) (%-?%d+) (.*)$")
    if t then
      t = tonumber(t)
      local dir = (t & 0x4000) ~= 0
      list[#list + 1] = {
        name = name,
        type = dir and "dir" or "file",
        size = (not dir and tonumber(size) >= 0) and tonumber(size) or nil,   -- a dir's size means nothing
      }
    end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

-- Any OSError from stat counts as absent: WebAssembly errno numbers are Emscripten's.
function R:stat(path)
  local out = self:exec("import os\ntry:\n s=os.stat(" .. pyquote(path) .. ")\n print(s[0],s[6])\n"
    .. "except OSError:\n print('-')")
  local mode, size = out:match("^(%d+) (%d+)")
  if not mode then return nil end
  mode = tonumber(mode)
  return {type = (mode & 0x4000) ~= 0 and "dir" or "file", size = tonumber(size)}
end

--- sha256 of a device file, computed on the device: hex, or nil if absent; raises
-- kind="unsupported" if the device has no hashlib.
function R:sha256(path)
  self:_ensure_helpers()
  local out = self:exec("print(_mpctl_h(" .. pyquote(path) .. "))")
  local h = out:match("^(%S+)")
  if h == "?" then return nil end
  if h == "-" then raise("unsupported", "repl " .. self.name .. ": device has no hashlib") end
  return h
end

function R:rm(path, opts)
  if opts and opts.recursive then
    self:exec([[
import os
def _mpctl_rmr(p):
 if os.stat(p)[0]&0x4000:
  for e in os.ilistdir(p):
   _mpctl_rmr(p.rstrip('/')+'/'+e[0])
  os.rmdir(p)
 else:
  os.remove(p)
_mpctl_rmr(]] .. pyquote(path) .. ")")
  else
    self:exec("import os\nos.remove(" .. pyquote(path) .. ")")
  end
end

function R:rmdir(path)
  self:exec("import os\nos.rmdir(" .. pyquote(path) .. ")")
end

function R:mkdir(path, opts)
  if opts and opts.exist_ok then
    self:exec("import os\ntry:\n os.mkdir(" .. pyquote(path) .. ")\nexcept OSError:\n"
      .. " if not os.stat(" .. pyquote(path) .. ")[0]&0x4000:\n  raise")
  else
    self:exec("import os\nos.mkdir(" .. pyquote(path) .. ")")
  end
end

-- Can the device's code read binary data from stdin? One tiny receiver run: it announces itself,
-- we send \x03 (data, with kbd_intr off), it acks. If the read raises instead (WebAssembly: OSError),
-- our \x03 lands in the raw REPL after the traceback, where it only clears the input line.
function R:_probe_binary()
  if self.binary == true or self.binary == false or self.binary == "out" then return end
  self:_ensure_helpers()
  local ok, err = pcall(function()
    self:_send("_mpctl_rx(None,1,1)", self.timeout)
    local c = self:_read_exact(1, self.timeout, "the receiver's ready byte")
    if c ~= "\x06" then self.rbuf = c .. self.rbuf; return false end
    self:_write("\x03")
    c = self:_read_exact(1, self.timeout, "the receiver's ack")
    if c ~= "\x06" then self.rbuf = c .. self.rbuf; return false end
    return true
  end)
  local _, e = self:_follow(self.timeout)
  if ok and err == true and e == "" then
    self.binary = true
  else
    self.binary = "out"
    self.binary_reason = (not ok and tostring(err)) or exception_line(e)
  end
end

-- A transfer may take three times its base64 wire time at the port's baud rate (USB CDC ports
-- ignore the rate and are faster) plus the usual per-operation timeout.
function R:_transfer_timeout(n)
  local ok, baud = pcall(function() return self.port:baud() end)
  local rate = ((ok and tonumber(baud)) or 115200) / 10
  return self.timeout + 3 * n * 4 / 3 / rate
end

local function stats_for(self, mode, bytes, tx0, rx0, t0, dir)
  local s = {mode = mode, bytes = bytes, seconds = now() - t0, wire_out = self.tx - tx0, wire_in = self.rx - rx0}
  s.wire_bytes = dir == "put" and s.wire_out or s.wire_in
  s.wire_per_byte = bytes > 0 and s.wire_bytes / bytes or 0
  s.rate = s.seconds > 0 and bytes / s.seconds or 0
  return s
end

function R:_put_base64(data, path, timeout, finish)
  local line = self.line
  local per_exec = math.max(self.batch - self.batch % line, line)
  local pos, len, first = 1, #data, true
  repeat
    local parts = {}
    if first then
      parts[1] = "from binascii import a2b_base64 as _d\n_f=open(" .. pyquote(path) .. ",'wb')\n_w=_f.write\n"
    end
    local stop = math.min(pos + per_exec - 1, len)
    for i = pos, stop, line do
      parts[#parts + 1] = "_w(_d(b'" .. b64.encode(data:sub(i, math.min(i + line - 1, stop))) .. "'))\n"
    end
    pos = stop + 1
    if pos > len then parts[#parts + 1] = "_f.close()\n" .. finish .. "\n" end
    local out = self:exec(table.concat(parts), {timeout = timeout})
    if pos > len then return out:match("^(%S+)") end
    first = false
  until false
end

function R:_put_binary(data, path, timeout, finish)
  local chunk, window = self.chunk, self.window
  local len = #data
  local nchunks = (len + chunk - 1) // chunk
  self:_send("_mpctl_rx(" .. pyquote(path) .. "," .. len .. "," .. chunk .. ")\n" .. finish, timeout)
  local deadline = now() + timeout
  local function byte(what)
    local c = self:_read_exact(1, time_left(deadline), what)
    if c == "\x04" then
      self.rbuf = c .. self.rbuf
      self:_result(time_left(deadline))
      raise("protocol", "repl " .. self.name .. ": binary receiver ended early")
    elseif c ~= "\x06" then
      raise("protocol", string.format('repl %s: binary receiver sent "%s" instead of an ack', self.name,
        escape(c .. self:_drain(0.05, 0.3))))
    end
  end
  byte("the receiver's ready byte")
  local sent, acked = 0, 0
  while acked < nchunks do
    while sent < nchunks and sent - acked < window do
      local i = sent * chunk + 1
      self:_write(data:sub(i, i + chunk - 1))
      sent = sent + 1
    end
    byte(string.format("the ack of chunk %d/%d", acked + 1, nchunks))
    acked = acked + 1
  end
  return self:_result(time_left(deadline)):match("^(%S+)")
end

-- One transfer of payload into target, ending with `finish` (code that prints the hash line).
function R:_put_payload(mode, payload, target, timeout, finish)
  if mode == "binary" then
    local ok, res = pcall(self._put_binary, self, payload, target, timeout, finish)
    if not ok then
      -- chunks still in flight would reach the raw REPL as input: start over from Ctrl-C next time
      self.raw, self.helpers = false, false
      error(res, 0)
    end
    return {mode = "binary", hash = res}
  end
  local h = self:_put_base64(payload, target, timeout, finish)
  return {mode = self.paste and "base64-paste" or "base64-raw", hash = h}
end

function R:_has_deflate()
  if self.deflate == nil then
    local ok = pcall(require, "mpctl.zlib")
    if not ok then self.deflate = false return false end
    local out = self:exec("try:\n import deflate\n print(hasattr(deflate,'DeflateIO'))\nexcept ImportError:\n print(False)")
    self.deflate = out:find("True", 1, true) ~= nil
  end
  return self.deflate
end

--- Writes data to a device file. opts: force (skip the hash comparison), mode ("binary",
-- "base64"; default: best available), compress (default true: deflate when that saves >= 10 % and
-- the device has the deflate module), timeout (whole transfer; default scales with size).
-- Returns stats {mode, bytes, wire_bytes, wire_per_byte, seconds, rate, skipped, status}.
function R:put(data, path, opts)
  opts = opts or {}
  local timeout = opts.timeout or self:_transfer_timeout(#data)
  local want = hash.hex(hash.sha256(data))
  self:_ensure_helpers()
  local t0, tx0, rx0 = now(), self.tx, self.rx
  if not opts.force then
    local ok, have = pcall(self.sha256, self, path)
    if ok and have == want then
      local s = stats_for(self, "skip", #data, tx0, rx0, t0, "put")
      s.skipped, s.status, s.sha256 = true, "up to date", want
      return s
    end
  end
  t0, tx0, rx0 = now(), self.tx, self.rx
  local mode = opts.mode
  if mode == nil or mode == "binary" then
    if self.binary == nil then self:_probe_binary() end
    if self.binary == true then mode = "binary"
    elseif mode == "binary" then
      raise("unsupported", string.format("repl %s: device stdin does not take binary data (%s)", self.name,
        self.binary_reason or "WebAssembly port"))
    end
  end
  -- The data lands in a temporary file that replaces path only once its device hash matches
  -- (_mpctl_fin). Compressible data (source files) travels deflated into a second temporary file
  -- that the device inflates (deflate module, MicroPython >= 1.21); the hash is of the final file.
  local tmp = path .. ".mpctl~"
  local payload, target, zarg, zsuffix = data, tmp, "None", ""
  if opts.compress ~= false and #data >= 256 and self:_has_deflate() then
    local z = require("mpctl.zlib").compress(data, 9)
    if #z <= #data * 0.9 then
      payload, target, zsuffix = z, path .. ".mpctl~z", "+deflate"
      zarg = pyquote(target)
    end
  end
  local finish = "print(_mpctl_fin(" .. pyquote(tmp) .. "," .. pyquote(path) .. "," .. pyquote(want) .. ","
    .. zarg .. "))"
  local ok, res = pcall(self._put_payload, self, mode, payload, target, timeout, finish)
  if not ok then
    if M.is_error(res, "device") then
      -- the device is back at the prompt: leave no temporary files behind
      pcall(self.exec, self, "import os\nfor _p in (" .. pyquote(tmp) .. "," .. pyquote(target) .. "):\n"
        .. " try:\n  os.remove(_p)\n except OSError:\n  pass")
      if zsuffix ~= "" then
        -- inflating failed on the device (too little RAM for the 32 KB window?): plain from now on
        self.deflate = false
        local o = {}
        for k, v in pairs(opts) do o[k] = v end
        o.compress, o.force = false, true
        return self:put(data, path, o)
      end
    end
    error(res, 0)
  end
  mode = res.mode .. zsuffix
  local got = res.hash
  local s = stats_for(self, mode, #data, tx0, rx0, t0, "put")
  if got == "-" then
    -- no hashlib on the device: read the temporary file back, and move it into place if it matches
    got = hash.hex(hash.sha256(self:get(tmp, {verify = false})))
    if got == want then
      self:exec("_mpctl_mv(" .. pyquote(tmp) .. "," .. pyquote(path) .. ")")
    else
      self:rm(tmp)
    end
  end
  if got ~= want then
    raise("protocol", string.format("repl %s: %s: sha256 mismatch after writing %d bytes: device %s, host %s "
      .. "(the device file was left as it was)", self.name, path, #data, tostring(got), want),
      {device_sha256 = got, sha256 = want})
  end
  s.sha256, s.status = want, "written"
  return s
end

function R:put_file(localpath, path, opts)
  local f = assert(io.open(localpath, "rb"))
  local data = f:read("a")
  f:close()
  return self:put(data, path, opts)
end

--- Reads a device file. opts: mode ("binary" | "base64"), verify (default true: device sha256
-- compared), timeout. Returns data, stats.
function R:get(path, opts)
  opts = opts or {}
  self:_ensure_helpers()
  local mode = opts.mode or ((self.binary == false or self.no_stdout_buffer) and "base64" or "binary")
  local t0, tx0, rx0 = now(), self.tx, self.rx
  local enc = mode == "binary" and 0 or 1
  self:_send("_mpctl_tx(" .. pyquote(path) .. ",1024," .. enc .. ")", self.timeout)
  local head = self:_read_until("\n", self.timeout, "the file length")
  local n = tonumber(head:match("#(%d+)\r?$"))
  if not n then
    -- no length line: the device raised (absent file ...) before writing
    self.rbuf = head .. "\n" .. self.rbuf
    local out, err = self:_follow(self.timeout)
    if err ~= "" and enc == 0 and not opts.mode and err:find("AttributeError", 1, true) then
      -- no sys.stdout.buffer on this port: base64 from now on
      self.no_stdout_buffer = true
      return self:get(path, opts)
    end
    if err ~= "" then self:_device_error(out, err) end
    raise("protocol", string.format('repl %s: bad reply to a file read: "%s"', self.name, escape(out)))
  end
  local timeout = opts.timeout or self:_transfer_timeout(n)
  local deadline = now() + timeout
  local data
  if enc == 0 then
    data = self:_read_exact(n, timeout, string.format("%d bytes of %s", n, path))
    local out, err = self:_follow(time_left(deadline))
    if err ~= "" then self:_device_error(data .. out, err) end
  else
    data = b64.decode(self:_result(timeout))
  end
  local s = stats_for(self, mode, #data, tx0, rx0, t0, "get")
  if #data ~= n then
    raise("protocol", string.format("repl %s: %s: expected %d bytes, got %d", self.name, path, n, #data))
  end
  if opts.verify ~= false then
    -- only a device without hashlib goes unverified; any other failure of the check is an error
    local ok, dev = pcall(self.sha256, self, path)
    if not ok and not M.is_error(dev, "unsupported") then error(dev, 0) end
    local host = hash.hex(hash.sha256(data))
    if ok and dev ~= host then
      raise("protocol", string.format("repl %s: %s: sha256 mismatch after reading %d bytes: device %s, host %s",
        self.name, path, #data, tostring(dev), host))
    end
    s.sha256 = host
  end
  return data, s
end

function R:get_file(path, localpath, opts)
  local data, s = self:get(path, opts)
  require("mpctl.fs").write(localpath, data)   -- temp file + rename: never a half-written file
  return s
end

function R:close()
  if self.raw and not self.gone then pcall(self.leave_raw, self, 1) end
  if self.owns_port then pcall(self.port.close, self.port) end
end

-- What `mpctl exec` and `mpctl run` do: run code on the board behind `port`, streaming its output
-- to stdout; a device traceback goes to stderr and makes the result false (exit code 1).
function M.run_streaming(port, code, timeout)
  local r = M.attach(port)
  local ok, err = pcall(r.exec, r, code, {
    timeout = timeout,
    on_output = function(s) io.stdout:write(s) io.stdout:flush() end,
  })
  pcall(r.close, r)
  if ok then return true end
  if M.is_error(err, "device") then
    io.stderr:write((err.traceback:gsub("\r\n", "\n")))
    return false
  end
  error(err, 0)
end

-- The post-flash proof, shared by verify_repl and the flashing recipes: reach the REPL on an
-- open port, run print('hello'), report what firmware answers. Raises a failed check.
function M.verify(port, opts)
  opts = opts or {}
  local mpctl = require("mpctl")
  local name = opts.name or port.name or tostring(port)
  local ok, r = pcall(M.attach, port, { timeout = opts.timeout or 10 })
  mpctl.check(ok, "REPL reachable on " .. tostring(name), r)
  local hok, out = pcall(r.exec, r, "print('hello')")
  if hok then io.write(">>> print('hello')\n", out) end
  mpctl.check(hok and out:gsub("\r", "") == "hello\n", "print('hello') prints hello", out)
  local info = r:info()
  print(string.format("MicroPython %s on %s%s (sys.platform %s)", info.version or "?", info.machine or "?",
    (info.build and info.build ~= "") and (", build " .. info.build) or "", info.platform or "?"))
  if info.uname then
    local u = info.uname
    print(string.format("os.uname(): sysname=%s release=%s version=%s machine=%s",
      u.sysname or "", u.release or "", u.version or "", u.machine or ""))
  else
    print("os.uname(): not available on this port")
  end
  r:close()
  return info
end

return M
