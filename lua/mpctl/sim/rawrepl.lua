--[[ mpctl.sim.rawrepl: a MicroPython device model for the raw REPL and raw-paste protocols.
(Over 500 lines on purpose: one model of one protocol, kept in one file so it reads side by side
with pyexec.c; the backend driving the real MicroPython is the only other part.)

    mpctl sim rawrepl --listen pty [window=128] [raw_paste=true|false|R0|broken] [binary_stdin=true|false]
                                   [baud=115200] [throttle=true] [abort_after=N] [corrupt_at=N] [corrupt_times=K]
    --port "sim://rawrepl?window=32&throttle=true"

What is modelled, byte for byte as shared/runtime/pyexec.c does it (anchors.md §3.2):
  * friendly REPL: banner "MicroPython vX.Y.Z on DATE; <machine>", "Type "help()" for more
    information.", ">>> "; one line at a time (no continuation lines); Ctrl-A raw REPL, Ctrl-B
    banner again, Ctrl-C fresh prompt, Ctrl-D soft reboot.
  * raw REPL: "raw REPL; CTRL-B to exit\r\n>" on entry and on Ctrl-A; Ctrl-C clears the line; Ctrl-B
    "\r\n" + friendly banner; Ctrl-D runs the line: "OK", stdout, \x04, stderr, \x04, ">"; an empty
    line + Ctrl-D is a soft reset: "OK\r\n", "MPY: soft reboot\r\n", raw banner again.
  * raw-paste (\x05A\x01 on an empty line): "R\x01", window as u16 LE, then one \x01 at once (so
    the host starts with two windows of credit), one \x01 per `window` bytes consumed; Ctrl-D ends
    (the device answers \x04), Ctrl-C ends with \x04 and a KeyboardInterrupt. Bytes beyond the
    credit granted are dropped, as a full stdin buffer would lose them, and reported on stderr.
    raw_paste=R0 answers "R\x00" (understood, unsupported); raw_paste=false is old firmware (\x05A
    stays in the line, the \x01 reprints the raw banner); raw_paste=broken copies the WebAssembly port's bug (R\x01, window,
    \x01, \x04, then it reads nothing more). abort_after=N: after N pasted bytes the device sends
    \x04 (as pyexec does when compilation fails early), waits for the host's \x04 and reports a
    MemoryError. corrupt_at=N flips one bit of byte N of every binary upload (fault injection);
    corrupt_times=K only of the first K uploads.
  * execution: the code is run by the real MicroPython (WebAssembly, through its plain raw REPL,
    which works), so stdout, tracebacks, files and hashes are real. Only sys.platform and
    sys.implementation._machine are replaced (through sys.modules) so that clients treat this as an
    ordinary device and use raw-paste with it. Ctrl-C while code runs restarts the interpreter and
    reports KeyboardInterrupt (the WebAssembly port itself cannot be interrupted; its in-memory
    files are lost then). Soft reset clears the interpreter's globals but keeps its files, as a
    board's flash filesystem would.
  * binary stdin (binary_stdin=true, the default): the WebAssembly build cannot read stdin from
    code (OSError 29), so this fixture performs the one stdin-reading program mpctl sends — the
    receiver `_mpctl_rx(path, n, chunk[, silence_ms])` of mpctl.repl — itself (giving up with
    OSError 110 after silence_ms without a byte, as the real one does): it sends the ready byte \x06, reads
    n raw bytes from the wire in `chunk`-byte pieces with Ctrl-C/Ctrl-D taken as data (as
    micropython.kbd_intr(-1) makes a board do), acks each piece with \x06 as soon as it is read, and
    then writes the bytes into the real MicroPython's filesystem (base64 over its internal raw REPL,
    off the modelled wire) before running the rest of the code there. Any other code is forwarded.
    binary_stdin=false forwards the receiver too, so it fails as on a device whose stdin cannot
    be read.
  * wire: throttle=true limits both directions to baud/10 bytes per second (8N1), so throughput
    can be compared with the wire rate honestly.
]]
local serial = require("mpctl.serial")
local time = require("mpctl.time")
local mp = require("mpctl.sim.micropython")
local serve = require("mpctl.sim.serve")

