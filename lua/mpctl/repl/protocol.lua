-- mpctl.repl.protocol: MicroPython's REPL modes on the wire (anchors.md §3.2; pyexec.c):
-- entering the raw REPL (also on a board that is still booting), the plain raw REPL and raw-paste
-- with its flow control, reading a result (stdout \x04 stderr \x04 >), exec with streaming and
-- interruption, the friendly REPL, soft reset, and the device's identity. Methods of the object
-- mpctl.repl.attach returns; the byte I/O they use is mpctl.repl.link.
local time = require("mpctl.time")
local errors = require("mpctl.repl.errors")
local errs = require("mpctl.errors")

local raise, escape, is_error, exception_line = errors.raise, errors.escape, errors.is_error, errors.exception_line
local now = time.now

local P = {}

local RAW_BANNER = "raw REPL; CTRL-B to exit\r\n"
P.RAW_BANNER = RAW_BANNER

-- Seconds left until deadline, never zero: a wait whose time is up still looks at what arrived.
local function time_left(deadline) return math.max(deadline - now(), 0.001) end

local function note_banner(self, text)
  local banner = text:match("(MicroPython [^\r\n]*)")
  if banner then self.banner = banner end
  if text:find("JS with Emscripten", 1, true) then self.wasm = true end
end

-- Learns the platform before the first raw-paste: the WebAssembly port answers R\x01 to the
-- raw-paste request and then hangs for good, so it must never be asked.
function P:_probe()
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

