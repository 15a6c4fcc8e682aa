-- mpctl.repl against a scripted in-process device (a Lua object with the port methods), for the
-- byte-level rules that real targets cannot be made to show on demand: raw-paste credit never
-- exceeded, cooked "\r\n" output, and a bad raw-paste reply.
local test = require("mpctl.test")
local repl = require("mpctl.repl")

-- A port whose writes go to device(self, bytes), which queues replies with self:send(s). It offers
-- the buffered-port methods mpctl.repl uses (read, read_exact, read_until with on_chunk, unread,
-- pending, counters); everything the device will ever say is already queued, so a wait that is
-- not satisfied at once is a timeout.
local function fake(device)
  local errors = require("mpctl.errors")
  local p = {name = "fake", inbuf = "", log = {}, rx = 0, tx = 0}
  local function timeout(what)
    error(errors.new{kind = "timeout", where = "fake", detail = what .. ": timeout"}, 0)
  end
  function p:send(s) self.inbuf = self.inbuf .. s; self.rx = self.rx + #s end
  function p:write(s) self.log[#self.log + 1] = s; self.tx = self.tx + #s; device(self, s); return #s end
  local function take(self, n)
    local s = self.inbuf:sub(1, n)
    self.inbuf = self.inbuf:sub(n + 1)
    return s
  end
  p.read = take   -- a test may replace read (pieces of one byte); the others keep whole reads
  function p:read_exact(n, _)
    if #self.inbuf < n then timeout("read_exact") end
    return take(self, n)
  end
  function p:read_until(delim, _, on_chunk)
    local i = self.inbuf:find(delim, 1, true)
    if not i then timeout("read_until") end
    if on_chunk then
      -- handed over as self:read delivers it (a test may make that one byte per read)
      local left = i - 1
      while left > 0 do
        local piece = self:read(left)
        left = left - #piece
        on_chunk(piece)
      end
      take(self, #delim)
      return delim
    end
    return take(self, i + #delim - 1)
  end
  function p:unread(s) self.inbuf = s .. self.inbuf end
  function p:pending() return #self.inbuf end
  function p:counters() return {rx = self.rx, tx = self.tx} end
  function p:is_eof() return false end
  return p
end

-- A device following pyexec: raw REPL on \r\x01, the probe, then raw-paste with a small window.
local function paste_device(window, output)
  local state, credit, since, code = "idle", 0, 0, {}
  return function(p, s)
    if state == "idle" then
      if s:find("\1", 1, true) then p:send("\r\nraw REPL; CTRL-B to exit\r\n>"); state = "raw" end
    elseif state == "raw" then
      if s == "\5A\1" then
        p:send("R\1" .. string.char(window & 255, window >> 8) .. "\1")
        state, credit, since, code = "paste", 2 * window, 0, {}
      elseif s:sub(-1) == "\4" then
        p:send("OKmpctl-fake\r\nfake machine\r\n\4\4>")
      end
    elseif state == "paste" then
      if s == "\4" then
        p:send("\4" .. output .. "\4\4>")
        p.pasted = table.concat(code)
        state = "raw"
        return
      end
      assert(#s <= credit, string.format("host sent %d bytes with %d of credit", #s, credit))
      credit = credit - #s
      code[#code + 1] = s
      since = since + #s
      while since >= window do
        since = since - window
        credit = credit + window
        p:send("\1")
      end
    end
  end
end

test("raw-paste never sends more than the device granted", function()
  for _, w in ipairs({1, 7, 16, 128}) do
    local p = fake(paste_device(w, "hello\r\nworld\r\n"))
    local r = repl.attach(p, {timeout = 1})
    local code = ("x = 1\n"):rep(100)
    test.eq(r:exec(code), "hello\nworld\n", "window " .. w)
    test.eq(p.pasted, code)
    test.eq(r.paste_window, w)
  end
end)

test("cooked \\r\\n output is returned as \\n, also when streamed in pieces", function()
  local p = fake(paste_device(128, "a\r\nb\r\n\r\nc"))
  local r = repl.attach(p, {timeout = 1})
  local pieces = {}
  -- deliver the output one byte per read, as the WebAssembly port writes it
  local read = p.read
  p.read = function(self, n, t) return read(self, 1, t) end
  test.eq(r:exec("print()", {on_output = function(s) pieces[#pieces + 1] = s end}), "")
  test.eq(table.concat(pieces), "a\nb\n\nc")
  test.eq(r:exec("print()", {raw_output = true}), "a\r\nb\r\n\r\nc")
end)

test("an unexpected reply to the raw-paste request falls back to the plain raw REPL", function()
  local state = "idle"
  local p = fake(function(p, s)
    if state == "idle" and s:find("\1", 1, true) then
      p:send("\r\nraw REPL; CTRL-B to exit\r\n>"); state = "raw"
    elseif s == "\5A\1" then
      -- old firmware: the \x01 makes it reprint its banner
      p:send("\r\nraw REPL; CTRL-B to exit\r\n>")
    elseif s:sub(-1) == "\4" then
      p:send("OKold\r\n\4\4>")
    end
  end)
  local r = repl.attach(p, {timeout = 1})
  test.eq(r:exec("print('old')"), "old\n")
  test.eq(r.paste, false)
end)

test("garbage during raw-paste flow control is a protocol error that shows it", function()
  local p = fake(function(p, s)
    if s:find("\1", 1, true) and not s:find("\5", 1, true) then p:send("\r\nraw REPL; CTRL-B to exit\r\n>")
    elseif s == "\5A\1" then p:send("R\1\16\0\1ZZZ")
    elseif s:sub(-1) == "\4" then p:send("OKx\r\ny\r\n\4\4>") end
  end)
  local r = repl.attach(p, {timeout = 1})
  test.raises(function() r:exec(("print(1)\n"):rep(20)) end, 'unexpected byte during raw-paste')
end)

test("soft reset seen when OK and the reboot line arrive in one read", function()
  -- a board sends "OK\r\nMPY: soft reboot\r\n" back to back; one read then carries both
  local pending = ""
  local p = fake(function(p, s)
    if s:find("\1", 1, true) then
      pending = ""
      p:send("\r\nraw REPL; CTRL-B to exit\r\n>")
    elseif s:sub(-1) == "\4" then
      local code = pending .. s:sub(1, -2)
      pending = ""
      if code == "" then
        p:send("OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>")
      else
        p:send("OKmpctl-fake\r\nfake machine\r\n\4\4>")
      end
    else
      pending = pending .. s
    end
  end)
  local r = repl.attach(p, {timeout = 1, raw_paste = false})
  test.eq(r:soft_reset(), "soft reboot")
end)
