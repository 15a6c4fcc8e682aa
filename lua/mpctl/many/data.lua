-- mpctl.many.data: per-board data for a station (`data=FILE`): a CSV file, one row per board,
-- e.g. a device name and Wi-Fi settings a recipe writes onto each board after flashing.
--
--   name,ssid,mac
--   sensor-01,lab,24:0a:c4:11:22:33
--   sensor-02,lab,
--
-- Rows are matched to boards by MAC (a `mac` or `device` column, compared case-insensitively)
-- when the row names one, else handed out in order: the Nth board the station starts gets the
-- Nth row that names no MAC. The station reads the file and passes its rows (JSON) and the
-- board's place in that order to the recipe's process ($MPCTL_BOARD_DATA, $MPCTL_BOARD_DATA_ROW:
-- the recipe's sandbox need not reach the file); the recipe asks with mpctl.board_data(device).
-- CSV as RFC 4180 (quoted fields, "" for a quote, CRLF or LF).
local M = {}

-- rows of fields from CSV text
function M.parse_csv(text)
  local rows, row, field, i, n = {}, {}, {}, 1, #text
  local quoted = false
  while i <= n do
    local c = text:sub(i, i)
    if quoted then
      if c == '"' then
        if text:sub(i + 1, i + 1) == '"' then field[#field + 1] = '"' i = i + 1 else quoted = false end
      else
        field[#field + 1] = c
      end
    elseif c == '"' then
      quoted = true
    elseif c == "," then
      row[#row + 1] = table.concat(field) field = {}
    elseif c == "\n" or c == "\r" then
      if c == "\r" and text:sub(i + 1, i + 1) == "\n" then i = i + 1 end
      row[#row + 1] = table.concat(field) field = {}
      rows[#rows + 1] = row row = {}
    else
      field[#field + 1] = c
    end
    i = i + 1
  end
  if quoted then error("CSV: a quoted field is not closed", 0) end
  if #field > 0 or #row > 0 then row[#row + 1] = table.concat(field) rows[#rows + 1] = row end
  -- blank lines are no rows
  local out = {}
  for _, r in ipairs(rows) do if not (#r == 1 and r[1] == "") then out[#out + 1] = r end end
  return out
end

-- The file as records (header names as keys), in file order.
function M.load(path)
  local fs = require("mpctl.fs")
  if not fs.exists(path) then
    require("mpctl").usage_error("data=" .. path .. ": no such file (a CSV file, a header line, one row per board)")
  end
  local ok, rows = pcall(M.parse_csv, fs.read(path))
  if not ok then require("mpctl").usage_error("data=" .. path .. ": " .. tostring(rows)) end
  if #rows < 1 then require("mpctl").usage_error("data=" .. path .. ": empty (a header line, then one row per board)") end
  local header = rows[1]
  local recs = {}
  for i = 2, #rows do
    local r = {}
    for j, name in ipairs(header) do
      local v = rows[i][j]
      if v ~= nil and v ~= "" then r[name] = v end
    end
    recs[#recs + 1] = r
  end
  return recs
end

local function mac_of(r) return r.mac or r.device end

-- The rows that name no MAC, in order (handed out one per board).
function M.unnamed(recs)
  local out = {}
  for _, r in ipairs(recs) do if not mac_of(r) then out[#out + 1] = r end end
  return out
end

-- The row for `device` (its MAC), else the `index`th row naming no MAC, else nil.
function M.row_for(recs, device, index)
  if device then
    for _, r in ipairs(recs) do
      local m = mac_of(r)
      if m and m:lower() == tostring(device):lower() then return r end
    end
  end
  if index then return M.unnamed(recs)[index] end
end

-- For a recipe: its board's row from the station's data file, or nil (no data= given, no row).
function M.for_this_board(device)
  local rows = os.getenv("MPCTL_BOARD_DATA")
  if not rows or rows == "" then return nil end
  return M.row_for(require("mpctl.ui").json_decode(rows), device, tonumber(os.getenv("MPCTL_BOARD_DATA_ROW") or ""))
end

return M
