--[[ mpctl.target: one interface for every board family's bootloader.

Backup, rollback, the history record and the flash recipes are written once against this
interface; a family (esp now, dfu and rp2 next) gets them by providing a driver module
`mpctl.<family>.target` that implements it.

    local target = require("mpctl.target")
    local driver = target.driver(family)        -- "esp" | "dfu" | "rp2"; checks the driver is complete

    driver.family                               -- "esp" | "dfu" | "rp2"
    driver.connect(ctx) -> t                    -- ctx = { board = <board table>, port = <URL or open port>,
                                                --         opts = { reset=, baud=, stub=, method=, ... }, log = fn }
                                                -- enters the bootloader however the family does it
    t.family, t.board
    t:identify() -> info                        -- { chip=, flash_size= (bytes), flash_base= (0 | 0x08000000 | 0x10000000),
                                                --   id= (MAC / unique id / USB serial), mac=?, usb=? }
    t:check_image(parts)                        -- raises kind "refused" before anything is erased
    t:read(addr, size, opts) -> data            -- backup; opts.progress optional
    t:write(parts, opts) -> stats               -- parts = {{offset=, data=, name=}}; opts = {verify=true, erased=false}
                                                -- skips identical sectors, verifies unless verify=false;
                                                -- stats = {raw=, sent=, wire=, written=, seconds=, verified=true|false,
                                                --          verify_skipped=bool, verify_why=, verify_what=, outside= ("unchanged" |
                                                --          "skipped" | "not written": the rest of the flash), outside_why=, ...}
                                                -- a failure raises with e.offset (first address not known good)
                                                --   and e.hint = "run the same command again to resume"
    t:erase(addr, size); t:erase_all()
    t:reset_to_app(opts) -> port                -- where the MicroPython REPL appears (same serial port for esp,
                                                -- the CDC port for dfu/rp2), as a URL or an open port
    t:close()                                   -- and __close

Optional driver extras (used when present): `driver.demo_image(board) -> data` (a generated
image for firmware=demo), `t:summary(stats) -> table` (family fields for the flash event),
`t.event` (the flash event's name, default "flash").

Shared helpers for drivers and recipes:

    target.connect(board, port, opts) -> t      -- driver(board.family).connect{...}, checked, logged
    target.check(t)                             -- raises when a target lacks an operation
    target.error(kind, where, detail, extra)    -- a structured error (mpctl.errors when present)
    target.resumable(e, offset) -> e            -- adds e.offset and the resume hint to an error
    target.interrupted(e, where) -> e | nil     -- the interrupt behind an error, when a signal came
    target.extent(parts) -> first, last         -- the address range a list of parts covers
    target.size_name(bytes) -> "4MB"
    target.parts(path, board) -> parts          -- what a firmware file puts where: the driver's
                                                --   driver.parts (a .dfu's elements) when it has one, else firmware.parts
    target.board_on_port(url) -> id | nil       -- asked of the MicroPython running there
    target.bootloader_via_repl(tty, log)        -- machine.bootloader() over the raw REPL (no answer awaited)
    target.wait_usb(present, ids, seconds) -> list   -- poll present() until devices come, bounded
    target.simulated(port) -> bool              -- sim://NAME of a USB simulator: re-runs the command under it
    target.repl(app, opts) -> repl              -- attach to what t:reset_to_app() returned
    target.image(board, firmware, version) -> image  -- firmware=FILE|demo or version=: {file=, path=, sha256=,
                                                --   version=, source=, cache=, parts=}
    target.report(t, image, stats, t0)          -- the summary line and the flash event
    target.RESUME_HINT
]]
local M = {}

M.RESUME_HINT = "run the same command again to resume"

-- Every operation a connected target must provide (the contract above).
M.OPERATIONS = { "identify", "check_image", "read", "write", "erase", "erase_all", "reset_to_app", "close" }

local errors = require("mpctl.errors")

M.new_error = errors.new

function M.error(kind, where, detail, extra)
  errors.raise(kind, where, detail, extra)
end

-- The kind of an error value ("internal" for a plain string: a bug), and its readable text.
function M.kind(e) return errors.kind(e) end

function M.text(e)
  if type(e) == "table" and e.msg then return tostring(e.msg) end
  return tostring(e)
end

-- An error raised while writing, made into one a person can act on: the first address not known
-- good and the hint that a rerun resumes (the write skips what is already on flash). A plain
-- string from a driver becomes kind "io" (the write failed), keeping its text. An error that had
-- no hint yet (an interrupt, say) gets both into its message too.
function M.resumable(e, offset, where)
  if not errors.is_error(e) then
    -- the driver's own text already says where it stopped and what to do
    e = errors.new({ kind = "io", where = where, detail = tostring(e), msg = tostring(e), offset = offset,
      hint = M.RESUME_HINT })
  end
  if e.offset == nil then e.offset = offset end
  if e.hint == nil then
    e.hint = M.RESUME_HINT
    e.msg = string.format("%s while writing at 0x%X; %s", tostring(e.msg or e.detail or e.kind), e.offset or 0, e.hint)
  end
  return e
end

local SIGNALS = { [1] = "SIGHUP", [2] = "SIGINT (Ctrl-C)", [15] = "SIGTERM" }

-- An error raised while a signal is pending or was delivered is the interrupt, whatever the code
-- below made of it: a driver that caught the `interrupted` error of a port write and reported
-- "device stopped answering" must not turn a Ctrl-C into a device failure (exit 1 instead of
-- 130). The driver's text is kept as `cause`.
function M.interrupted(e, where)
  if errors.is(e, "interrupted") then return e end
  local native = require("mpctl.interrupt")
  local sig = native.delivered() or native.pending()
  if not sig then return nil end
  return errors.new({ kind = "interrupted", where = where, detail = "interrupted by " .. (SIGNALS[sig] or
    ("signal " .. sig)), cause = M.text(e) })
end

local DRIVERS = { esp = "mpctl.esp.target", dfu = "mpctl.dfu.target", rp2 = "mpctl.rp2.target" }

-- The driver of a family, checked: a module that lacks connect or names another family is a bug
-- in that driver, said as such rather than found later as "attempt to call a nil value".
function M.driver(family)
  local name = DRIVERS[family]
  if not name then
    M.error("unsupported", tostring(family), "no bootloader driver for the board family '" .. tostring(family) ..
      "' (known: esp, dfu, rp2)")
  end
  local ok, d = pcall(require, name)
  if not ok then
    local missing = tostring(d):find("module '" .. name .. "' not found", 1, true)
    if missing then
      M.error("unsupported", family, "flashing " .. family .. " boards is not implemented yet (" .. name ..
        " is missing)")
    end
    error(d, 0)
  end
  if type(d) ~= "table" or d.family ~= family or type(d.connect) ~= "function" then
    M.error("internal", name, "is not a target driver for '" .. family .. "' (needs family and connect)")
  end
  return d
end

-- Raises when a connected target lacks one of the operations (a driver bug, caught at connect).
function M.check(t)
  local missing = {}
  for _, op in ipairs(M.OPERATIONS) do
    if type(t[op]) ~= "function" then missing[#missing + 1] = op end
  end
  if #missing > 0 or not t.family or not t.board then
    if not t.family then missing[#missing + 1] = "family" end
    if not t.board then missing[#missing + 1] = "board" end
    M.error("internal", tostring(t.family), "target driver lacks: " .. table.concat(missing, ", "))
  end
  return t
end

function M.size_name(n)
  if not n then return "?" end
  if n >= 1048576 and n % 1048576 == 0 then return (n // 1048576) .. "MB" end
  if n >= 1024 and n % 1024 == 0 then return (n // 1024) .. "KB" end
  return tostring(n) .. " bytes"
end

-- Lowest start and highest end of a list of parts.
function M.extent(parts)
  local first, last
  for _, p in ipairs(parts) do
    local e = p.offset + #p.data
    if not first or p.offset < first then first = p.offset end
    if not last or e > last then last = e end
  end
  return first, last
end

-- Connect through the board's family driver; the target is checked and introduced in one line.
function M.connect(board, port, opts)
  local d = M.driver(board.family)
  local t = M.check(d.connect({ board = board, port = port, opts = opts or {},
    log = function(level, fmt, ...) require("mpctl.ui").log(level, fmt, ...) end }))
  if not getmetatable(t) or not getmetatable(t).__close then
    -- A `local t <close>` needs a __close metamethod; a driver may forget it, close() is the contract.
    M.error("internal", board.family, "target driver's targets need a __close metamethod")
  end
  return t
end

local function abs(path)
  local fs = require("mpctl.fs")
  local ok, real = pcall(fs.realpath, path)
  return ok and real or path
end

-- The firmware a flash recipe writes: firmware=FILE (a file, kept by its absolute path so that a
-- rollback from another folder finds it), firmware=demo (a generated image, when the family's
-- driver can make one), else version= (default latest) through the firmware cache. `parts` are
-- what goes where: one image at the board's offset, or an ESP-IDF bundle's files.
function M.image(board, firmware, version, opts)
  local fw = require("mpctl.firmware")
  local fs, hash = require("mpctl.fs"), require("mpctl.hash")
  local mpctl = require("mpctl")
  local img
  if firmware == "demo" then
    local d = M.driver(board.family)
    if not d.demo_image then mpctl.usage_error("firmware=demo: no demo image for " .. board.family .. " boards") end
    local data = d.demo_image(board)
    return { file = "demo image (generated)", sha256 = hash.hex(hash.sha256(data)), source = "demo",
      parts = { { offset = board.offset or 0, data = data, name = "demo image" } } }
  elseif firmware then
    if firmware ~= "-" and not fs.stat(firmware) then mpctl.usage_error("firmware file " .. firmware .. " not found") end
    -- firmware.parts reads regular files only (or "-"), bounded by the flash: a FIFO or /dev/zero
    -- is refused before anything reads it, so it is read first and hashed from what was read.
    local parts = M.parts(firmware, board, opts)
    local path = firmware == "-" and "-" or abs(firmware)
    -- a file the family reads itself (.dfu, .uf2) or a bundle is named by the file's hash, a raw
    -- image by the bytes written
    local whole = firmware ~= "-" and (fw.is_bundle(firmware) or M.driver(board.family).parts ~= nil)
    local sha = whole and hash.file(path, "sha256") or hash.hex(hash.sha256(parts[1].data))
    img = { file = firmware == "-" and "standard input" or fs.basename(path), path = firmware ~= "-" and path or nil,
      sha256 = sha, source = "file", parts = parts }
    -- the same bytes may be in the firmware cache (fetched earlier): then the record names it too
    local cached, meta = fw.cached_by_sha256(img.sha256)
    if cached then img.cache, img.version = cached, meta and meta.version end
    -- a release file's name says its version (BOARD-YYYYMMDD-vX.Y.Z.ext)
    local named = not img.version and fw.parse_name(img.file)
    if named then img.version = named.version end
  else
    local got = fw.get(board, version or "latest")
    img = { file = got.file, path = abs(got.path), sha256 = got.sha256, version = got.version,
      source = got.url or got.source, cache = got.path }
  end
  img.parts = img.parts or M.parts(img.path, board, opts)
  return img
end

-- What a firmware file puts where. A family whose files carry their own addresses (.dfu, .hex)
-- reads them through its driver (opts.address: where a raw .bin goes); raw images go to the
-- board's offset (firmware.parts).
function M.parts(path, board, opts)
  local d = M.driver(board.family)
  if d.parts then return d.parts(path, board, opts) end
  return require("mpctl.firmware").parts(path, board)
end

-- The tty of the board's MicroPython USB port (`ids`: its {vid=, pid=} list), or nil while it
-- is not there. After a reset the board comes back on the same USB port path as its bootloader
-- had (`path`): only a device there is ours, since another board running MicroPython elsewhere
-- on the bus would otherwise be taken for it and its REPL "prove" a flash it never had. With no
-- path known, a lone device of those ids is taken. Returns tty, device info.
-- sysfs names the tty a moment before its /dev node exists (udev makes it; umockdev too): the
-- port is only handed out once it can be opened (a station run opened it in that moment and
-- got "no such port").
local function node_ready(tty) return require("mpctl.fs").stat(tty) ~= nil end

function M.app_tty(ids, path)
  local usb = require("mpctl.usb")
  if path then
    -- Asked of sysfs, not of libusb's device list: that list follows hotplug events, and a child
    -- of the many-boards runner missed its board's re-enumeration while another board came back
    -- at the same moment (usb.ids_at).
    local vid, pid = usb.ids_at(path)
    local tty = vid and usb.tty_of(path)
    if tty and node_ready(tty) then
      for _, u in ipairs(ids) do
        if u.vid == vid and u.pid == pid then return tty, { path = path, vid = vid, pid = pid } end
      end
    end
    return nil
  end
  local found = {}
  for _, u in ipairs(ids) do
    for _, info in ipairs(usb.list { vid = u.vid, pid = u.pid }) do
      local tty = usb.tty_of(info.path)
      if tty and node_ready(tty) then found[#found + 1] = { tty, info } end
    end
  end
  if #found == 1 then return found[1][1], found[1][2] end
end

-- Polls present() (-> list of devices) until it finds some or `seconds` pass; between polls it
-- waits up to 1 s on each USB id of `ids` ({vid=, pid=}; usb.wait wakes on hotplug), at USB path
-- `at` when given. Returns the last list (empty when none came). For the drivers' "wait for the
-- bootloader device". The wait opens nothing: on a bus shared with other boards' runs, opening
-- a device one of them is flashing is not ours to do (and on the simulated bus it crashes the
-- opener inside the umockdev preload).
function M.wait_usb(present, ids, seconds, at)
  local usb, time = require("mpctl.usb"), require("mpctl.time")
  local deadline = time.now() + seconds
  repeat
    local found = present()
    if #found > 0 then return found end
    for _, u in ipairs(ids) do
      usb.wait({ vid = u.vid, pid = u.pid, path = at, open = false }, math.min(1, math.max(0.05, deadline - time.now())))
    end
  until time.now() >= deadline
  return present()
end

-- machine.bootloader() over the raw REPL of the MicroPython on `tty`: the board resets into its
-- ROM bootloader (DFU on an STM32, BOOTSEL on an RP2), so no answer comes (mpremote's `bootloader`).
function M.bootloader_via_repl(tty, log)
  log("asking MicroPython on " .. tty .. " to enter its bootloader (machine.bootloader())")
  local serial, time = require("mpctl.serial"), require("mpctl.time")
  local port <close> = serial.open(tty, { baud = 115200, timeout = 2 })
  port:write("\r\3\3", 1)
  time.sleep(0.1)
  port:write("\1", 1) -- raw REPL
  pcall(port.read_until, port, "raw REPL; CTRL-B to exit\r\n>", 3)
  port:write("import machine\nmachine.bootloader()\4", 2)
  time.sleep(0.2)
end

-- --port sim://NAME[?k=v&...] for a USB simulator (sim/NAME.lua with `usb = true`: pyboard, pico,
-- pico2): the whole command runs again under `mpctl sim NAME k=v quiet=yes -- <this command>` (the
-- umockdev preload must be there from exec on); inside it (UMOCKDEV_DIR set, preloaded) this returns
-- true and the simulated board is simply the USB device present. False for other sim:// names.
function M.simulated(port)
  local name, query = port:match("^sim://([%w_]+)%??(.*)$")
  local ok, sim = pcall(require, "mpctl.sim." .. (name or "?"))
  if not (ok and type(sim) == "table" and sim.usb) then return false end
  local okp, usbsim = pcall(require, "mpctl.usbsim")
  if okp and usbsim.preloaded() and os.getenv("UMOCKDEV_DIR") then return true end
  if not okp then
    errors.raise("unsupported", port, "this mpctl was built without umockdev", { hint = "install umockdev (scripts/setup) and rebuild" })
  end
  local argv = { "sim", name }
  for kv in query:gmatch("[^&]+") do argv[#argv + 1] = kv end
  argv[#argv + 1] = "quiet=yes"
  argv[#argv + 1] = "--"
  for _, w in ipairs(usbsim.cmdline()) do argv[#argv + 1] = w end
  local exe = debug.getregistry()["mpctl.exe"]
  -- the first word of cmdline is how we were started; run the same executable
  for i, w in ipairs(argv) do if w == "--" then argv[i + 1] = exe; break end end
  usbsim.reexec(argv)
end

-- Which board is on a port, asked of its MicroPython (sys.implementation); nil when none answers.
function M.board_on_port(url)
  local ok, id = pcall(function()
    local p <close> = require("mpctl.serial").open(url, { baud = 115200 })
    local r = require("mpctl.repl").attach(p, { timeout = 5 })
    local got = require("mpctl.firmware").identify(r)
    r:close()
    return got
  end)
  return ok and id.board or nil
end

-- The MicroPython REPL where t:reset_to_app() said it appears (an open port, or a URL to open).
function M.repl(app, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if type(app) == "string" then
    app = require("mpctl.serial").open(app, { baud = 115200 })
    o.owns_port = true
  end
  return require("mpctl.repl").attach(app, o)
end

-- The record of the image kept in the history (no data).
function M.image_record(img)
  return { file = img.file, path = img.path, sha256 = img.sha256, version = img.version, source = img.source,
    cache = img.cache }
end

-- The summary line after a write and the flash event (--json): what was written, how much went
-- over the wire, how long it took.
function M.report(t, img, st, t0)
  local mpctl = require("mpctl")
  local time = require("mpctl.time")
  local secs = time.now() - (t0 or mpctl.t_start or time.now())
  local first = M.extent(img.parts)
  if st.written == 0 then
    mpctl.log("flash already held all %d bytes at 0x%X: nothing written (%d bytes on the wire), %.1f s in all",
      st.raw, first, st.wire, secs)
  else
    mpctl.log("wrote %d bytes at 0x%X (%d sent, %d on the wire, %s), %.1f s in all, %.1f s writing: %.0f kbit/s effective",
      st.raw, first, st.sent, st.wire, st.written == st.raw and "every sector written" or
        string.format("%d bytes written, the rest already on flash", st.written),
      secs, st.seconds, st.raw * 8 / math.max(st.seconds, 1e-6) / 1000)
  end
  local info = t:identify()
  local ev = { event = t.event or "flash", board = t.board.id, chip = info.chip, device = info.id, bytes = st.raw,
    sent = st.sent, wire = st.wire, written = st.written, seconds = secs, write_seconds = st.seconds,
    verified = st.verified, verify_skipped = st.verify_skipped or nil }
  if t.summary then
    for k, v in pairs(t:summary(st)) do ev[k] = v end
  end
  require("mpctl.ui").event(ev)
  return ev
end

return M
