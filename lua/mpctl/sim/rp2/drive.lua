--[[ mpctl.sim.rp2.drive: the BOOTSEL mass-storage drive of a simulated Pico, served as a folder
(drive=DIR) instead of a SCSI disk: no block device can be mounted in the sandbox, and a folder is
what a client sees of a mounted drive anyway.

While the board is in BOOTSEL the folder holds the ROM's two files, INFO_UF2.TXT and INDEX.HTM
(texts in mpctl.sim.rp2.chips); every other file is treated as what the host wrote to the disk:
the ROM sees the 512-byte sectors of a copied file as they arrive, so each poll reads the complete
sectors added since the last one and hands them to the ROM's UF2 logic (mpctl.sim.rp2.uf2) in
order. Flash work takes the chip's time (timing=on): sectors are taken only as fast as the flash
allows, on the device's own clock, without blocking the bus. When the board leaves BOOTSEL the
folder is removed (the drive goes away) and it is made again when BOOTSEL comes back.

The folder must be new, empty or a previous drive (only INFO_UF2.TXT, INDEX.HTM and .uf2 files):
it is deleted when the board leaves BOOTSEL, so a folder with other files is refused.
]]
local fs = require("mpctl.fs")
local errors = require("mpctl.errors")

local M = {}
M.__index = M

local ROM_FILES = { ["INFO_UF2.TXT"] = true, ["INDEX.HTM"] = true }

--- Checks drive=DIR before the board starts (raises a usage error).
function M.check(dir)
  local st = fs.stat(dir)
  if not st then return end
  if st.type ~= "dir" then
    errors.raise("usage", "sim drive=" .. dir, "drive= must name a folder (it is created, and removed when the board leaves BOOTSEL)",
      { hint = "give a new folder, e.g. drive=/tmp/RPI-RP2" })
  end
  for _, name in ipairs(fs.list(dir)) do
    if not ROM_FILES[name] and not name:lower():match("%.uf2$") then
      errors.raise("usage", "sim drive=" .. dir, "the folder holds '" .. name .. "': the simulated drive is deleted when the board leaves BOOTSEL",
        { hint = "give a new or empty folder" })
    end
  end
end

--- dir, chip (mpctl.sim.rp2.chips entry), rom: mpctl.sim.rp2.uf2 state, log
function M.new(dir, chip, rom, log)
  return setmetatable({ dir = dir, chip = chip, rom = rom, log = log or function() end, files = {},
    busy_until = 0 }, M)
end

local function index_htm(chip)
  -- the ROM's INDEX.HTM is a redirect to the board's page (pico-bootrom-rp2040 bootrom/welcome.html)
  return string.format('<html><head><meta http-equiv="refresh" content="0;URL=\'%s\'"/></head>'
    .. '<body>Redirecting to <a href=\'%s\'>raspberrypi.com</a></body></html>', chip.index_url, chip.index_url)
end

--- The drive appears (BOOTSEL entered, or ejection undone).
function M:mount()
  if self.mounted then return end
  fs.remove(self.dir, { recursive = true })
  fs.mkdir(self.dir, { parents = true })
  fs.write(fs.join(self.dir, "INFO_UF2.TXT"), self.chip.info_uf2)
  fs.write(fs.join(self.dir, "INDEX.HTM"), index_htm(self.chip))
  self.files, self.mounted = {}, true
  self.log("BOOTSEL drive at " .. self.dir)
end

--- The drive goes away (the board left BOOTSEL, or PICOBOOT ejected it).
function M:unmount()
  if not self.mounted then return end
  self.mounted = false
  pcall(fs.remove, self.dir, { recursive = true })
  self.log("BOOTSEL drive removed")
end

local function read_from(path, offset, len)
  local f = io.open(path, "rb")
  if not f then return nil end
  f:seek("set", offset)
  local s = f:read(len)
  f:close()
  return s
end

--- Polls the folder; now = the device clock. Returns "reboot", ram when a download completed.
function M:poll(now, exclusive, timing)
  if not self.mounted or now < self.busy_until then return end
  -- a folder listing per bus request would slow PICOBOOT down: look every 20 ms, as a host's
  -- writes reach a real drive in bursts anyway
  if self.next_look and now < self.next_look and not self.pending then return end
  self.next_look = now + 0.02
  local ok, names = pcall(fs.list, self.dir)
  if not ok then return end
  for _, name in ipairs(names) do
    if not ROM_FILES[name] then
      local path = fs.join(self.dir, name)
      local st = fs.stat(path)
      local f = self.files[name]
      if st and st.type == "file" then
        if not f or st.size < f.offset then
          f = { offset = 0 }
          self.files[name] = f
        end
        -- whole sectors only: a copy still in progress shows a partial one at its end
        local avail = (st.size - f.offset) // 512
        self.pending = avail > 0 or nil
        while avail > 0 and now >= self.busy_until do
          local n = math.min(avail, 256)
          local data = read_from(path, f.offset, n * 512)
          if not data or #data < n * 512 then break end
          for i = 0, n - 1 do
            if now < self.busy_until then break end
            local secs, action, ram = self.rom:sector(data:sub(i * 512 + 1, i * 512 + 512), exclusive)
            f.offset = f.offset + 512
            avail = avail - 1
            if timing then
              -- the device clock runs on from where the last work ended while the flash stays busy
              -- (a poll that comes late must not lose that time), from now after an idle spell
              local start = self.busy_until < now - 0.05 and now or self.busy_until
              self.busy_until = start + secs
            end
            if action == "reboot" then return "reboot", ram end
          end
        end
      end
    end
  end
end

return M