-- Entering the raw REPL, also on a board that is still booting (just reset or flashed): Ctrl-C
-- and Ctrl-A are sent at once; then, until the raw prompt shows or the overall timeout ends:
--   * a friendly prompt ">>> " (or the MicroPython banner) that came after our last request and
--     stays alone for PROMPT_QUIET means the REPL now runs and our Ctrl-A was lost while it booted:
--     ask again at once;
--   * a silent line: ask again after a back-off that starts at BACKOFF[1] and doubles;
--   * a line that keeps talking (boot messages, a program printing): ask again every BUSY_RETRY.
-- If that has not worked within PAUSE_AFTER, the line is left quiet once for rx_silence (+ a bit):
-- a binary receiver of a client that died mid-chunk (device.py's _mpctl_rx, Ctrl-C off) takes our
-- requests as data and gives up only after that much silence.
-- Every extra request may be answered by one more raw banner, so self.stray counts them for the
-- next reply read (_reply), which skips them; the device answers in order, so they all come before
-- the reply to whatever is sent next.
local PROMPT_QUIET, BACKOFF, BACKOFF_MAX, BUSY_RETRY, PAUSE_AFTER = 0.03, 0.02, 0.2, 0.5, 1.0

function P:enter_raw(timeout)
  if self.raw then return end
  timeout = timeout or self.timeout
  local deadline = now() + timeout
  local want = RAW_BANNER .. ">"
  self:_write("\r\x03\x03")
  self:_write("\r\x01")
  local start = now()
  local requests, last_send, last_rx, fresh, paused = 1, start, start, false, false
  local backoff = BACKOFF
  local seen, earlier = self:_take_buffered(), ""
  while true do
    local i = seen:find(want, 1, true)
    if i then
      note_banner(self, seen:sub(1, i - 1))
      self:_unread(seen:sub(i + #want))
      break
    end
    local t = now()
    if t >= deadline then
      -- show what the line carried since Ctrl-C: garbage from a wrong baud rate comes early
      self:_timeout("the raw REPL prompt", timeout, (earlier .. seen):sub(-64))
    end
    if not paused and t - start >= PAUSE_AFTER then
      -- quiet, but watching: a board that shows its prompt meanwhile is answered at once
      paused = true
      local pause_end = math.min(t + (self.rx_silence or 2) + 0.3, deadline)
      while now() < pause_end do
        local s = self:_recv(math.min(0.05, math.max(pause_end - now(), 0.001)))
        if s ~= "" then
          seen, last_rx, fresh = seen .. s, now(), true
          if seen:find(want, 1, true) or seen:sub(-4) == ">>> " then break end
        end
      end
      last_send = 0   -- ask again at once
      goto continue
    end
    local quiet = t - last_rx
    local at_prompt = fresh and quiet >= PROMPT_QUIET
      and (seen:sub(-4) == ">>> " or seen:find("MicroPython [^\r\n]*\r\n[^\r\n]*\r\n$"))
    local again = at_prompt
      or (quiet >= backoff and t - last_send >= backoff)
      or t - last_send >= BUSY_RETRY
    if again then
      note_banner(self, seen)
      self:_write(at_prompt and "\r\x01" or "\r\x03\x01")
      requests, last_send, fresh = requests + 1, now(), false
      if not at_prompt then backoff = math.min(backoff * 2, BACKOFF_MAX) end
      -- keep a tail, so a banner split across reads still matches
      if #seen > 256 then earlier = (earlier .. seen:sub(1, -129)):sub(-64); seen = seen:sub(-128) end
    end
    local wait = math.min(deadline - now(), PROMPT_QUIET, math.max(backoff - (now() - last_send), 0.001))
    local s = self:_recv(math.max(wait, 0.001))
    if s ~= "" then
      seen, last_rx, fresh = seen .. s, now(), true
    end
    ::continue::
  end
  self.stray = (self.stray or 0) + requests - 1
  self.raw, self.helpers = true, false
end

-- The first n bytes of the reply to what was just sent, skipping the raw banners that extra
-- requests of enter_raw may still bring ("raw REPL; ..." or "\r\nraw REPL; ...": neither "OK" nor
-- "R\x01"/"R\x00" starts like that).
-- With `always` (the reply to plain raw input, which is "OK" and never a banner), up to three
-- banners are skipped even when none was expected: under heavy load a just-started WebAssembly
-- MicroPython was seen to print one more than it was asked for.
function P:_reply(n, timeout, what, always)
  local deadline = now() + timeout
  local skipped = 0
  while true do
    local s = self:_read_exact(n, time_left(deadline), what)
    local banner = s == ("\r\nraw"):sub(1, n) or s == ("raw REPL"):sub(1, n)
    if not banner or ((self.stray or 0) == 0 and not (always and skipped < 3)) then
      self.stray = 0
      return s
    end
    self:_unread(s)
    self:_read_until(RAW_BANNER .. ">", time_left(deadline), "the rest of a raw REPL banner")
    self.stray = math.max((self.stray or 0) - 1, 0)
    skipped = skipped + 1
  end
end

function P:leave_raw(timeout)
  if not self.raw then return end
  self:_write("\r\x02")
  local before = self:_read_until(">>> ", timeout or self.timeout, "the friendly prompt")
  note_banner(self, before)
  self.raw = false
end

--- Ctrl-C, then waits for the friendly prompt. A device that keeps running (an uninterruptible
-- loop) raises a timeout error; the object is then unusable until the device is reset.
function P:interrupt(opts)
  opts = opts or {}
  local timeout = opts.timeout or 3
  self:_write("\r\x03")
  local seen = self:_drain(0.05, math.min(timeout, 0.5))
  self:_write("\x03\x02")   -- Ctrl-B: the friendly REPL reprints its banner and prompt
  self:_unread(seen)
  local ok, err = pcall(self._read_until, self, ">>> ", timeout, "the prompt after Ctrl-C")
  if not ok then
    if is_error(err, "timeout") then
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
function P:friendly(line, timeout)
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
function P:_send_raw(code, timeout)
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
  local ok = self:_reply(2, timeout, '"OK" after the code', true)
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
function P:_send_paste(code, timeout)
  local deadline = now() + timeout
  self:_write("\x05A\x01")
  local r = self:_reply(2, timeout, "the raw-paste reply")
  if r == "R\x00" then
    -- pyexec prints its raw prompt again after R\x00 (do_reader_stdin returns to the loop)
    local ok = pcall(self._read_until, self, ">", math.min(timeout, 1), "the raw prompt after R\\x00")
    if not ok then self:_take_buffered() end
    self.paste = false
    return false
  elseif r ~= "R\x01" then
    -- old firmware: \x05A went into its line buffer and \x01 made it reprint the banner,
    -- which also clears the line
    self:_unread(r)
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
    local ahead = g .. self:_take_buffered()
    local t = now() + 0.03
    while now() < t and #ahead < 2 do
      ahead = ahead .. self:_read_port(16, t - now())
    end
    self:_unread(ahead)
    if ahead:sub(2, 2) == "\x04" then
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
function P:_send(code, timeout)
  if not self.raw then self:enter_raw(timeout) end
  if self.paste ~= false then
    local r = self:_send_paste(code, timeout)
    if r then return r end
  end
  self:_send_raw(code, timeout)
  return true
end

-- Reads stdout, stderr and the next prompt.
function P:_follow(timeout, sink)
  local deadline = now() + timeout
  local out = self:_read_until("\x04", timeout, "the end of the output", sink)
  local err = self:_read_until("\x04", time_left(deadline), "the end of the error output")
  self:_read_exact(1, time_left(deadline), "the raw REPL prompt")
  return out, err
end

function P:_device_error(out, err)
  local exc = exception_line(err)
  raise("device", string.format("%s (on %s)\n%s", exc, self.name, err:gsub("\r\n", "\n")),
    {traceback = err, exception = exc, stdout = out})
end

-- The result of code already sent: its stdout, or its traceback raised as a device error.
function P:_result(timeout, sink)
  local out, err = self:_follow(timeout, sink)
  if err ~= "" then self:_device_error(out, err) end
  return out
end

-- exec with the plain raw REPL only (used to probe before raw-paste is known to be safe)
function P:_exec_raw(code, timeout)
  if not self.raw then self:enter_raw(timeout) end
  self:_send_raw(code, timeout)
  return self:_result(timeout)
end

--- Runs code; returns its stdout. opts.timeout (s), opts.on_output(piece) streams stdout.
-- On timeout the device is sent Ctrl-C; the error says whether it came back.
function P:exec(code, opts)
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
  if errs.kind(res) == "interrupted" then
    -- Ctrl-C on our side: stop the device's code too, so the board is free for the next command
    pcall(errs.shield, function() self.port:write("\r\x03\x03") end)
    self.raw = false
    error(res, 0)
  end
  if is_error(res, "timeout") and res.what then
    -- the wait that ran out had only what was left of the whole budget: name the budget the
    -- caller gave (--timeout), not the remainder
    res.message = self:_timeout_message(res.what, timeout, res.seen)
    res.msg, res.detail = res.message, res.message
  end
  if is_error(res, "timeout") and not opts.no_interrupt then
    local iok, ierr = pcall(self.interrupt, self, {timeout = opts.interrupt_timeout or 2})
    res.message = res.message .. (iok and "; interrupted with Ctrl-C, device back at the prompt"
      or ("; " .. tostring(ierr)))
    res.msg = res.message
    res.recovered = iok
  end
  error(res, 0)
end

--- Evaluates a Python expression; returns its repr() text.
function P:eval(expr, opts)
  local out = self:exec("print(repr(" .. expr .. "))", opts)
  return (out:gsub("\r?\n$", ""))
end

--- Soft reset. Returns how it was seen: "soft reboot" (MPY: soft reboot / raw banner), "banner"
-- (a fresh friendly banner: the fixture restarted the WebAssembly process) or "eof" (the device
-- hung up: a WebAssembly process on a bare pty). Afterwards the raw REPL is entered again unless
-- the port is gone.
function P:soft_reset(timeout)
  timeout = timeout or self.timeout
  if not self.raw then self:enter_raw(timeout) end
  self:_write("\x04")
  local how
  local ok, err = pcall(function()
    self:_read_until("OK", timeout, '"OK" after the soft reset request')
    local deadline = now() + timeout
    -- "MPY: soft reboot" often comes in the same read as the "OK" before it
    local seen = self:_take_buffered()
    while true do
      if seen:find("soft reboot", 1, true) or seen:find(RAW_BANNER, 1, true) then how = "soft reboot" break end
      if seen:find("MicroPython v", 1, true) then how = "banner" break end
      local left = deadline - now()
      if left <= 0 then self:_timeout("a soft reboot", timeout, seen) end
      seen = seen .. self:_recv(left)
    end
    note_banner(self, seen)
    -- let the rest of the boot output (banner, boot.py) arrive before re-entering raw mode
    note_banner(self, self:_drain(0.1, 2))
  end)
  if not ok then
    if is_error(err, "reset") then
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
function P:info()
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

return P
