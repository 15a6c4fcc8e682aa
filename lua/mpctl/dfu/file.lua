--[[ mpctl.dfu.file: firmware files for DFU devices, read into parts {{offset=, data=, name=}} and
checked before any device is touched; and written (.dfu) correctly.

  file.load(path, opts) -> parts, info     opts: address= (for .bin), vid=, pid= (refuse other ids)
  file.parse_dfu(bytes, where) -> { targets = {{alt=, name=, elements = {{address=, data=}}}}, vid=, pid=, ... }
  file.parse_hex(text, where) -> parts
  file.build_dfu(parts, { vid=, pid=, alt=0, name= }) -> bytes
  file.crc32(bytes) -> the DFU suffix CRC

Formats (anchors.md §3.3):
  - DfuSe .dfu (ST UM0391): prefix "DfuSe" u8 version=1, u32 size (without suffix), u8 targets; per
    target "Target" u8 alt, u32 named, char[255] name, u32 size, u32 elements; per element u32
    address, u32 size, data.
  - DFU suffix (DFU 1.1 appendix B): bcdDevice, idProduct, idVendor, bcdDFU (0x011A DfuSe / 0x0100),
    "UFD", bLength 16, dwCRC = CRC-32 (poly 0xEDB88320, init 0xFFFFFFFF, no final XOR) of all bytes
    before the CRC. 0xFFFF in idVendor/idProduct means "any".
  - Intel HEX: records :LLAAAATT..CC, types 00 data, 01 EOF, 02 extended segment, 04 extended linear
    address, 03/05 start address (ignored); checksum = two's complement of the byte sum.
  - .bin: raw bytes, at opts.address (default the board's flash base, 0x08000000 for STM32).
]]
local errors = require("mpctl.errors")

local M = {}

-- Standard CRC-32 (zlib's, through mpctl.hash) without the final inversion, as the suffix stores it.
function M.crc32(s)
  return (~require("mpctl.hash").crc32(s)) & 0xFFFFFFFF
end

local function refuse(where, detail, hint)
  errors.raise("refused", where, detail, { hint = hint or "check that the file is complete and meant for this board; nothing was written" })
end

--- Splits off and checks a DFU suffix; returns body, suffix table (nil when there is none).
function M.suffix(bytes, where)
  if #bytes < 16 or bytes:sub(-8, -6) ~= "UFD" then return bytes, nil end
  local bcd_device, pid, vid, bcd_dfu, _, len, crc = string.unpack("<I2I2I2I2c3BI4", bytes, #bytes - 15)
  if len < 16 or len > #bytes then refuse(where, "DFU suffix length " .. len .. " is wrong (file truncated or corrupt)") end
  local want = M.crc32(bytes:sub(1, -5))
  if want ~= crc then
    refuse(where, string.format("DFU suffix CRC mismatch: file says 0x%08X, contents give 0x%08X (corrupt or truncated)", crc, want))
  end
  return bytes:sub(1, -len - 1), { vid = vid, pid = pid, bcd_device = bcd_device, bcd_dfu = bcd_dfu }
end

function M.parse_dfu(bytes, where)
  local body, suffix = M.suffix(bytes, where)
  if body:sub(1, 5) ~= "DfuSe" then
    return { plain = true, data = body, suffix = suffix }
  end
  if not suffix then refuse(where, "DfuSe file without its DFU suffix (truncated?)") end
  if #body < 11 then refuse(where, "DfuSe prefix truncated") end
  local version, size, ntargets = string.unpack("<BI4B", body, 6)
  if version ~= 1 then refuse(where, "DfuSe version " .. version .. " is not 1") end
  -- UM0391: DFUImageSize is the whole file's length (dfuse-pack writes that); pydfu's reading is the
  -- length without the suffix: both are accepted
  if size ~= #body + 16 and size ~= #body then refuse(where, string.format("DfuSe prefix says %d bytes, file has %d (truncated or corrupt)", size, #body)) end
  local pos, out = 12, { targets = {}, vid = suffix.vid, pid = suffix.pid, suffix = suffix }
  for t = 1, ntargets do
    if pos + 274 - 1 > #body or body:sub(pos, pos + 5) ~= "Target" then
      refuse(where, "DfuSe target " .. t .. " header missing or truncated")
    end
    local alt, named, name, tsize, nel = string.unpack("<Bi4c255I4I4", body, pos + 6)
    pos = pos + 274
    if pos + tsize - 1 > #body then refuse(where, "DfuSe target " .. t .. " is truncated") end
    local target = { alt = alt, name = named ~= 0 and name:gsub("%z.*", "") or nil, elements = {} }
    local stop = pos + tsize
    for e = 1, nel do
      if pos + 8 - 1 > stop - 1 then refuse(where, string.format("DfuSe target %d element %d header truncated", t, e)) end
      local addr, esize = string.unpack("<I4I4", body, pos)
      pos = pos + 8
      if pos + esize > stop then refuse(where, string.format("DfuSe target %d element %d is truncated", t, e)) end
      target.elements[e] = { address = addr, data = body:sub(pos, pos + esize - 1) }
      pos = pos + esize
    end
    if pos ~= stop then refuse(where, "DfuSe target " .. t .. " size does not match its elements") end
    out.targets[t] = target
  end
  if pos ~= #body + 1 then refuse(where, "trailing bytes after the last DfuSe target") end
  return out
end

function M.build_dfu(parts, opts)
  opts = opts or {}
  local els = {}
  local tsize = 0
  for _, p in ipairs(parts) do
    els[#els + 1] = string.pack("<I4I4", p.offset, #p.data) .. p.data
    tsize = tsize + 8 + #p.data
  end
  local name = opts.name or "ST..."
  local target = "Target" .. string.pack("<Bi4c255I4I4", opts.alt or 0, 1, name .. string.rep("\0", 255 - #name), tsize, #parts)
    .. table.concat(els)
  local body = "DfuSe" .. string.pack("<BI4B", 1, 11 + #target + 16, 1) .. target
  local pre = body .. string.pack("<I2I2I2I2", opts.bcd_device or 0xFFFF, opts.pid or 0xFFFF, opts.vid or 0xFFFF, 0x011A)
    .. "UFD" .. string.char(16)
  return pre .. string.pack("<I4", M.crc32(pre))
end

function M.parse_hex(text, where)
  local mem, base, line_no = {}, 0, 0
  local ended = false
  for line in text:gmatch("[^\r\n]+") do
    line_no = line_no + 1
    if ended then refuse(where, "data after the end-of-file record (line " .. line_no .. ")") end
    if not line:match("^:%x+$") or #line % 2 ~= 1 or #line < 11 then
      refuse(where, "line " .. line_no .. " is not an Intel HEX record")
    end
    local raw = line:sub(2):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    local sum = 0
    for i = 1, #raw do sum = sum + raw:byte(i) end
    if sum & 0xFF ~= 0 then refuse(where, "checksum error on line " .. line_no) end
    local len, addr, typ = string.unpack(">BI2B", raw)
    if #raw ~= len + 5 then refuse(where, "record length wrong on line " .. line_no) end
    local data = raw:sub(5, 4 + len)
    if typ == 0 then
      mem[#mem + 1] = { offset = base + addr, data = data }
    elseif typ == 1 then
      ended = true
    elseif typ == 2 then
      base = string.unpack(">I2", data) * 16
    elseif typ == 4 then
      base = string.unpack(">I2", data) << 16
    elseif typ ~= 3 and typ ~= 5 then
      refuse(where, "unknown record type " .. typ .. " on line " .. line_no)
    end
  end
  if not ended then refuse(where, "no end-of-file record (truncated file)") end
  -- merge adjacent records into contiguous parts
  table.sort(mem, function(a, b) return a.offset < b.offset end)
  local parts = {}
  for _, r in ipairs(mem) do
    local last = parts[#parts]
    if last and last.stop == r.offset then
      last.chunks[#last.chunks + 1] = r.data
      last.stop = last.stop + #r.data
    elseif last and r.offset < last.stop then
      refuse(where, string.format("overlapping records at 0x%08X", r.offset))
    else
      parts[#parts + 1] = { offset = r.offset, chunks = { r.data }, stop = r.offset + #r.data }
    end
  end
  for i, p in ipairs(parts) do parts[i] = { offset = p.offset, data = table.concat(p.chunks), name = where } end
  return parts
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then errors.raise("not_found", path, "cannot read the firmware file: " .. tostring(err)) end
  local s = f:read("a")
  f:close()
  return s
end

--- Loads a firmware file into parts. opts.address: where a .bin goes (default opts.base);
--- opts.vid/pid: the device's ids (a .dfu for other ids is refused).
function M.load(path, opts)
  opts = opts or {}
  local bytes = read_file(path)
  if #bytes == 0 then refuse(path, "the file is empty") end
  local ext = path:lower():match("%.(%w+)$")
  local info = { format = ext }
  if ext == "dfu" then
    local d = M.parse_dfu(bytes, path)
    if d.suffix and opts.vid then
      local s = d.suffix
      if (s.vid ~= 0xFFFF and s.vid ~= opts.vid) or (s.pid ~= 0xFFFF and s.pid ~= opts.pid) then
        refuse(path, string.format("the file is for USB device %04x:%04x, the board is %04x:%04x", s.vid, s.pid, opts.vid, opts.pid),
          "use the firmware built for this board")
      end
    end
    if d.plain then
      return { { offset = opts.address or opts.base, data = d.data, name = path } }, info
    end
    local parts = {}
    for _, t in ipairs(d.targets) do
      if t.alt ~= 0 then refuse(path, "the file has a target for alt setting " .. t.alt .. " (only internal flash, alt 0, is written)") end
      for _, e in ipairs(t.elements) do parts[#parts + 1] = { offset = e.address, data = e.data, name = path } end
    end
    if #parts == 0 then refuse(path, "the DfuSe file holds no data") end
    info.vid, info.pid = d.vid, d.pid
    return parts, info
  elseif ext == "hex" or ext == "ihex" then
    return M.parse_hex(bytes, path), info
  end
  local body = M.suffix(bytes, path) -- a .bin may carry a suffix (dfu-suffix): checked and removed
  return { { offset = opts.address or opts.base or 0x08000000, data = body, name = path } }, info
end

return M
