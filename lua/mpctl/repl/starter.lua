--[[ mpctl.repl.starter: the post-flash test mpctl ships (issue 13, the seed's step 6), for any
board a board file describes: the LED blinks (pin from the board file), the chip's temperature
sensor (or an ADC) reads a plausible value, the filesystem takes a file and gives it back, and
free memory is reported.

    starter.CHECKS                         { {name=, what=} } in order
    starter.run(r, board, {on_result=fn}) -> results   r: an attached repl; board: a board file
                                           table or nil (then the LED is skipped, saying why);
                                           results = { {name=, what=, status="pass"|"fail"|"skip", detail=} }
    starter.verify(r, board)               the same as mpctl.check / mpctl.skip steps of a recipe

The device side is lua/mpctl/repl/starter.py: only what every port has is assumed, the rest probed.
]]
local pysrc = require("mpctl.repl.pysrc")

local M = {}

M.CHECKS = {
  {name = "led", what = "the board's LED blinks"},
  {name = "temp", what = "the temperature sensor (or an ADC) reads a plausible value"},
  {name = "fs", what = "the filesystem is writable"},
  {name = "mem", what = "free memory"},
}

local function pyvalue(v)
  if type(v) == "number" then return string.format("%d", v) end
  if type(v) == "string" then return pysrc.quote(v) end
  return "None"
end

function M.run(r, board, opts)
  opts = opts or {}
  r:exec(pysrc.load("starter"))
  local results = {}
  for _, c in ipairs(M.CHECKS) do
    local res = {name = c.name, what = c.what}
    if c.name == "led" and not (board and board.led) then
      res.status = "skip"
      res.detail = board and ("the board file " .. tostring(board.id) .. " names no LED")
        or "board unknown (give --board ID) so its LED pin is not known"
    else
      local arg = c.name == "led" and pyvalue(board.led) or "None"
      local ok, out = pcall(r.exec, r, "_mpctl_check(" .. pysrc.quote(c.name) .. "," .. arg .. ")", {timeout = 20})
      if not ok then
        res.status, res.detail = "fail", tostring(type(out) == "table" and (out.msg or out.detail) or out)
      else
        local status, detail = out:match("^(%a+) ([^\r\n]*)")
        if status ~= "pass" and status ~= "fail" and status ~= "skip" then
          status, detail = "fail", "unexpected answer: " .. out
        end
        res.status, res.detail = status, detail
      end
    end
    results[#results + 1] = res
    if opts.on_result then opts.on_result(res) end
  end
  return results
end

-- For recipes (test=yes): each result as a check line; a failure fails the recipe after all ran.
function M.verify(r, board)
  local mpctl = require("mpctl")
  local failed = {}
  M.run(r, board, {on_result = function(res)
    if res.status == "pass" then mpctl.check(true, res.what .. ": " .. res.detail)
    elseif res.status == "skip" then mpctl.skip(res.what, res.detail)
    else
      require("mpctl.ui").event({event = "check", name = res.what, ok = false, detail = res.detail})
      require("mpctl.ui").log("error", "failed: %s: %s", res.what, res.detail)
      failed[#failed + 1] = res.what .. ": " .. res.detail
    end
  end})
  if #failed > 0 then mpctl.fail("post-flash test failed: " .. table.concat(failed, "; ")) end
end

return M
