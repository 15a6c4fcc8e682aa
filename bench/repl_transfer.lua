--- REPL file transfer throughput per mode against the rawrepl fixture throttled to a real line rate.
-- @option baud: line rate to model (default 115200)
-- @option sizes: comma-separated file sizes in KB (default 64,256)
-- @option window: raw-paste window of the modelled device (default 128)
-- @option chunk: binary chunk size in bytes (default 256)
-- @option chunks: binary chunks in flight (default 2)
-- @option wasm: false skips the unthrottled WebAssembly MicroPython rows
--
-- Run: mpctl bench/repl_transfer.lua [baud=115200] [sizes=64,256]
-- Prints, per mode and size, throughput as % of the wire rate (baud/10 bytes/s, 8N1) and wire
-- bytes per file byte. Random data (incompressible) per mode, then source text, which put sends
-- deflated (the rate then counts file bytes, so it can pass 100 % of the wire).
-- The mpremote row is quoted from reference/micropython-targets.md and anchors.md §2.4, not measured:
-- mpremote is not installed here.

local repl = mpctl.repl
local time = mpctl.time

local baud = tonumber(arg.baud) or 115200
local wire = baud / 10
local sizes = {}
for s in tostring(arg.sizes or "64,256"):gmatch("%d+") do sizes[#sizes + 1] = tonumber(s) * 1024 end
local window = tonumber(arg.window) or 128

local function random_bytes(n) return require("mpctl.test").random_bytes(n, 12345) end

local function connect(raw_paste)
  local url = string.format("sim://rawrepl?throttle=true&baud=%d&window=%d&raw_paste=%s", baud, window,
    raw_paste and "true" or "false")
  local port = mpctl.serial.open(url, {baud = baud})
  return repl.attach(port, {timeout = 10, owns_port = true, chunk = tonumber(arg.chunk), window = tonumber(arg.chunks)})
end

local rows = {}
local function row(dir, mode, size, s)
  rows[#rows + 1] = string.format("%-4s %-20s %7d  %7.2f s  %8.0f B/s  %5.1f %%   %.3f",
    dir, mode, size, s.seconds, s.rate, 100 * s.rate / wire, s.wire_per_byte)
end

local cases = {
  {"put", "base64-raw", false, "base64"},
  {"put", "base64-paste", true, "base64"},
  {"put", "binary", true, "binary"},
  {"get", "base64", true, "base64"},
  {"get", "binary", true, "binary"},
}

for _, size in ipairs(sizes) do
  local data = random_bytes(size)
  for _, c in ipairs(cases) do
    local dir, paste, mode = c[1], c[3], c[4]
    local r = connect(paste)
    local path = "/bench.bin"
    if dir == "put" then
      local s = r:put(data, path, {mode = mode, force = true, timeout = 10 + 4 * size / wire})
      row(dir, s.mode, size, s)   -- the mode the transfer really used, not the one asked for
    else
      r:put(data, path, {mode = "binary", force = true, timeout = 10 + 4 * size / wire})
      local back, s = r:get(path, {mode = mode, timeout = 10 + 4 * size / wire})
      mpctl.check(back == data, string.format("get %s %d bytes round trip", s.mode, size))
      row(dir, s.mode, size, s)
    end
    r:close()
  end
end

-- Source text (compressible): mpctl's own Lua library, concatenated to the size; put deflates it
-- when the device has the deflate module (about 3-4x on real source, unlike repetitive filler).
local function source_text(n)
  local dir = mpctl.datadir .. "/lua/mpctl"
  local t, len = {}, 0
  while len < n do
    for _, name in ipairs(mpctl.fs.list(dir)) do
      if name:match("%.lua$") then
        local f = io.open(dir .. "/" .. name, "rb")
        if f then
          t[#t + 1] = f:read("a")
          f:close()
          len = len + #t[#t]
          if len >= n then break end
        end
      end
    end
  end
  return table.concat(t):sub(1, n)
end
for _, size in ipairs(sizes) do
  local text = source_text(size)
  for _, c in ipairs({{"base64", true}, {"binary", true}}) do
    local r = connect(c[2])
    local s = r:put(text, "/src.py", {mode = c[1], force = true, timeout = 10 + 4 * size / wire})
    rows[#rows + 1] = string.format("put  %-20s %7d  %7.2f s  %8.0f B/s  %5.1f %%   %.3f   (source text)",
      s.mode, size, s.seconds, s.rate, 100 * s.rate / wire, s.wire_per_byte)
    r:close()
  end
end

-- The real WebAssembly MicroPython on a pty (no wire to throttle: the figures show the cost of
-- the protocol itself, comparable with mpremote's quoted times on the same target).
local wasm_rows = {}
if arg.wasm ~= "false" then
  for _, size in ipairs(sizes) do
    local data = random_bytes(size)
    local r = repl.attach(mpctl.serial.open("sim://micropython"), {timeout = 30, owns_port = true})
    local s = r:put(data, "/tmp/bench.bin", {force = true, timeout = 120})
    local back, g = r:get("/tmp/bench.bin", {timeout = 120})
    mpctl.check(back == data, string.format("WebAssembly round trip %d bytes", size))
    wasm_rows[#wasm_rows + 1] = string.format("put  %-13s %7d  %7.3f s   %.3f wire B/B", s.mode, size, s.seconds, s.wire_per_byte)
    wasm_rows[#wasm_rows + 1] = string.format("get  %-13s %7d  %7.3f s   %.3f wire B/B", g.mode, size, g.seconds, g.wire_per_byte)
    r:close()
  end
end

print(string.format("REPL transfer through sim://rawrepl throttled to %d baud (wire %.0f B/s), raw-paste window %d",
  baud, wire, window))
print("dir  mode                    bytes     time       rate    % wire   wire B per file B")
for _, l in ipairs(rows) do print(l) end
print("quoted, not measured (mpremote, anchors.md §2.4, STM32WB55 at 115200): repr 256 B chunks 1.96 KB/s = 17 %,"
  .. " 2.9 wire B/B on random data; base64 (PR#18785) 4.77 KB/s = 41 %")
if #wasm_rows > 0 then
  print("")
  print("real WebAssembly MicroPython on a pty (sim://micropython, unthrottled; raw-paste unusable there):")
  for _, l in ipairs(wasm_rows) do print(l) end
  print("quoted, not measured (micropython-targets.md): mpremote with raw-paste off on this target:"
    .. " 64 KB 8.4 s, 256 KB 33 s; a minimal base64 4 KB-chunk client 64 KB in 0.09-0.22 s")
end
