-- mpctl.sim.board.inject: gives the WebAssembly MicroPython of a simulated board the modules a
-- real board has and that build lacks (`machine`, and on ESP32-family chips `esp32`), and
-- carries the virtual hardware's events back out.
--
-- When the process has printed its first ">>> " (passed on to the client), the injector enters its
-- raw REPL (Ctrl-A), runs the modules' setup, checks that it printed no traceback, leaves
-- (Ctrl-B) and waits for ">>> " again; none of that reaches the client, whose input the caller
-- holds until ready() (~0.1 s), as a booting board's UART buffer would. Output
-- later passes through filter(), which removes the in-band events ("\x1b]mpctl;EVENT\x07",
-- written by machine.py) and hands them to on_event.
local M = {}
local I = {}
I.__index = I

local RAW_PROMPT = "raw REPL; CTRL-B to exit\r\n>"
local EV_START, EV_END = "\27]mpctl;", "\7"

local function here()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  return src:match("^(.*)/[^/]*$") or "."
end

-- The module's source, smaller for the trip through the raw REPL (the WebAssembly port takes
-- its input slowly past ~4 KB): comment lines and blank lines dropped, 4-space indents to 1.
local function read_py(name)
  local f = assert(io.open(here() .. "/" .. name, "rb"))
  local out = {}
  for line in f:lines() do
    if not line:match("^%s*#") and line:find("%S") then
      local ind, rest = line:match("^( *)(.*)$")
      out[#out + 1] = string.rep(" ", #ind // 4) .. rest
    end
  end
  f:close()
  return table.concat(out, "\n") .. "\n"
end

-- A Python literal for a small config value (numbers, strings, bytes as \x escapes).
local function pylit(v)
  if type(v) == "number" then return tostring(v) end
  if type(v) == "table" and v.bytes then
    return "b'" .. v.bytes:gsub(".", function(c) return string.format("\\x%02x", c:byte()) end) .. "'"
  end
  return "'" .. tostring(v):gsub("[^%w%._%- ]", "") .. "'"
end

-- The Python run in the raw REPL. Each module becomes sys.modules[name] as an object that
-- compiles the module's source on first use (__getattr__): compiling all of machine.py at every
-- start would delay the first prompt by ~0.2 s on the WebAssembly port, where clients are
-- waiting for it; the source itself (~3 KB) passes quickly.
-- cfg: { led=, temp=, i2c=, uid={bytes=...}, freq=, adc= } for machine's _CFG;
-- extra: { [name] = python source }
function M.setup_code(cfg, extra)
  local kv = {}
  for k, v in pairs(cfg or {}) do kv[#kv + 1] = "'" .. k .. "':" .. pylit(v) end
  table.sort(kv)
  local parts = {
    "import sys\n",
    "class _MpctlModule:\n",
    " def __init__(s,n,src,cfg):\n  s._mpctl=[n,src,cfg,None]\n",
    " def __getattr__(s,k):\n",
    "  m=s._mpctl\n",
    "  if m[3] is None:\n",
    "   g={'__name__':m[0]}\n   exec(m[1],g)\n",
    "   if m[2]:\n    g['_CFG'].update(m[2])\n",
    "   m[3]=g\n",
    "  if k in m[3]:\n   return m[3][k]\n",
    "  raise AttributeError(k)\n",
  }
  local function add(name, src, conf)
    -- a raw triple-quoted literal keeps the source byte for byte (it must hold no triple quote
    -- and no raw-REPL control byte)
    assert(not src:find("'''", 1, true) and not src:find("[%z\1-\5]"), "module source unfit for a literal")
    parts[#parts + 1] = "sys.modules['" .. name .. "']=_MpctlModule('" .. name .. "',r'''" .. src ..
      "'''," .. (conf and ("{" .. conf .. "}") or "None") .. ")\n"
  end
  add("machine", read_py("machine.py"), table.concat(kv, ","))
  local names = {}
  for name in pairs(extra or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do add(name, extra[name]) end
  parts[#parts + 1] = "del _MpctlModule\n"
  return table.concat(parts)
end

-- send(s) writes to the process; on_event(text) gets each event; log(fmt, ...) for failures.
-- eager: write the whole setup (Ctrl-A, code, Ctrl-D, Ctrl-B) at once, right at the process's
-- start: it runs before anything the client sends later (the process reads its input in order),
-- so the client's input need not be held and the setup costs no round trips.
function M.new(code, send, on_event, log, eager)
  local self = setmetatable({ code = code, send = send, on_event = on_event, log = log or function() end,
    phase = "banner", buf = "", banner = nil, pend = "", eager = eager }, I)
  if eager then send("\r\1" .. code .. "\4\2") end
  return self
end

function I:ready() return self.phase == "ready" end

-- Output of the process. Returns what the client should see now (the first banner at once,
-- nothing of the setup, everything after it).
function I:output(s)
  if self.phase == "ready" then return self:filter(s) end
  self.buf = self.buf .. s
  local shown = ""
  if self.phase == "banner" then
    local _, j = self.buf:find(">>> ", 1, true)
    if not j then return "" end
    -- eager: the client sees the banner at once (its input queues behind the setup in the
    -- process's own input); otherwise only once the setup is done, as a REPL that shows its
    -- prompt reads at once. The setup's output never reaches the client.
    if self.eager then shown = self:filter(self.buf:sub(1, j)) else self.banner = self.buf:sub(1, j) end
    self.buf = self.buf:sub(j + 1)
    self.phase = "raw"
    if not self.eager then self.send("\r\1") end
  end
  if self.phase == "raw" then
    local _, j = self.buf:find(RAW_PROMPT, 1, true)
    if not j then return shown end
    self.buf = self.buf:sub(j + 1)
    self.phase = "exec"
    if not self.eager then self.send(self.code .. "\4") end
  end
  if self.phase == "exec" then
    local i, j = self.buf:find("\4>", 1, true)
    if not i then return shown end
    -- "OK" stdout \4 stderr \4>: a traceback means the modules are missing
    local err = self.buf:sub(1, i - 1):match("^OK.-\4(.*)$") or self.buf:sub(1, i - 1)
    if err:find("%S") then self.log("board modules: setup failed: %s", err) end
    self.buf = self.buf:sub(j + 1)
    self.phase = "back"
    if not self.eager then self.send("\2") end
  end
  if self.phase == "back" then
    local _, j = self.buf:find(">>> ", 1, true)
    if not j then return shown end
    local rest = self.buf:sub(j + 1)
    self.buf = ""
    self.phase = "ready"
    return shown .. (self.banner and self:filter(self.banner) or "") .. self:filter(rest)
  end
  return shown
end

-- Removes in-band events from output, also when one is split across reads.
function I:filter(s)
  s = self.pend .. s
  self.pend = ""
  local out = {}
  local pos = 1
  while true do
    local i = s:find(EV_START, pos, true)
    if not i then
      -- keep a possible start of a marker at the end for the next read
      local tail = s:sub(pos)
      for k = math.min(#EV_START - 1, #tail), 1, -1 do
        if EV_START:sub(1, k) == tail:sub(-k) then
          out[#out + 1] = tail:sub(1, -k - 1)
          self.pend = tail:sub(-k)
          return table.concat(out)
        end
      end
      out[#out + 1] = tail
      return table.concat(out)
    end
    local j = s:find(EV_END, i + #EV_START, true)
    if not j then
      out[#out + 1] = s:sub(pos, i - 1)
      self.pend = s:sub(i)
      return table.concat(out)
    end
    out[#out + 1] = s:sub(pos, i - 1)
    self.on_event(s:sub(i + #EV_START, j - 1))
    pos = j + 1
  end
end

return M
