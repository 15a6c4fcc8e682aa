--[[ mpctl.sim.usb.stm32_dfu: the STM32F405/F407 system-memory (ROM) DFU bootloader, as a USB device
model for mpctl.sim.usb.host. What a Pyboard shows with its DFU/BOOT0 pin at 3V3 after reset.

Facts (anchors.md §3.3; ST AN3156 "USB DFU protocol used in the STM32 bootloader", UM0424 DfuSe;
dfu-util device-logs/stm32f4discovery.lsusb):
  - 0483:DF11, bcdDevice 0x2200, one DFU interface (class FE, subclass 01, protocol 02) with four
    alt settings named by their memory layout strings; functional descriptor bmAttributes 0x0B
    (download, upload, will detach), wDetachTimeOut 255 ms, wTransferSize 2048, bcdDFUVersion 0x011A
  - DfuSe commands in DNLOAD block 0: 0x21 set address pointer, 0x41 erase sector (with address) or
    mass erase (alone), 0x92 read unprotect; UPLOAD block 0 lists them. Data blocks from wBlockNum 2
    land at pointer + (wBlockNum - 2) * wTransferSize. A zero-length DNLOAD then GETSTATUS leaves.
  - NOR flash: programming can only clear bits (new = old AND data); erase sets a sector to 0xFF.
  - Times (timing=on), STM32F405xx datasheet DS8626, "Flash memory programming" table, x32
    parallelism, typical: word program 16 us, sector erase 16 KB 400 ms, 64 KB 1200 ms, 128 KB 2 s,
    mass erase 16 s. The ROM reports bwPollTimeout 100 ms for a mass erase that takes up to 32 s
    (dfu-util's quirk), and the real time of other operations.
  - Status codes: an address outside the alt's memory -> errTARGET; a write to a read-only region or
    past the end -> errADDRESS; programmed data that does not read back (bits that would have to go
    0 -> 1: unerased flash) -> errVERIFY (model decision: the DFU 1.1 meaning of errVERIFY).

Options (mpctl sim pyboard k=v): timing=on|off (off: every operation is instant and reported as 0 ms),
fault=stall|error|disconnect with fault_at=N (the Nth data block; default from seed=S), serial=.
]]
local device = require("mpctl.sim.usb.device")
local dfu = require("mpctl.sim.usb.dfu_class")
local time = require("mpctl.time")

local M = {}
M.__index = M

local ST = dfu.status
local TRANSFER = 2048
local FLASH_BASE, FLASH_SIZE = 0x08000000, 1024 * 1024
local PAGE = 2048 -- storage granule of the model (not a hardware page)

-- The four alt settings of the F405/F407 ROM, strings as the device reports them.
M.ALTS = {
  "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg",
  "@Option Bytes  /0x1FFFC000/01*016 g",
  "@OTP Memory /0x1FFF7800/01*512 g,01*016 g",
  "@Device Feature/0xFFFF0000/01*004 g",
}

-- Sectors of the internal flash: {addr, size, erase_seconds}.
local SECTORS = {}
do
  local a = FLASH_BASE
  local function add(n, size, secs)
    for _ = 1, n do SECTORS[#SECTORS + 1] = { addr = a, size = size, erase = secs }; a = a + size end
  end
  add(4, 16 * 1024, 0.4); add(1, 64 * 1024, 1.2); add(7, 128 * 1024, 2.0)
end
M.SECTORS = SECTORS
local MASS_ERASE_SECONDS, MASS_ERASE_REPORTED_MS = 16.0, 100
local WORD_PROGRAM_SECONDS = 16e-6

-- Small regions of the other alt settings: option bytes as after a full erase with RDP level 0
-- (RM0090 §3.7.1: 0xAAEC... reset values; model keeps 16 bytes), OTP all 0xFF, feature area.
local function other_regions()
  return {
    [2] = { base = 0x1FFFC000, data = string.pack("<I4I4I4I4", 0xAAEC, 0x0FFF, 0xFFFF, 0xFFFF), writable = false },
    [3] = { base = 0x1FFF7800, data = string.rep("\255", 528), writable = false },
    [4] = { base = 0xFFFF0000, data = string.rep("\0", 4), writable = false },
  }
end

--- A new flash: pages of PAGE bytes, nil = erased (all 0xFF).
function M.new_flash()
  return { pages = {}, erases = 0, sectors_erased = 0, bytes_programmed = 0 }
end

function M.flash_read(flash, addr, len)
  local out = {}
  local off = addr - FLASH_BASE
  while len > 0 do
    local p, o = off // PAGE, off % PAGE
    local n = math.min(len, PAGE - o)
    local page = flash.pages[p]
    out[#out + 1] = page and page:sub(o + 1, o + n) or string.rep("\255", n)
    off, len = off + n, len - n
  end
  return table.concat(out)
end

-- NOR program: bits can only go from 1 to 0. Returns false when a byte did not take its value.
local function flash_program(flash, addr, data)
  local ok = true
  local off, pos = addr - FLASH_BASE, 1
  while pos <= #data do
    local p, o = off // PAGE, off % PAGE
    local n = math.min(#data - pos + 1, PAGE - o)
    local chunk = data:sub(pos, pos + n - 1)
    local page = flash.pages[p] or string.rep("\255", PAGE)
    local old = page:sub(o + 1, o + n)
    local new
    if old == string.rep("\255", n) then
      new = chunk
    else
      local b = { old:byte(1, -1) }
      local c = { chunk:byte(1, -1) }
      for i = 1, n do
        local v = b[i] & c[i]
        if v ~= c[i] then ok = false end
        b[i] = string.char(v)
      end
      new = table.concat(b)
    end
    flash.pages[p] = page:sub(1, o) .. new .. page:sub(o + n + 1)
    off, pos = off + n, pos + n
  end
  flash.bytes_programmed = flash.bytes_programmed + #data
  return ok
end

local function flash_erase(flash, sector)
  local first = (sector.addr - FLASH_BASE) // PAGE
  for p = first, first + sector.size // PAGE - 1 do flash.pages[p] = nil end
  flash.sectors_erased = flash.sectors_erased + 1
end

function M.sector_at(addr)
  for _, s in ipairs(SECTORS) do
    if addr >= s.addr and addr < s.addr + s.size then return s end
  end
end

-- Deterministic pick of the faulty block from a seed (an LCG: the same seed, the same block).
local function fault_block(opts)
  if opts.fault_at then return tonumber(opts.fault_at) end
  local seed = tonumber(opts.seed) or 1
  return 3 + (seed * 1103515245 + 12345) % 29
end

--- opts: timing, fault, fault_at, seed, serial, flash (a shared flash table), next_model(flash) ->
--- the model that enumerates after leave (nil: the ROM again).
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ opts = opts, flash = opts.flash or M.new_flash(), alt = 0, pointer = FLASH_BASE,
    timing = opts.timing == "on" or opts.timing == true, data_blocks = 0, regions = other_regions() }, M)
  if opts.fault then
    self.fault, self.fault_at = opts.fault, fault_block(opts)
  end
  self.class = dfu.new(self)
  local alts = {}
  for i, name in ipairs(M.ALTS) do alts[i] = { class = 0xFE, subclass = 1, protocol = 2, name = name } end
  alts[1].extra = dfu.functional(0x0B, 255, TRANSFER, 0x011A)
  self.usb = device.new {
    vid = 0x0483, pid = 0xDF11, bcd_device = 0x2200, max_packet0 = 64,
    manufacturer = "STMicroelectronics", product = "STM32  BOOTLOADER", serial = opts.serial or "3276345E3233",
    configs = { { attributes = 0xC0, max_power = 50, interfaces = { { class = 0xFE, subclass = 1, protocol = 2,
      alts = alts } } } },
  }
  -- the functional descriptor follows every alt's interface descriptor on the real device
  for i = 2, #alts do alts[i].extra = alts[1].extra end
  return self
end

local function secs(self, s) return self.timing and s or 0 end
local function ms(self, s) return self.timing and s * 1000 or 0 end

-- The address ranges of the current alt setting: flash, or one of the small regions.
function M:in_alt(addr, len)
  if self.alt == 0 then return addr >= FLASH_BASE and addr + len <= FLASH_BASE + FLASH_SIZE end
  local r = self.regions[self.alt + 1]
  return r and addr >= r.base and addr + len <= r.base + #r.data
end

function M:command(data)
  local cmd = data:byte(1)
  if cmd == 0x21 and #data == 5 then
    local addr = string.unpack("<I4", data, 2)
    if not self:in_alt(addr, 0) and not self:in_alt(addr, 1) then return ST.errTARGET end
    self.pointer = addr
    return ST.OK, 0, 0
  elseif cmd == 0x41 and #data == 1 then
    if self.alt ~= 0 then return ST.errTARGET end
    for _, s in ipairs(SECTORS) do flash_erase(self.flash, s) end
    return ST.OK, secs(self, MASS_ERASE_SECONDS), self.timing and MASS_ERASE_REPORTED_MS or 0
  elseif cmd == 0x41 and #data == 5 then
    local addr = string.unpack("<I4", data, 2)
    local s = self.alt == 0 and M.sector_at(addr)
    if not s then return ST.errTARGET end
    flash_erase(self.flash, s)
    return ST.OK, secs(self, s.erase), ms(self, s.erase)
  elseif cmd == 0x92 and #data == 1 then
    -- read unprotect: the chip mass-erases and resets (AN3156 §6.4)
    for _, s in ipairs(SECTORS) do flash_erase(self.flash, s) end
    self.reset_at = time.now() + secs(self, MASS_ERASE_SECONDS)
    return ST.OK, secs(self, MASS_ERASE_SECONDS), self.timing and MASS_ERASE_REPORTED_MS or 0
  end
  return ST.errSTALLEDPKT
end

-- DfuSe data blocks: checked when the DNLOAD arrives (a fault can stall it there).
function M:accept_download(block, data)
  if block == 1 then return ST.errSTALLEDPKT end
  if block >= 2 then
    self.data_blocks = self.data_blocks + 1
    if self.fault == "stall" and self.data_blocks == self.fault_at then return ST.errSTALLEDPKT end
    if self.fault == "disconnect" and self.data_blocks == self.fault_at then
      self.disconnect = true
    end
  end
  return ST.OK
end

function M:download(block, data)
  if block == 0 then return self:command(data) end
  local addr = self.pointer + (block - 2) * TRANSFER
  if self.fault == "error" and self.data_blocks == self.fault_at then return ST.errWRITE end
  if self.alt ~= 0 or not self:in_alt(addr, #data) then return ST.errADDRESS end
  local ok = flash_program(self.flash, addr, data)
  local t = #data / 4 * WORD_PROGRAM_SECONDS
  if not ok then return ST.errVERIFY end
  return ST.OK, secs(self, t), math.ceil(ms(self, t))
end

function M:upload(block, length)
  if block == 0 then return ST.OK, string.char(0x00, 0x21, 0x41, 0x92):sub(1, length) end
  if block == 1 then return ST.errSTALLEDPKT end
  local addr = self.pointer + (block - 2) * TRANSFER
  if self.alt == 0 then
    local stop = math.min(addr + length, FLASH_BASE + FLASH_SIZE)
    if addr < FLASH_BASE or addr >= stop then return ST.OK, "" end
    return ST.OK, M.flash_read(self.flash, addr, stop - addr)
  end
  local r = self.regions[self.alt + 1]
  if not r or addr < r.base then return ST.errADDRESS end
  return ST.OK, r.data:sub(addr - r.base + 1, addr - r.base + length)
end

function M:manifest()
  self.leave_at = time.now() + 0.02
  return 0, true
end

-- Leave jumps to the application when the vector table at 0x08000000 looks like one (initial SP in
-- SRAM, reset vector in flash with the Thumb bit); else the board comes back in the ROM.
function M:app_valid()
  local vt = M.flash_read(self.flash, FLASH_BASE, 8)
  local sp, pc = string.unpack("<I4I4", vt)
  return sp >= 0x20000000 and sp <= 0x20020000 and pc & 1 == 1
    and pc >= FLASH_BASE and pc < FLASH_BASE + FLASH_SIZE
end

function M:control(setup, data)
  return self.class:control(setup, data)
end

function M:set_alt(_, alt)
  if alt < 0 or alt > 3 then return "stall" end
  self.alt = alt
  return "ok"
end

function M:tick(now)
  local function again()
    local o = {}
    for k, v in pairs(self.opts) do o[k] = v end
    o.flash, o.fault = self.flash, nil
    return o
  end
  if self.disconnect then
    -- the board drops off the bus mid-download (brown-out, cable): back in the ROM after reset
    self.disconnect = nil
    return { unplug = true, replace = M.new(again()) }
  end
  if self.reset_at and now >= self.reset_at then
    return { unplug = true, replace = M.new(again()) }
  end
  if self.leave_at and now >= self.leave_at then
    self.leave_at = nil
    if self:app_valid() and self.opts.next_model then return { unplug = true, replace = self.opts.next_model(self.flash) } end
    return { unplug = true, replace = M.new(again()) }
  end
end

return M