-- The fixture's own codec for what it passes to the backend off the modelled wire: plain hex,
-- decoded there by binascii.unhexlify. Deliberately not the client's base64 or quoting code, so
-- a mistake in those cannot hide in the fixture that tests them.
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local M = {}

local VERSION_BANNER = "MicroPython v1.27.0 on 2025-12-10; mpctl rawrepl fixture with WebAssembly MicroPython"
local FRIENDLY = VERSION_BANNER .. "\r\nType \"help()\" for more information.\r\n"
local RAW_BANNER = "raw REPL; CTRL-B to exit\r\n>"

local DISGUISE = [[
import sys
class _MpctlNS:
 pass
_i=_MpctlNS()
for _k in ('name','version','_mpy','_build'):
 setattr(_i,_k,getattr(sys.implementation,_k,''))
_i._machine='mpctl rawrepl fixture'
_s=_MpctlNS()
for _k in dir(sys):
 if not _k.startswith('__'):
  setattr(_s,_k,getattr(sys,_k))
_s.platform='mpctl-sim'
_s.implementation=_i
sys.modules['sys']=_s
del _i,_s,_k,_MpctlNS
]]

local CLEAR_GLOBALS = "for _k in list(globals()):\n if not _k.startswith('__'):\n  del globals()[_k]\n"

local function truthy(v, default)
  if v == nil then return default end
  return require("mpctl.options").yes_no(v) == true
end

local Hangup = {}

---------------------------------------------------------------------------------------------
-- the backend: a WebAssembly MicroPython driven through its plain raw REPL

local Backend = {}
Backend.__index = Backend

function Backend.new(opts)
  local self = setmetatable({opts = opts}, Backend)
  self:start()
  return self
end

function Backend:start()
  self.dev = mp.spawn(self.opts)
  self.buf = ""
  local deadline = time.now() + 10
  self.dev.port:write("\r\x01")
  self:_until(RAW_BANNER, deadline)
  local _, err = self:exec(DISGUISE, 10)
  if err ~= "" then error("sim rawrepl: backend setup failed: " .. err, 0) end
end

function Backend:stop()
  mp.stop(self.dev)
  self.dev = nil
end

function Backend:restart()
  self:stop()
  self:start()
end

-- Reads what the backend sent within `left` seconds; returns false when the client interrupted.
function Backend:_pump(left, client)
  local objs = {self.dev.port}
  if client then objs[2] = client.port end
  local ready = serial.poll(objs, math.min(left, 0.5))
  for _, o in ipairs(ready) do
    if o == self.dev.port then
      local s = self.dev.port:read(65536, 0)
      if s == "" and self.dev.port:is_eof() then error("sim rawrepl: backend exited", 0) end
      self.buf = self.buf .. s
    elseif client and client:poll_interrupt() then
      return false
    end
  end
  return true
end

