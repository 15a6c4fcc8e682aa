-- Ctrl-C in the middle of a flash (issue 7): a timed flash on sim://esp32 gets SIGINT after the
-- write is well under way (by its progress events, never by a clock). mpctl must exit 130 saying
-- where it stopped and that running the same command again resumes; the history must hold an
-- `interrupted` line with the offset reached; the simulator child must be gone; and the rerun
-- must resume (write less than the whole image) and end verified.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local proc = require("mpctl.proc")
local serial = require("mpctl.serial")
local time = require("mpctl.time")
local imagegen = require("mpctl.esp.imagegen")
local history = require("mpctl.history")
local target = require("mpctl.target")

local KB = 1024
local OFFSET = 0x1000 -- ESP32_GENERIC

-- Children of a process, from /proc (the sim:// simulator is mpctl's own child).
local function children(pid)
  local out = {}
  for _, name in ipairs(fs.list("/proc")) do
    if name:match("^%d+$") then
      local ok, stat = pcall(fs.read, "/proc/" .. name .. "/stat")
      local ppid = ok and stat:match("^%d+ %b() %a (%d+)")
      if ppid and tonumber(ppid) == pid then out[#out + 1] = tonumber(name) end
    end
  end
  return out
end

-- A process is gone when /proc no longer has it or it is a zombie (exited, waiting to be reaped).
local function gone(pid)
  local ok, stat = pcall(fs.read, "/proc/" .. pid .. "/stat")
  if not ok then return true end
  return stat:match("^%d+ %b() (%a)") == "Z"
end

-- Runs mpctl --json with args; on_event(ev, p) sees each JSON line as it comes. Returns the exit
-- code, all output, and the last event named `want`.
local function run(args, env, on_event, want)
  local argv = { test.exe(), "--json" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.spawn { argv = argv, pty = false, stderr = "stdout", env = env }
  local out <close> = serial.wrap_fd(p:stdout_fd(), "mpctl stdout")
  local text, buf, found = {}, "", nil
  local deadline = time.now() + 180
  while time.now() < deadline do
    local s = out:read(65536, 0.2)
    if s ~= "" then
      text[#text + 1] = s
      buf = buf .. s
      for line in buf:gmatch("([^\n]*)\n") do
        local ok, ev = pcall(ui.json_decode, line)
        if ok and type(ev) == "table" then
          if on_event then on_event(ev, p) end
          if ev.event == want then found = ev end
        end
      end
      buf = buf:match("[^\n]*$")
    elseif out:is_eof() then
      break
    end
  end
  local code = p:wait(30)
  if code == nil then p:kill("KILL") p:wait(5) end
  p:close()
  return code, table.concat(text), found
end

test("SIGINT mid-write: exit 130, the offset and the resume hint, an interrupted history line, no orphan; the rerun resumes",
  function()
  if not test.exe() then test.skip("needs the mpctl executable") end
  local dir = fs.tmpdir()
  local _ <close> = setmetatable({}, { __close = function() fs.remove(dir, { recursive = true }) end })
  local hist = fs.join(dir, "history.jsonl")
  local img = imagegen.generate { chip = "esp32", size = 1536 * KB, seed = 3 }
  local img_path, flash = fs.join(dir, "fw.bin"), fs.join(dir, "flash.bin")
  fs.write(img_path, img)
  local env = { MPCTL_HISTORY = hist, MPCTL_BACKUP_DIR = fs.join(dir, "b") }
  -- timing on (the default): the write takes long enough to be interrupted in its middle
  local sims, sent = nil, false
  local code, all = run({ "esp32_flash", "--port", "sim://esp32?app=none&flash_file=" .. flash, "firmware=" .. img_path,
    "--repl=no" }, env, function(ev, p)
    if not sent and ev.event == "progress" and tostring(ev.label):match("^write") and ev.total
        and ev.done >= ev.total // 4 and ev.done < ev.total * 3 // 4 then
      sims = children(p:pid())
      p:kill("INT")
      sent = true
    end
  end)
  test.ok(sent, "the write got under way and was interrupted; output:\n" .. all)
  test.eq(code, 130, "exit code; output:\n" .. all)
  test.contains(all, "interrupted")
  test.contains(all, "run the same command again to resume")

  local recs = history.read({ path = hist })
  test.eq(#recs, 1)
  local r = recs[1]
  test.eq({ r.result, r.error_kind, r.hint }, { "interrupted", "interrupted", target.RESUME_HINT })
  test.ok(type(r.offset) == "number" and r.offset > OFFSET and r.offset < OFFSET + #img,
    string.format("offset reached inside the image: %s", tostring(r.offset)))
  test.contains(all, string.format("0x%X", r.offset), "the message names the offset")

  test.ok(#sims >= 1, "the simulator child was seen")
  local wait_until = time.now() + 10
  local left
  repeat
    left = {}
    for _, pid in ipairs(sims) do if not gone(pid) then left[#left + 1] = pid end end
    if #left > 0 then time.sleep(0.1) end
  until #left == 0 or time.now() > wait_until
  test.eq(left, {}, "simulator children still running")

  -- the rerun (simulator timing off: the same flash file) writes only what was not written yet
  local code2, all2, ev = run({ "esp32_flash", "--port", "sim://esp32?app=none&timing=off&flash_file=" .. flash,
    "firmware=" .. img_path, "--repl=no" }, env, nil, "esp_flash")
  test.eq(code2, 0, all2)
  test.ok(ev, "flash event in:\n" .. all2)
  test.ok(ev.written > 0 and ev.written < ev.bytes,
    string.format("resumed: %d of %d bytes written", ev.written, ev.bytes))
  test.eq(fs.read(flash):sub(OFFSET + 1, OFFSET + #img) == img, true, "the flash holds the image")
  recs = history.read({ path = hist })
  test.eq(recs[2].result, "ok")
end, { timeout = 300 })
