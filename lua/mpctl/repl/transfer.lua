-- mpctl.repl.transfer: file transfer between host and device (put, get) in the modes
-- described in mpctl/repl/init.lua, each verified by sha256 computed on the device, with
-- retries of a corrupted put. Methods of the object mpctl.repl.attach returns.
local time = require("mpctl.time")
local hash = require("mpctl.hash")
local b64 = require("mpctl.base64")
local errors = require("mpctl.repl.errors")
local pysrc = require("mpctl.repl.pysrc")

local raise, escape, is_error, exception_line = errors.raise, errors.escape, errors.is_error, errors.exception_line
local quote = pysrc.quote
local now = time.now

local T = {}

local function time_left(deadline) return math.max(deadline - now(), 0.001) end

-- Can the device's code read binary data from stdin? One tiny receiver run: it announces itself,
-- we send \x03 (data, with kbd_intr off), it acks. If the read raises instead (WebAssembly: OSError),
-- our \x03 lands in the raw REPL after the traceback, where it only clears the input line.
function T:_probe_binary()
  if self.binary == true or self.binary == false or self.binary == "out" then return end
  self:_ensure_helpers()
  local ok, err = pcall(function()
    self:_send("_mpctl_rx(None,1,1)", self.timeout)
    local c = self:_read_exact(1, self.timeout, "the receiver's ready byte")
    if c ~= "\x06" then self:_unread(c); return false end
    self:_write("\x03")
    c = self:_read_exact(1, self.timeout, "the receiver's ack")
    if c ~= "\x06" then self:_unread(c); return false end
    return true
  end)
  local _, e = self:_follow(self.timeout)
  if ok and err == true and e == "" then
    self.binary = true
  else
    self.binary = "out"
    self.binary_reason = (not ok and tostring(err)) or exception_line(e)
  end
end

-- A transfer may take three times its base64 wire time at the port's baud rate (USB CDC ports
-- ignore the rate and are faster) plus the usual per-operation timeout.
function T:_transfer_timeout(n)
  local ok, baud = pcall(function() return self.port:baud() end)
  local rate = ((ok and tonumber(baud)) or 115200) / 10
  return self.timeout + 3 * n * 4 / 3 / rate
end

local function stats_for(self, mode, bytes, tx0, rx0, t0, dir)
  local s = {mode = mode, bytes = bytes, seconds = now() - t0, wire_out = self.tx - tx0, wire_in = self.rx - rx0}
  s.wire_bytes = dir == "put" and s.wire_out or s.wire_in
  s.wire_per_byte = bytes > 0 and s.wire_bytes / bytes or 0
  s.rate = s.seconds > 0 and bytes / s.seconds or 0
  return s
end