function Backend:_until(delim, deadline, client)
  while true do
    local i = self.buf:find(delim, 1, true)
    if i then
      local head = self.buf:sub(1, i - 1)
      self.buf = self.buf:sub(i + #delim)
      return head
    end
    local left = deadline - time.now()
    if left <= 0 then error("sim rawrepl: backend timeout waiting for " .. delim, 0) end
    if not self:_pump(left, client) then return nil end
  end
end

-- Runs code; returns stdout, stderr. With client, a Ctrl-C from it interrupts (restart).
function Backend:exec(code, timeout, client)
  local deadline = time.now() + (timeout or 3600)
  self.dev.port:write(code .. "\x04")
  local ok = self:_until("OK", deadline, client)
  if ok == nil then return nil, nil, "interrupted" end
  local head = ""
  if code:find("^_mpctl_tx%(") then
    -- a file read writes "#N\n" and then N raw bytes, which may contain \x04: count them
    local line = self:_until("\n", deadline, client)
    if line == nil then return nil, nil, "interrupted" end
    head = line .. "\n"
    local n = tonumber(line:match("^#(%d+)"))
    if n then
      while #self.buf < n do
        if time.now() > deadline then error("sim rawrepl: backend timeout reading a file", 0) end
        if not self:_pump(deadline - time.now(), client) then return nil, nil, "interrupted" end
      end
      head = head .. self.buf:sub(1, n)
      self.buf = self.buf:sub(n + 1)
    end
  end
  local out = self:_until("\x04", deadline, client)
  if out == nil then return head, nil, "interrupted" end
  out = head .. out
  local err = self:_until("\x04>", deadline, client)
  if err == nil then return out, nil, "interrupted" end
  return out, err
end

function Backend:write_file(pathlit, data)
  local parts = {"from binascii import unhexlify as _d\n_f=open(" .. pathlit .. ",'wb')\n"}
  for i = 1, #data, 2048 do
    parts[#parts + 1] = "_f.write(_d('" .. hex(data:sub(i, i + 2047)) .. "'))\n"
  end
  parts[#parts + 1] = "_f.close()\ndel _f,_d\n"
  return self:exec(table.concat(parts), 120)
end

---------------------------------------------------------------------------------------------
-- the device seen by the client

local Dev = {}
Dev.__index = Dev

function Dev:_fill(timeout)
  local max = self.rate and math.max(1, math.floor(self.rate / 100)) or 65536
  local s = self.port:read(max, timeout)
  if s == "" then
    if self.port:is_eof() then error(Hangup, 0) end
    return false
  end
  if self.rate then
    -- the bytes are there only once the wire has carried them
    self.rx_clock = math.max(self.rx_clock, time.now()) + #s / self.rate
    local wait = self.rx_clock - time.now()
    if wait > 0 then time.sleep(wait) end
  end
  self.ibuf = self.ibuf:sub(self.ipos) .. s
  self.ipos = 1
  return true
end

function Dev:getc()
  while self.ipos > #self.ibuf do self:_fill(1) end
  local c = self.ibuf:sub(self.ipos, self.ipos)
  self.ipos = self.ipos + 1
  return c
end

-- Up to n bytes already received (at least one; waits for it).
function Dev:take(n)
  while self.ipos > #self.ibuf do self:_fill(1) end
  local s = self.ibuf:sub(self.ipos, self.ipos + n - 1)
  self.ipos = self.ipos + #s
  return s
end

-- Used while the backend runs code: a Ctrl-C from the client interrupts it.
function Dev:poll_interrupt()
  local ok = pcall(self._fill, self, 0)
  if not ok then error(Hangup, 0) end
  local i = self.ibuf:find("\3", self.ipos, true)
  if i then
    self.ipos = i + 1
    return true
  end
  return false
end

function Dev:put(s)
  if s == "" then return end
  if not self.rate then
    self.port:write(s, 10)
    return
  end
  local step = math.max(1, math.floor(self.rate / 100))
  for i = 1, #s, step do
    local piece = s:sub(i, i + step - 1)
    self.tx_clock = math.max(self.tx_clock, time.now()) + #piece / self.rate
    local wait = self.tx_clock - time.now()
    if wait > 0 then time.sleep(wait) end
    self.port:write(piece, 10)
  end
end

function Dev:banner()
  self:put(FRIENDLY .. ">>> ")
end

-- The result framing after a command: stdout \x04 stderr \x04 >
function Dev:run(code, sent_ok)
  if not sent_ok then self:put("OK") end
  local recv_call, rest
  if self.binary_stdin then
    local path, n, c, t, tail = code:match("^_mpctl_rx%((.-),(%d+),(%d+),?(%d*)%)\r?\n?(.*)$")
    if path then
      recv_call = {path = path, n = tonumber(n), chunk = tonumber(c), silence = (tonumber(t) or 2000) / 1000}
      rest = tail
    end
  end
  if recv_call then
    if not self:receive(recv_call) then
      -- the receiver gave up after a silence (OSError ETIMEDOUT), as the real one does
      self:put("\x04Traceback (most recent call last):\r\n  File \"<stdin>\", line 1, in <module>\r\n"
        .. "OSError: [Errno 110] ETIMEDOUT\r\n\x04>")
      return
    end
    code = rest
  end
  if code == "" then
    -- nothing left to run (an empty line would be a soft reset for the backend)
    self:put("\x04\x04>")
    return
  end
  local out, err, why = self.backend:exec(code, nil, self)
  if why == "interrupted" then
    self.backend:restart()
    self:put((out or "") .. "\x04Traceback (most recent call last):\r\n  File \"<stdin>\", line 1, in <module>\r\n"
      .. "KeyboardInterrupt: \r\n\x04>")
    return
  end
  self:put(out .. "\x04" .. err .. "\x04>")
end

-- The binary receiver, performed by the fixture (see the header comment). Like mpctl's real one
-- it gives up when no byte comes for call.silence seconds: returns false then.
function Dev:receive(call)
  self:put("\6")
  local parts, left = {}, call.n
  while left > 0 do
    local want = math.min(left, call.chunk)
    local got = {}
    local have = 0
    while have < want do
      local until_t = time.now() + call.silence
      while self.ipos > #self.ibuf do
        if time.now() >= until_t then return false end
        self:_fill(math.max(until_t - time.now(), 0.001))
      end
      local s = self:take(want - have)
      got[#got + 1] = s
      have = have + #s
    end
    parts[#parts + 1] = table.concat(got)
    left = left - want
    self:put("\6")
  end
  if call.path ~= "None" then
    local data = table.concat(parts)
    if self.corrupt_at and self.corrupt_at < #data and self.corrupt_times ~= 0 then
      self.corrupt_times = self.corrupt_times and self.corrupt_times - 1
      -- fault injection: one flipped bit, as a noisy line without a checksum would deliver
      local i = self.corrupt_at + 1
      data = data:sub(1, i - 1) .. string.char(data:byte(i) ~ 1) .. data:sub(i + 1)
    end
    local _, err = self.backend:write_file(call.path, data)
    if err and err ~= "" then io.stderr:write("sim rawrepl: receiver write failed: ", err, "\n") end
  end
  return true
end

function Dev:soft_reset(raw)
  self.backend:exec(CLEAR_GLOBALS, 10)
  self:put("MPY: soft reboot\r\n")
  if raw then self:put(RAW_BANNER) else self:banner() end
end

function Dev:paste()
  local mode = self.raw_paste
  local w = self.window
  if mode == "broken" then
    self:put("R\1" .. string.char(w & 255, w >> 8) .. "\1\4")
    while true do self:take(65536) end      -- spins, reading nothing useful, until hang-up
  end
  self:put("R\1" .. string.char(w & 255, w >> 8) .. "\1")
  local credit, since, total = 2 * w, 0, 0
  local parts = {}
  while true do
    local s = self:take(65536)
    local stop = s:find("[\3\4]")
    local data = stop and s:sub(1, stop - 1) or s
    if stop then self.ipos = self.ipos - (#s - stop + 1) end
    -- everything taken here was sent before the grants this loop is about to send, so it must fit
    -- the credit granted so far; a device's stdin buffer loses what does not fit
    if #data > credit then
      self.overruns = self.overruns + (#data - credit)
      io.stderr:write(string.format("sim rawrepl: host overran the raw-paste window by %d bytes (dropped)\n",
        #data - credit))
      data = data:sub(1, credit)
    end
    local i = 1
    while i <= #data do
      if self.abort_after and total >= self.abort_after then
        -- early compile failure: tell the host to stop, swallow the rest up to its \x04
        self:put("\4")
        while self:getc() ~= "\4" do end
        self:put("\4Traceback (most recent call last):\r\n  File \"<stdin>\", line 1\r\n"
          .. "MemoryError: memory allocation failed\r\n\4>")
        return
      end
      local n = math.min(#data - i + 1, w - since)
      if self.abort_after then n = math.min(n, self.abort_after - total) end
      parts[#parts + 1] = data:sub(i, i + n - 1)
      i, credit, since, total = i + n, credit - n, since + n, total + n
      if since == w then
        since = 0
        credit = credit + w
        self:put("\1")
      end
    end
    if stop then
      local c = self:getc()
      self:put("\4")
      if c == "\3" then
        self:put("\4Traceback (most recent call last):\r\n  File \"<stdin>\", line 1, in <module>\r\n"
          .. "KeyboardInterrupt: \r\n\4>")
        return
      end
      return self:run(table.concat(parts), true)
    end
  end
end

function Dev:raw_repl()
  self:put(RAW_BANNER)
  local line = {}
  while true do
    local c = self:getc()
    if c == "\1" then
      if #line == 2 and line[1] == "\5" then
        if self.raw_paste == "R0" then
          self:put("R\0>")
          line = {}
          goto continue
        elseif self.raw_paste and line[2] == "A" then
          line = {}
          self:paste()
          goto continue
        elseif self.raw_paste then
          self:put("R\0>")
          line = {}
          goto continue
        end
      end
      line = {}
      self:put(RAW_BANNER)
    elseif c == "\2" then
      self:put("\r\n")
      return "friendly"
    elseif c == "\3" then
      line = {}
    elseif c == "\4" then
      if #line == 0 then
        self:put("OK\r\n")
        self:soft_reset(true)
      else
        local code = table.concat(line)
        line = {}
        self:run(code)
      end
    else
      line[#line + 1] = c
      -- take the rest of a long line in one go
      if #line > 1 or c ~= "\5" then
        local rest = self.ibuf:match("^[^\1-\5]+", self.ipos)
        if rest then
          line[#line + 1] = rest
          self.ipos = self.ipos + #rest
        end
      end
    end
    ::continue::
  end
end

function Dev:friendly_repl()
  self:banner()
  local line = {}
  while true do
    local c = self:getc()
    if c == "\1" then
      self:put("\r\n")
      return "raw"
    elseif c == "\2" then
      self:put("\r\n")
      self:banner()
      line = {}
    elseif c == "\3" then
      line = {}
      self:put("\r\n>>> ")
    elseif c == "\4" then
      if #line == 0 then
        self:put("\r\n")
        self:soft_reset(false)
      end
    elseif c == "\r" then
      local text = table.concat(line)
      line = {}
      self:put("\r\n")
      if text:find("%S") then
        local out, err = self.backend:exec("exec(compile(__import__('binascii').unhexlify('" .. hex(text)
          .. "').decode(),'<stdin>','single'))", nil, self)
        -- as sent by the WebAssembly port behind (stdout "\n", tracebacks "\r\n"), minus the
        -- frame of the exec() wrapper that runs the line in 'single' mode
        err = (err or ""):gsub('^(Traceback %(most recent call last%):\r\n)  File "<stdin>", line 1, in <module>\r\n(  File )',
          "%1%2")
        self:put((out or "") .. err)
      end
      self:put(">>> ")
    elseif c == "\127" or c == "\8" then
      if #line > 0 then line[#line] = nil; self:put("\8 \8") end
    elseif c >= " " then
      line[#line + 1] = c
      self:put(c)
    end
  end
end

function M.session(client, opts)
  local baud = tonumber(opts.baud) or 115200
  local dev = setmetatable({
    port = client, ibuf = "", ipos = 1,
    window = tonumber(opts.window) or 128,
    binary_stdin = truthy(opts.binary_stdin, true),
    abort_after = tonumber(opts.abort_after),
    corrupt_at = tonumber(opts.corrupt_at), corrupt_times = tonumber(opts.corrupt_times),
    rate = truthy(opts.throttle, false) and baud / 10 or nil,
    rx_clock = 0, tx_clock = 0, overruns = 0,
  }, Dev)
  local rp = opts.raw_paste
  if rp == nil or rp == true or rp == "true" then dev.raw_paste = true
  elseif rp == "R0" or rp == "broken" then dev.raw_paste = rp
  else dev.raw_paste = false end
  dev.backend = Backend.new(opts)
  local ok, err = pcall(function()
    local mode = "friendly"
    dev:put("\r\n")   -- what the WebAssembly port (and a board's boot) sends before the banner
    while true do
      if mode == "friendly" then mode = dev:friendly_repl() else mode = dev:raw_repl() end
    end
  end)
  dev.backend:stop()
  if not ok and err ~= Hangup then
    io.stderr:write("sim rawrepl: session ended: ", tostring(err), "\n")
  end
end

function M.serve(target, opts)
  opts = opts or {}
  opts._name = "sim rawrepl"
  return serve.serve(target, opts, M.session)
end

return M
