-- The ESP fault matrix (issue 8): one flash per case on a fresh simulated board whose flash holds
-- known, non-blank previous content, with seeded faults on the wire (mpctl.sim.esp's drop /
-- corrupt / stall / reset, in the direction asked), then the board's flash file is compared
-- with what mpctl said. Used by tests/esp/fault_matrix_*_test.lua (assert the invariant on every
-- case) and bench/fault_matrix.lua (prints recovery rates).
--
-- The invariant: a verified exit 0 means the whole flash equals the image inside its sectors and
-- the previous content outside them. Also: a failure is an mpctl.errors object (never an internal
-- error), a write failure carries an offset, and what it says about the outside is true.
local fs = require("mpctl.fs")
local serial = require("mpctl.serial")
local errors = require("mpctl.errors")
local esp = require("mpctl.esp")
local imagegen = require("mpctl.esp.imagegen")

local M = {}

M.FLASH = 1024 * 1024
M.KINDS = { "drop", "corrupt", "stall", "reset" }
M.DIRS = { "rx", "tx", "both" }

function M.previous_content(size, seed)
  local parts = {}
  for i = 0, size // 4096 - 1 do parts[#parts + 1] = string.rep(string.pack("<I4", (seed << 16) + i + 1), 1024) end
  return table.concat(parts)
end

local images = {}
function M.image(chip)
  -- not a whole number of sectors, so the tail of the last sector is exercised
  images[chip] = images[chip] or imagegen.generate { chip = chip, size = 48 * 1024 + 300, seed = 11 }
  return images[chip]
end

