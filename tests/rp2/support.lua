-- Shared by the rp2 client tests (tests/rp2/*_test.lua; not a test file itself): temporary
-- folders, files, running mpctl bounded with the test's own state folders, and a minimal ELF.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local U = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "../usb/support.lua")

local M = { need = U.need, run_sim = U.run_sim, sh_quote = U.sh_quote, read = U.read, write = U.write }

function M.exe() return test.exe() or debug.getregistry()["mpctl.exe"] end

--- fn(dir) in a new temporary folder, removed afterwards whatever happens.
function M.with_dir(fn)
  local dir = fs.tmpdir()
  local ok, e = pcall(fn, dir)
  fs.remove(dir, { recursive = true })
  if not ok then error(e, 0) end
end

--- mpctl ARGS... with XDG state/cache and the backup root inside dir; returns output, exit code.
function M.mpctl(dir, args, timeout)
  local argv = { M.exe() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return U.run(argv, timeout or 150, "mpctl " .. table.concat(args, " "),
    { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir, MPCTL_BACKUP_DIR = fs.join(dir, "backups") })
end

--- The history lines mpctl wrote under dir (M.mpctl's state folder).
function M.history(dir)
  local lines = {}
  for line in (U.read(fs.join(dir, "mpctl", "history.jsonl")) or ""):gmatch("[^\n]+") do lines[#lines + 1] = ui.json_decode(line) end
  return lines
end

--- A minimal ELF32 LE: segs = {{paddr=, vaddr=, data=, memsz=?}, ...} as PT_LOAD program headers
--- (System V ABI layout: 52-byte header, 32-byte Elf32_Phdr), the data after them.
function M.elf(segs)
  local phoff = 52
  local off = phoff + 32 * #segs
  local hdr = "\127ELF" .. string.char(1, 1, 1, 0) .. string.rep("\0", 8) ..
    string.pack("<I2I2I4I4I4I4I4I2I2I2I2I2I2", 2, 40, 1, 0x10000001, phoff, 0, 0x05000000, 52, 32, #segs, 40, 0, 0)
  local ph, body = {}, {}
  for _, sg in ipairs(segs) do
    ph[#ph + 1] = string.pack("<I4I4I4I4I4I4I4I4", 1, off, sg.vaddr or sg.paddr, sg.paddr, #sg.data, sg.memsz or #sg.data, 5, 4)
    body[#body + 1] = sg.data
    off = off + #sg.data
  end
  return hdr .. table.concat(ph) .. table.concat(body)
end

return M
