-- Erasing and reading flash, part of mpctl.esp: erase_all, erase_region, read_flash. Installed
-- into the Chip class by flash.lua, whose sector size, erase timeout rate and progress display it
-- shares; the write path (diff, deflate, verify) stays in flash.lua.
-- Protocol facts: esptool `loader.py` (erase_flash, erase_region, read_flash, read_flash_slow),
-- `cmds.py` erase_flash; anchors.md §3.1.
local command = require("mpctl.esp.command")

local OP = command.OP

return function(M, Chip, shared)
  local SECTOR, ERASE_PER_MB = shared.SECTOR, shared.ERASE_PER_MB
  local progress, mods = shared.progress, shared.mods

  -- Erase everything (stub ERASE_FLASH; ROM: FLASH_BEGIN over the whole chip, cmds.erase_flash).
  function Chip:erase_all()
    if self.stub then
      self.conn:command(OP.ERASE_FLASH, "", { timeout = 120 }) -- CHIP_ERASE_TIMEOUT
    else
      self:erase_region(0, self.flash_size)
    end
  end

  function Chip:erase_region(offset, size)
    if offset % SECTOR ~= 0 or size % SECTOR ~= 0 then
      self:fail("erase region 0x%X+0x%X is not 4 KiB aligned", offset, size)
    end
    local timeout = math.max(3, ERASE_PER_MB * size / 1e6)
    if self.stub then
      self.conn:command(OP.ERASE_REGION, string.pack("<I4I4", offset, size), { timeout = timeout })
    else
      local bs = M.ROM_BLOCK
      local params = string.pack("<I4I4I4I4", self:erase_size(offset, size), 0, bs, offset)
      if self.chip.rom.encrypted_flag then params = params .. string.pack("<I4", 0) end
      self.conn:command(OP.FLASH_BEGIN, params, { timeout = timeout })
    end
  end

  -- Read flash. Stub: READ_FLASH streams packets we ack with the running byte count, then sends
  -- the MD5 of what it read (loader.py read_flash). ROM: READ_FLASH_SLOW, 64 bytes a command.
  function Chip:read_flash(offset, size, opts)
    opts = opts or {}
    local hash = mods()
    local update, finish = progress(opts.label or string.format("read 0x%X", offset), size)
    local parts, got = {}, 0
    local conn = self.conn
    if self.stub then
      conn:command(OP.READ_FLASH, string.pack("<I4I4I4I4", offset, size, 0x1000, 64))
      while got < size do
        local frame, _, msg = conn:read_frame(10)
        if not frame then
          finish("failed")
          self:fail("read_flash stopped at 0x%X of 0x%X+%d: %s", offset + got, offset, size, msg or "timeout")
        end
        parts[#parts + 1] = frame
        got = got + #frame
        conn:write_raw(string.pack("<I4", got))
        update(got)
      end
      local digest, _, dmsg = conn:read_frame(10)
      local data = table.concat(parts)
      if #data ~= size then
        finish("failed")
        self:fail("read_flash 0x%X+%d: got %d bytes, asked for %d", offset, size, #data, size)
      end
      if not digest then
        finish("failed")
        self:fail("read_flash 0x%X+%d: all data received but no MD5 frame from the stub: %s", offset, size,
          dmsg or "timeout")
      end
      if digest ~= hash.md5(data) then
        finish("failed")
        self:fail("read_flash 0x%X+%d: MD5 from the stub does not match the data received", offset, size)
      end
      finish()
      return data
    end
    if not self.chip.rom.read_flash_slow then
      finish("failed")
      self:fail("the %s ROM cannot read flash; use the stub (leave stub= unset)", self.chip.name)
    end
    while got < size do
      local n = math.min(64, size - got)
      local payload = conn:command(OP.READ_FLASH_SLOW, string.pack("<I4I4", offset + got, n), { resp_len = 64 })
      parts[#parts + 1] = payload:sub(1, n)
      got = got + n
      if got % 1024 == 0 or got == size then update(got) end
    end
    finish()
    return table.concat(parts)
  end
end
