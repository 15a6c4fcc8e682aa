--- Interactive MicroPython REPL on the board (Ctrl-] quits; Ctrl-C and Ctrl-D go to the board).
-- @option raw: yes|no = no; do not leave a raw REPL or show the banner on connect
--
-- mpctl repl --port /dev/ttyACM0
-- With stdin not a terminal, lines are sent as typed (\n becomes \r) and the session ends once the
-- input is used up and the board has gone quiet: echo "print(1+1)" | mpctl repl --port P

local ui, serial, time = mpctl.ui, mpctl.serial, mpctl.time
local port = mpctl.open_port(arg)
local tty = ui.isatty(0)
local input = serial.wrap_fd(0, "stdin")

io.stderr:write(string.format("Connected to %s. Ctrl-] quits.\r\n", tostring(arg.port)))
if tty then ui.raw_mode(0, true) end

local ok, err = pcall(function()
  -- Ctrl-B: a board left in the raw REPL (by a tool that died) goes back to the friendly one;
  -- at the friendly prompt it reprints the banner, which shows what answered.
  if not arg.raw then port:write("\2") end
  local input_done, quiet_since = false, nil
  while true do
    local ready = serial.poll(input_done and {port} or {input, port}, 0.1)
    for _, o in ipairs(ready) do
      if o == port then
        local s = port:read(65536, 0)
        if s == "" and port:is_eof() then error("the board hung up", 0) end
        io.stdout:write(s)
        io.stdout:flush()
        quiet_since = nil
      else
        local s = input:read(4096, 0)
        if s == "" and input:is_eof() then
          input_done = true
        else
          local q = s:find("\29", 1, true)         -- Ctrl-]
          if q then
            if q > 1 then port:write(s:sub(1, q - 1)) end
            return
          end
          if not tty then s = s:gsub("\r?\n", "\r") end
          port:write(s)
        end
      end
    end
    if input_done and #ready == 0 then
      quiet_since = quiet_since or time.now()
      if time.now() - quiet_since > 0.5 then return end
    end
  end
end)
if tty then ui.raw_mode(0, false) end
io.stderr:write("\r\n")
port:close()
if not ok then error(err, 0) end