function T:_put_base64(data, path, timeout, finish)
  local line = self.line
  local per_exec = math.max(self.batch - self.batch % line, line)
  local pos, len, first = 1, #data, true
  repeat
    local parts = {}
    if first then
      parts[1] = "from binascii import a2b_base64 as _d\n_f=open(" .. quote(path) .. ",'wb')\n_w=_f.write\n"
    end
    local stop = math.min(pos + per_exec - 1, len)
    for i = pos, stop, line do
      parts[#parts + 1] = "_w(_d(b'" .. b64.encode(data:sub(i, math.min(i + line - 1, stop))) .. "'))\n"
    end
    pos = stop + 1
    if pos > len then parts[#parts + 1] = "_f.close()\n" .. finish .. "\n" end
    local out = self:exec(table.concat(parts), {timeout = timeout})
    if pos > len then return out:match("^(%S+)") end
    first = false
  until false
end

function T:_put_binary(data, path, timeout, finish)
  local chunk, window = self.chunk, self.window
  local len = #data
  local nchunks = (len + chunk - 1) // chunk
  local silence = math.max(1, math.floor(self.rx_silence * 1000))
  self:_send("_mpctl_rx(" .. quote(path) .. "," .. len .. "," .. chunk .. "," .. silence .. ")\n" .. finish, timeout)
  local deadline = now() + timeout
  local function byte(what)
    local c = self:_read_exact(1, time_left(deadline), what)
    if c == "\x04" then
      self:_unread(c)
      self:_result(time_left(deadline))
      raise("protocol", "repl " .. self.name .. ": binary receiver ended early")
    elseif c ~= "\x06" then
      raise("protocol", string.format('repl %s: binary receiver sent "%s" instead of an ack', self.name,
        escape(c .. self:_drain(0.05, 0.3))))
    end
  end
  byte("the receiver's ready byte")
  local sent, acked = 0, 0
  while acked < nchunks do
    while sent < nchunks and sent - acked < window do
      local i = sent * chunk + 1
      self:_write(data:sub(i, i + chunk - 1))
      sent = sent + 1
    end
    byte(string.format("the ack of chunk %d/%d", acked + 1, nchunks))
    acked = acked + 1
  end
  return self:_result(time_left(deadline)):match("^(%S+)")
end

-- One transfer of payload into target, ending with `finish` (code that prints the hash line).
function T:_put_payload(mode, payload, target, timeout, finish)
  if mode == "binary" then
    local ok, res = pcall(self._put_binary, self, payload, target, timeout, finish)
    if not ok then
      -- chunks still in flight would reach the raw REPL as input: start over from Ctrl-C next time
      self.raw, self.helpers = false, false
      error(res, 0)
    end
    return {mode = "binary", hash = res}
  end
  local h = self:_put_base64(payload, target, timeout, finish)
  return {mode = self.paste and "base64-paste" or "base64-raw", hash = h}
end

function T:_has_deflate()
  if self.deflate == nil then
    local ok = pcall(require, "mpctl.zlib")
    if not ok then self.deflate = false return false end
    local out = self:exec("try:\n import deflate\n print(hasattr(deflate,'DeflateIO'))\nexcept ImportError:\n print(False)")
    self.deflate = out:find("True", 1, true) ~= nil
  end
  return self.deflate
end

-- The folder of a device path ("" for the root's files).
local function folder_of(path)
  return path:match("^(.*)/[^/]*$") or ""
end

--- Writes data to a device file. opts: force (skip the hash comparison), mode ("binary",
-- "base64"; default: best available), compress (default true: deflate when that saves >= 10 % and
-- the device has the deflate module), timeout (each transfer; default scales with size),
-- attempts (transfers in all when the device's hash does not match; default self.attempts, 3).
-- Returns stats {mode, bytes, wire_bytes, wire_per_byte, seconds, rate, skipped, status, attempts,
-- cleaned}.
function T:put(data, path, opts)
  opts = opts or {}
  local want = hash.hex(hash.sha256(data))
  self:_ensure_helpers()
  local t0, tx0, rx0 = now(), self.tx, self.rx
  -- one exec: stale temporaries of killed puts in the folder go (once per folder and session),
  -- and the hash line of the file tells whether it is already there
  local dir, cleaned = folder_of(path), 0
  local have
  if not self.cleaned[dir] then
    local out = self:exec("_mpctl_pre(" .. quote(dir) .. "," .. quote(path) .. ")")
    local k, h = out:match("^(%d+)\r?\n(%S+)")
    cleaned, have = tonumber(k) or 0, h
    self.cleaned[dir] = true
  elseif not opts.force then
    local ok, h = pcall(self.sha256, self, path)
    have = ok and h or nil
  end
  if not opts.force and have == want then
    local s = stats_for(self, "skip", #data, tx0, rx0, t0, "put")
    s.skipped, s.status, s.sha256, s.cleaned, s.attempts = true, "up to date", want, cleaned, 0
    return s
  end
  local attempts = math.max(1, opts.attempts or self.attempts or 3)
  t0, tx0, rx0 = now(), self.tx, self.rx
  local last
  for attempt = 1, attempts do
    local ok, res = pcall(self._put_once, self, data, path, opts, want)
    if ok then
      local s = stats_for(self, res.mode, #data, tx0, rx0, t0, "put")
      s.sha256, s.status, s.attempts, s.cleaned = want, "written", attempt, cleaned
      return s
    end
    last = res
    -- only a copy that arrived damaged is worth sending again; anything else is reported at once
    if not (is_error(res, "protocol") and res.device_sha256) then error(res, 0) end
    if self.on_retry then self.on_retry(path, attempt, res) end
  end
  last.attempts = attempts
  last.message = last.message:gsub("%(the device file was left as it was%)",
    string.format("after %d attempts (the device file was left as it was)", attempts))
  last.msg = last.message
  error(last, 0)
end

-- One transfer of data into the temporary file, moved into place by the device when its hash is
-- want; raises a protocol error with .device_sha256 when it is not. Returns {mode=}.
function T:_put_once(data, path, opts, want)
  local timeout = opts.timeout or self:_transfer_timeout(#data)
  local mode = opts.mode
  if mode == nil or mode == "binary" then
    if self.binary == nil then self:_probe_binary() end
    if self.binary == true then mode = "binary"
    elseif mode == "binary" then
      raise("unsupported", string.format("repl %s: device stdin does not take binary data (%s)", self.name,
        self.binary_reason or "WebAssembly port"))
    end
  end
  -- The data lands in a temporary file that replaces path only once its device hash matches
  -- (_mpctl_fin). Compressible data (source files) travels deflated into a second temporary file
  -- that the device inflates (deflate module, MicroPython >= 1.21); the hash is of the final file.
  local tmp = path .. ".mpctl~"
  local payload, target, zarg, zsuffix = data, tmp, "None", ""
  if opts.compress ~= false and #data >= 256 and self:_has_deflate() then
    local z = require("mpctl.zlib").compress(data, 9)
    if #z <= #data * 0.9 then
      payload, target, zsuffix = z, path .. ".mpctl~z", "+deflate"
      zarg = quote(target)
    end
  end
  local finish = "print(_mpctl_fin(" .. quote(tmp) .. "," .. quote(path) .. "," .. quote(want) .. ","
    .. zarg .. "))"
  local ok, res = pcall(self._put_payload, self, mode, payload, target, timeout, finish)
  if not ok then
    if is_error(res, "device") then
      -- the device is back at the prompt: leave no temporary files behind
      pcall(self.exec, self, "import os\nfor _p in (" .. quote(tmp) .. "," .. quote(target) .. "):\n"
        .. " try:\n  os.remove(_p)\n except OSError:\n  pass")
      if zsuffix ~= "" then
        -- inflating failed on the device (too little RAM for the 32 KB window?): plain from now on
        self.deflate = false
        local o = {}
        for k, v in pairs(opts) do o[k] = v end
        o.compress = false
        return self:_put_once(data, path, o, want)
      end
    end
    error(res, 0)
  end
  local got = res.hash
  if got == "-" then
    -- no hashlib on the device: read the temporary file back, and move it into place if it matches
    got = hash.hex(hash.sha256(self:get(tmp, {verify = false})))
    if got == want then
      self:exec("_mpctl_mv(" .. quote(tmp) .. "," .. quote(path) .. ")")
    else
      self:rm(tmp)
    end
  end
  if got ~= want then
    raise("protocol", string.format("repl %s: %s: sha256 mismatch after writing %d bytes: device %s, host %s "
      .. "(the device file was left as it was)", self.name, path, #data, tostring(got), want),
      {device_sha256 = got, sha256 = want})
  end
  return {mode = res.mode .. zsuffix}
end

function T:put_file(localpath, path, opts)
  local f = assert(io.open(localpath, "rb"))
  local data = f:read("a")
  f:close()
  return self:put(data, path, opts)
end

--- Reads a device file. opts: mode ("binary" | "base64"), verify (default true: device sha256
-- compared), timeout. Returns data, stats.
function T:get(path, opts)
  opts = opts or {}
  self:_ensure_helpers()
  local mode = opts.mode or ((self.binary == false or self.no_stdout_buffer) and "base64" or "binary")
  local t0, tx0, rx0 = now(), self.tx, self.rx
  local enc = mode == "binary" and 0 or 1
  self:_send("_mpctl_tx(" .. quote(path) .. ",1024," .. enc .. ")", self.timeout)
  local head = self:_read_until("\n", opts.timeout or self.timeout, "the file length")
  local n = tonumber(head:match("#(%d+)\r?$"))
  if not n and head:sub(1, 1) == "!" then
    -- the device could not open the file: the rest of the output and the prompt, then the reason
    self:_follow(self.timeout)
    self:_oserror("read", path, head)
  end
  if not n then
    -- no length line: the device raised (absent file ...) before writing
    self:_unread(head .. "\n")
    local out, err = self:_follow(self.timeout)
    if err ~= "" and enc == 0 and not opts.mode and err:find("AttributeError", 1, true) then
      -- no sys.stdout.buffer on this port: base64 from now on
      self.no_stdout_buffer = true
      return self:get(path, opts)
    end
    if err ~= "" then self:_device_error(out, err) end
    raise("protocol", string.format('repl %s: bad reply to a file read: "%s"', self.name, escape(out)))
  end
  local timeout = opts.timeout or self:_transfer_timeout(n)
  local deadline = now() + timeout
  local data
  if enc == 0 then
    data = self:_read_exact(n, timeout, string.format("%d bytes of %s", n, path))
    local out, err = self:_follow(time_left(deadline))
    if err ~= "" then self:_device_error(data .. out, err) end
  else
    data = b64.decode(self:_result(timeout))
  end
  local s = stats_for(self, mode, #data, tx0, rx0, t0, "get")
  if #data ~= n then
    raise("protocol", string.format("repl %s: %s: expected %d bytes, got %d", self.name, path, n, #data))
  end
  if opts.verify ~= false then
    -- only a device without hashlib goes unverified; any other failure of the check is an error
    local ok, dev = pcall(self.sha256, self, path)
    if not ok and not is_error(dev, "unsupported") then error(dev, 0) end
    local host = hash.hex(hash.sha256(data))
    if ok and dev ~= host then
      raise("protocol", string.format("repl %s: %s: sha256 mismatch after reading %d bytes: device %s, host %s",
        self.name, path, #data, tostring(dev), host))
    end
    s.sha256 = host
  end
  return data, s
end

function T:get_file(path, localpath, opts)
  local data, s = self:get(path, opts)
  require("mpctl.fs").write(localpath, data)   -- temp file + rename: never a half-written file
  return s
end

return T