-- case: { chip = "esp32"|"esp8266", mode = "stub"|"rom", kind = "drop"|..., dir = "rx"|"tx"|"both",
--         rate = 0..1, seed = n }
-- Returns { case=, outcome = "ok"|"unverified"|"failed", kind=, msg=, violation = nil|text,
--           touched = bool (flash outside the image changed), retries=, reconnects= }
function M.run(case)
  local dir = fs.tmpdir()
  local path = fs.join(dir, "flash.bin")
  local prev = M.previous_content(M.FLASH, case.seed)
  fs.write(path, prev)
  local img = M.image(case.chip)
  local offset = case.chip == "esp32" and 0x1000 or 0
  local q = { "timing=off", "flash_size=1MB", "flash_file=" .. path, "seed=" .. case.seed,
    case.kind .. "=" .. case.rate, "fault_dir=" .. case.dir }
  if case.kind == "stall" then q[#q + 1] = "stall_ms=400" end
  local url = "sim://" .. case.chip .. "?" .. table.concat(q, "&")
  local r = { case = case }
  local port = serial.open(url, { baud = 115200 })
  local ok, res = pcall(function()
    local chip = esp.connect(port, { reset = "classic", baud = case.chip == "esp32" and 921600 or 460800,
      stub = case.mode == "rom" and "no" or nil, timeout_scale = 0.1, log = function() end })
    local st = chip:write(offset, img)
    r.reconnects = chip.reconnects or 0
    return st
  end)
  pcall(port.close, port)
  local flash = fs.read(path)
  fs.remove(dir, { recursive = true })
  -- what really happened to the flash
  local stop = offset + #img
  local sector_end = stop + (-stop) % 4096
  local image_ok = flash:sub(offset + 1, stop) == img
  local tail = flash:sub(stop + 1, sector_end)
  local tail_ok = tail == string.rep("\255", #tail) or tail == prev:sub(stop + 1, sector_end)
  local outside_same = flash:sub(1, offset) == prev:sub(1, offset) and flash:sub(sector_end + 1) == prev:sub(sector_end + 1)
  r.touched = not outside_same
  if ok then
    r.retries = res.retries
    if res.verified then
      r.outcome = "ok"
      if not (image_ok and tail_ok and outside_same) then
        r.violation = string.format("exit 0 (verified) but image %s, tail %s, outside %s",
          image_ok and "ok" or "WRONG", tail_ok and "ok" or "WRONG", outside_same and "as before" or "CHANGED")
      elseif res.outside ~= "unchanged" then
        r.violation = "verified write did not check the outside: " .. tostring(res.outside)
      end
    else
      -- a loader without MD5 (ESP8266 ROM): the write must say it is unverified and unchecked
      r.outcome = "unverified"
      if res.outside ~= "skipped" then r.violation = "unverified write claims outside " .. tostring(res.outside) end
    end
    return r
  end
  r.outcome = "failed"
  r.kind = errors.kind(res)
  r.msg = tostring(res)
  if not errors.is_error(res) or r.kind == "internal" then
    r.violation = "internal error: " .. r.msg
  elseif res.outside == "unchanged" and not outside_same then
    r.violation = "said nothing outside changed, but it did: " .. r.msg
  elseif res.outside == "changed" and outside_same then
    r.violation = "said the outside changed, but it did not: " .. r.msg
  elseif res.outside ~= nil and math.type(res.offset) ~= "integer" then
    r.violation = "write failure without an offset: " .. r.msg
  end
  return r
end

-- The cases: every kind x direction x rate for each chip and mode, seeds varied per cell.
function M.cases(opts)
  opts = opts or {}
  local out = {}
  local seeds = opts.seeds or 1
  for _, chip in ipairs(opts.chips or { "esp32", "esp8266" }) do
    for _, mode in ipairs(opts.modes or { "stub", "rom" }) do
      for _, kind in ipairs(opts.kinds or M.KINDS) do
        for _, dir in ipairs(opts.dirs or M.DIRS) do
          for ri, rate in ipairs(opts.rates or { 0.02, 0.08 }) do
            for s = 1, seeds do
              out[#out + 1] = { chip = chip, mode = mode, kind = kind, dir = dir,
                rate = kind == "reset" and rate / 4 or rate, seed = 1000 * s + 37 * ri + #out }
            end
          end
        end
      end
    end
  end
  return out
end

function M.label(c)
  return string.format("%s %s %s=%g dir=%s seed=%d", c.chip, c.mode, c.kind, c.rate, c.dir, c.seed)
end


-- The tests of one chip's half of the matrix (one ctest test per chip, so the halves run side by
-- side): a baseline without faults, the invariant on every case, and a summary line.
function M.define_tests(chip)
  local test = require("mpctl.test")

  local results = {}

  test("baseline: no faults, both modes: verified and nothing else touched", function()
    for _, chip in ipairs { chip } do
      for _, mode in ipairs { "stub", "rom" } do
        local r = M.run { chip = chip, mode = mode, kind = "drop", dir = "both", rate = 0, seed = 1 }
        test.eq(r.violation, nil, M.label(r.case))
        test.eq(r.outcome, (chip == "esp8266" and mode == "rom") and "unverified" or "ok", M.label(r.case) .. ": " .. tostring(r.msg))
        -- The ESP8266 ROM's erase-size bug makes it erase one sector past an image of an odd number
        -- of sectors (esptool's workaround too); without MD5 there it is not checked: said so.
        if not (chip == "esp8266" and mode == "rom") then test.eq(r.touched, false, M.label(r.case)) end
      end
    end
  end)

  for _, c in ipairs(M.cases { chips = { chip } }) do
    test("invariant: " .. M.label(c), function()
      local r = M.run(c)
      results[#results + 1] = r
      test.eq(r.violation, nil, M.label(c) .. (r.msg and (" -> " .. r.msg) or ""))
    end)
  end

  test("summary", function()
    local n, ok = 0, 0
    for _, r in ipairs(results) do
      n = n + 1
      if r.outcome ~= "failed" then ok = ok + 1 end
    end
    print(string.format("fault matrix: %d cases, %d completed, %d failed cleanly", n, ok, n - ok))
    test.ok(n > 0, "cases ran")
  end)
end

return M
