-- mpctl.sim.board.files: keeps a simulated board's MicroPython files across resets.
--
-- The WebAssembly MicroPython keeps its files in its own memory, and a reset of the simulated
-- board ends that process. A real board keeps them in flash. So before the process is stopped,
-- while its REPL is idle, the files are read out through its raw REPL (off the modelled wire),
-- and the next start writes them back as part of the board modules' setup (inject.lua).
-- Emscripten's own folders (/dev, /proc, /tmp, /home) are not the board's and are left out.
local time = require("mpctl.time")

local M = {}

local RAW_PROMPT = "raw REPL; CTRL-B to exit\r\n>"

-- Prints "D <hex path>" per folder and "F <hex path> <hex data>" per file, depth first.
local DUMP = [[
import os, binascii
def _mpctl_dump(d):
 for n in os.listdir(d):
  if d == '/' and n in ('tmp', 'home', 'dev', 'proc'):
   continue
  p = d.rstrip('/') + '/' + n
  h = binascii.hexlify(p.encode()).decode()
  if os.stat(p)[0] & 0x4000:
   print('D', h)
   _mpctl_dump(p)
  else:
   f = open(p, 'rb')
   b = f.read()
   f.close()
   print('F', h, binascii.hexlify(b).decode())
_mpctl_dump('/')
del _mpctl_dump
]]

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Reads the files of the MicroPython process behind port; repl = "raw" | "friendly" (the
-- state its REPL is idle in). Returns a list of { dir = bool, path =, data = } or nil, why.
function M.read(port, repl, timeout)
  local deadline = time.now() + (timeout or 10)
  local buf = ""
  local function until_(pat)
    while true do
      local i, j = buf:find(pat, 1, true)
      if i then
        local head = buf:sub(1, i - 1)
        buf = buf:sub(j + 1)
        return head
      end
      local left = deadline - time.now()
      if left <= 0 then error("no " .. pat:gsub("%c", "") .. " in time", 0) end
      buf = buf .. port:read(1 << 20, math.min(left, 0.5))
    end
  end
  local ok, res = pcall(function()
    if repl == "friendly" then
      port:write("\r\1")
      until_(RAW_PROMPT)
    else
      port:write("\3")        -- clears a raw-REPL line typed in part
    end
    port:write(DUMP .. "\4")
    until_("OK")
    local out = until_("\4")
    local err = until_("\4>")
    if err:find("%S") then error("dump failed: " .. err, 0) end
    local files = {}
    for line in out:gmatch("[^\r\n]+") do
      local kind, p, d = line:match("^([DF]) (%x*) ?(%x*)$")
      if kind then files[#files + 1] = { dir = kind == "D", path = unhex(p), data = unhex(d) } end
    end
    return files
  end)
  if not ok then return nil, tostring(res) end
  return res
end

-- Python that writes the files back (folders first: the list is depth first).
function M.restore_code(files)
  if not files or #files == 0 then return "" end
  local parts = { "import os\nfrom binascii import unhexlify as _u\n" }
  for _, f in ipairs(files) do
    if f.dir then
      parts[#parts + 1] = "try:\n os.mkdir(_u('" .. hex(f.path) .. "').decode())\nexcept OSError:\n pass\n"
    else
      parts[#parts + 1] = "_f=open(_u('" .. hex(f.path) .. "').decode(),'wb')\n_f.write(_u('" .. hex(f.data) ..
        "'))\n_f.close()\n"
    end
  end
  parts[#parts + 1] = "del _u\ntry:\n del _f\nexcept NameError:\n pass\n"
  return table.concat(parts)
end

function M.size(files)
  local n = 0
  for _, f in ipairs(files or {}) do n = n + #(f.data or "") end
  return n
end

return M
