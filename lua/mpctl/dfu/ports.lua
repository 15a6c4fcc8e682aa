--[[ mpctl.dfu.ports: the USB part of `mpctl ports`: devices that matter without a serial port —
DFU devices (in DFU mode or a runtime DFU interface, with their alt-setting names), RP2 boot ROMs in
BOOTSEL, and devices whose ids a board file knows. Each row: {usb=, path="usb:1-4.2", serial=,
product=, mode=, alts={names}, boards={ids}, families={the boards' families}} (families: for
`--port auto`, mpctl.many.ports).
]]
local M = {}

-- anchors.md §3.5
local KNOWN = {
  ["2e8a:0003"] = "RP2040 BOOTSEL", ["2e8a:000f"] = "RP2350 BOOTSEL",
}

function M.rows()
  local ok, usb = pcall(require, "mpctl.usb")
  if not ok then return {} end
  local dfu = require("mpctl.dfu")
  local okl, list = pcall(usb.list)
  if not okl then return {} end
  local board_ok, board = pcall(require, "mpctl.board")
  local rows = {}
  for _, info in ipairs(list) do
    local key = string.format("%04x:%04x", info.vid or 0, info.pid or 0)
    local alts = dfu.dfu_alts(info)
    local boards, families, seen = {}, {}, {}
    if board_ok and info.vid then
      local okm, m = pcall(board.match_usb, info.vid, info.pid)
      for _, b in ipairs(okm and m or {}) do
        boards[#boards + 1] = b.id
        if b.family and not seen[b.family] then seen[b.family] = true; families[#families + 1] = b.family end
      end
    end
    local has_tty = require("mpctl.dfu.target").tty_of(info.path) ~= nil
    if (#alts > 0 or KNOWN[key] or #boards > 0) and not has_tty then
      local names = {}
      for _, a in ipairs(alts) do names[#names + 1] = a.name or ("alt " .. a.alt) end
      rows[#rows + 1] = { path = "usb:" .. info.path, usb = key:upper(), serial = info.serial,
        product = info.product, manufacturer = info.manufacturer,
        mode = #alts > 0 and (alts[1].protocol == 1 and "DFU runtime" or "DFU") or KNOWN[key] or "USB",
        alts = names, boards = boards, families = families }
    end
  end
  table.sort(rows, function(a, b) return a.path < b.path end)
  return rows
end

function M.write(rows, json)
  local ui = require("mpctl.ui")
  for _, r in ipairs(rows) do
    if json then
      ui.event(r)
    else
      ui.out(string.format("%-20s %-10s %-14s %-30s %s%s\n", r.path, r.usb, r.serial or "-",
        table.concat({ r.manufacturer or "", r.product or "" }, " "):gsub("^%s+", ""),
        r.mode, #r.boards > 0 and ("  looks like: " .. table.concat(r.boards, "/")) or ""))
      for _, a in ipairs(r.alts) do ui.out(string.format("%-20s   alt: %s\n", "", a)) end
    end
  end
end

return M
