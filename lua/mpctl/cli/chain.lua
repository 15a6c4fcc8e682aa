-- mpctl.cli.chain: several commands on one connection, as mpremote users chain them:
--
--   mpctl --port P cp main.py :main.py + exec 'import main' + ls
--
-- A word that is exactly "+" ends a command (except after "--", where every word is plain). The
-- options before the first command (--port, -v, --json, ...) apply to every command. The CLI
-- opens the port once; each command body gets it through the usual `mpctl.open_port(arg)` (or
-- serial.open of arg.port) as a borrowed port: the same connection, whose close and `<close>`
-- do nothing, so the next command finds the board as the previous one left it (files, variables,
-- the REPL). The CLI closes the real port after the last command.

local M = {}

-- argv split at "+" words: a list of argv lists, or nil when there is no "+".
function M.split(argv)
  local segs, cur, plain = {}, {}, false
  for _, w in ipairs(argv) do
    if w == "+" and not plain then
      segs[#segs + 1] = cur
      cur, plain = {}, false
    else
      if w == "--" then plain = true end
      cur[#cur + 1] = w
    end
  end
  if #segs == 0 then return nil end
  segs[#segs + 1] = cur
  for i, s in ipairs(segs) do
    if #s == 0 then return nil, string.format("command %d of the chain is empty (write CMD + CMD)", i) end
  end
  return segs
end

-- A stand-in for an open port: every method goes to the real one, close does nothing.
local proxies = setmetatable({}, { __mode = "k" }) -- proxy -> real port

function M.borrow(port)
  local proxy
  local mt = {
    __index = function(_, k)
      if k == "close" then return function() end end
      local v = port[k]
      if type(v) == "function" then
        return function(self, ...)
          if self == proxy then return v(port, ...) end
          return v(self, ...)
        end
      end
      return v
    end,
    __close = function() end,
    __tostring = function() return tostring(port) end,
    __name = "mpctl.borrowed_port",
  }
  proxy = setmetatable({}, mt)
  proxies[proxy] = port
  return proxy
end

function M.real(p) return proxies[p] or p end

-- Lets serial.open and serial.poll take a borrowed port (process-wide, once): open returns it as
-- it is, poll waits on the real port and answers with the proxy.
local installed = false
function M.install()
  if installed then return end
  installed = true
  local serial = require("mpctl.serial")
  local open, poll = serial.open, serial.poll
  serial.open = function(url, ...)
    if proxies[url] then return url end
    return open(url, ...)
  end
  serial.poll = function(list, ...)
    local back, real = {}, {}
    for i, p in ipairs(list) do
      local r = proxies[p]
      if r then back[r] = p end
      real[i] = r or p
    end
    local ready = table.pack(poll(real, ...))
    if type(ready[1]) == "table" then
      for i, p in ipairs(ready[1]) do ready[1][i] = back[p] or p end
    end
    return table.unpack(ready, 1, ready.n)
  end
end

return M
