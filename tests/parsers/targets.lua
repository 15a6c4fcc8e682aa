-- The Lua parsers of untrusted input, one entry per parser, for mpctl.fuzz (see lua/mpctl/fuzz.lua):
-- tests/parsers/fuzz_test.lua runs each briefly on the committed corpus (corpus/<name>/), and
-- bench/fuzz_parsers.lua runs each for an hour. To add a parser (UF2, DfuSe, ...): add an entry
-- with name, run and check (and a folder of seed inputs under corpus/<name>/).
--
-- Loaded with dofile; returns function(tmpdir) -> { targets } (some parsers read files).
local fs = require("mpctl.fs")

return function(tmpdir)
  local T = {}

  -- ESP image header and segments (esp/image.lua), the whole pre-flash check, as esp32 and esp8266.
  do
    local image = require("mpctl.esp.image")
    local chips = require("mpctl.esp.chips")
    local chip_list = { chips.get("esp32"), chips.get("esp8266"), chips.get("esp32s3") }
    T[#T + 1] = {
      name = "esp_image",
      run = function(input, g)
        local chip = g:pick(chip_list)
        local info = image.check(input, chip, chip.bootloader_offset, 4 * 1024 * 1024)
        return { info = info, len = #input }
      end,
      check = function(r)
        local info = r.info
        if type(info) ~= "table" or type(info.segments) ~= "table" or #info.segments == 0 then
          return false, "no segments in an accepted image"
        end
        for i, s in ipairs(info.segments) do
          if s.offset < 0 or s.offset + s.len > r.len then return false, "segment " .. i .. " outside the file" end
        end
        return true
      end,
      -- TRANSITIONAL: image.lua raises "image: ..." strings on purpose until it raises mpctl.errors
      legacy_error = function(e) return e:sub(1, 7) == "image: " end,
    }
  end

  -- History lines (history.lua): read a file of them, then format every record as `mpctl history` does.
  do
    local history = require("mpctl.history")
    local path = fs.join(tmpdir, "history.jsonl")
    T[#T + 1] = {
      name = "history",
      run = function(input)
        local f = assert(io.open(path, "wb"))
        f:write(input)
        f:close()
        local recs = history.read({ path = path })
        local lines = {}
        for i, r in ipairs(recs) do lines[i] = history.format(r) end
        return { recs = recs, lines = lines }
      end,
      check = function(r)
        for i, rec in ipairs(r.recs) do
          if type(rec) ~= "table" then return false, "record " .. i .. " is not a table" end
          if type(r.lines[i]) ~= "string" then return false, "record " .. i .. " formats to no line" end
        end
        return true
      end,
    }
  end

  -- The firmware index HTML: a board page's file links and the /download/ index's board ids.
  do
    local catalog = require("mpctl.firmware.catalog")
    T[#T + 1] = {
      name = "firmware_index",
      run = function(input)
        return { entries = catalog.parse_page(input, "ESP32_GENERIC"), ids = catalog.parse_index(input) }
      end,
      check = function(r)
        for _, e in ipairs(r.entries) do
          if not catalog.FIRMWARE_TYPES[e.type] then return false, "entry of type " .. tostring(e.type) end
          if not catalog.parse_version(e.version) then return false, "entry with version " .. tostring(e.version) end
          if e.file:find("/", 1, true) then return false, "file name with a slash: " .. e.file end
        end
        for _, id in ipairs(r.ids) do
          if not id:match("^[%w_%-]+$") then return false, "board id " .. id end
        end
        return true
      end,
    }
  end

  -- Bundle flash arguments (esp/bundle.lua): ESP-IDF's flasher_args.json and the text flash_args.
  do
    local bundle = require("mpctl.esp.bundle")
    T[#T + 1] = {
      name = "bundle_args",
      run = function(input)
        if input:match("^%s*{") then return (bundle.flasher_args(input, "build/")) end
        return (bundle.flash_args(input, "build/"))
      end,
      check = function(parts)
        for _, p in ipairs(parts) do
          if math.type(p.offset) ~= "integer" or p.offset < 0 or p.offset > 0xFFFFFFFF then
            return false, "offset " .. tostring(p.offset)
          end
          if type(p.name) ~= "string" or p.name:find("/../", 1, true) or p.name:match("/%.%.$") then
            return false, "part name " .. tostring(p.name)
          end
        end
        return true
      end,
    }
  end

  return T
end
