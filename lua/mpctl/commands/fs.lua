--- Files on the board: ls, cat, cp, rm, rmdir, mkdir, touch, tree, df, sha256 (':' marks a device path, as in mpremote).
-- @raw-args
-- @option r: yes|no = no; cp/rm: recursive (cp -r lib :lib)
-- @option f: yes|no = no; cp: copy even when the device file's sha256 already matches
-- @option force: yes|no = no; same as -f
-- @option mode: binary|base64; cp: transfer mode (default: the best the device offers)
-- @option compress: yes|no = yes; cp: deflate files that shrink by 10 % or more (no: never)
--
-- mpctl fs --port P ls [:dir]          mpctl fs --port P cat :boot.py
-- mpctl fs --port P cp main.py :main.py    mpctl fs --port P cp :data.csv .    mpctl fs --port P cp -r lib :lib
-- mpctl fs --port P rm [-r] :old.py    mpctl fs --port P mkdir :lib    mpctl fs --port P sha256 :main.py
-- mpctl fs --port P rmdir :empty        mpctl fs --port P touch :log.txt   mpctl fs --port P tree [:lib]
-- mpctl fs --port P df [:]              (size, used and free bytes of the filesystem holding the path)
-- Every copy is verified by sha256 computed on the device; a file already identical is skipped.

local lfs, ui = mpctl.fs, mpctl.ui
local words = {}
for _, w in ipairs(arg) do words[#words + 1] = w end
local sub = table.remove(words, 1)
local usage = "fs needs a command: ls, cat, cp, rm, rmdir, mkdir, touch, tree, df, sha256 (mpctl help fs)"
if not sub then mpctl.usage_error(usage) end

local function is_dev(p) return p:sub(1, 1) == ":" end
local function dev(p)
  p = is_dev(p) and p:sub(2) or p
  if p == "" then return "/" end
  return p
end
local function basename(p) return (p:gsub("/+$", ""):match("[^/]+$")) or p end
local function join(a, b) return (a:gsub("/+$", "")) .. "/" .. b end

local port = mpctl.open_port(arg)
local r = mpctl.repl.attach(port)
-- a put that arrived damaged is sent again: say so as it happens
r.on_retry = function(path, attempt, e)
  mpctl.ui.log(string.format("cp :%s: attempt %d arrived damaged (%s); sending it again", path, attempt,
    e.device_sha256 and "sha256 mismatch" or tostring(e)))
end
local force = arg.f or arg.force
local copy_opts = {force = force, mode = arg.mode,
  compress = not (arg.compress == "no" or arg.compress == "false" or arg.compress == false)}

local function kb(s) return string.format("%.1f KB/s", s.rate / 1024) end

local function report(src, dst, s)
  local ev = {event = "copy", src = src, dst = dst, bytes = s.bytes, seconds = s.seconds, mode = s.mode,
    wire_bytes = s.wire_bytes, status = s.status, attempts = s.attempts, sha256 = s.sha256}
  if s.skipped then
    ui.result(ev, string.format("up to date: %s\n", dst))
  else
    ui.result(ev, string.format("%s -> %s  %d bytes  %.2f s  %s  %s  %.2f wire B/B%s\n", src, dst, s.bytes,
      s.seconds, kb(s), s.mode, s.wire_per_byte,
      (s.attempts or 1) > 1 and string.format("  (%d attempts)", s.attempts) or ""))
  end
end

local function device_is_dir(p)
  local st = r:stat(p)
  return st and st.type == "dir"
end

local function put_tree(src, dst)
  local st = lfs.stat(src)
  if not st then mpctl.fail("no local file " .. src) end
  if st.type == "dir" then
    if not arg.r then mpctl.fail(src .. " is a directory (use cp -r)") end
    r:mkdir(dst, {exist_ok = true})
    for _, name in ipairs(lfs.list(src)) do put_tree(join(src, name), join(dst, name)) end
  else
    report(src, ":" .. dst, r:put(lfs.read(src), dst, copy_opts))
  end
end

local function get_tree(src, dst)
  local st = r:stat(src)
  if not st then mpctl.fail("no device file :" .. src) end
  if st.type == "dir" then
    if not arg.r then mpctl.fail(":" .. src .. " is a directory (use cp -r)") end
    lfs.mkdir(dst, {parents = true})
    for _, e in ipairs(r:ls(src)) do get_tree(join(src, e.name), join(dst, e.name)) end
  else
    local data, s = r:get(src)
    lfs.write(dst, data)
    report(":" .. src, dst, s)
  end
end

-- A folder and everything under it, drawn as `tree` does (mpremote's tree prints the same shape).
local function tree(root)
  local st = r:stat(root)
  if not st then mpctl.fail("tree: :" .. root .. ": no such file or folder") end
  ui.result({event = "file", path = root, name = root, type = st.type, size = st.type == "file" and st.size or nil},
    ":" .. root .. (st.type == "dir" and root ~= "/" and "/" or "") .. "\n")
  if st.type ~= "dir" then return end
  local function walk(dir, indent)
    -- a folder the port will not list (/proc/self/fd on the WebAssembly port) is shown as such,
    -- and the rest of the tree is still drawn
    local ok, list = pcall(r.ls, r, dir)
    if not ok then
      if not (mpctl.repl.is_error(list) and list.reason) then error(list, 0) end
      ui.result({event = "file_error", path = dir, reason = list.reason},
        string.format("%s└── (cannot list: %s)\n", indent, list.reason))
      return
    end
    for i, e in ipairs(list) do
      local last = i == #list
      local path = join(dir, e.name)
      ui.result({event = "file", path = path, name = e.name, type = e.type, size = e.size},
        string.format("%s%s %s%s\n", indent, last and "└──" or "├──", e.name,
          e.type == "dir" and "/" or (e.size and string.format("  (%d bytes)", e.size) or "")))
      if e.type == "dir" then walk(path, indent .. (last and "    " or "│   ")) end
    end
  end
  walk(root, "")
end

local function df(p)
  local d = r:df(p)
  if not d then mpctl.fail("df: the device's MicroPython has no os.statvfs, so its free space cannot be read") end
  local pct = d.size > 0 and math.floor(d.used * 100 / d.size + 0.5) or 0
  ui.result({event = "df", path = p, size = d.size, used = d.used, free = d.free},
    string.format("%-12s %12s %12s %12s %5s\n%-12s %12d %12d %12d %4d%%\n",
      "mounted on", "size", "used", "free", "use", ":" .. p, d.size, d.used, d.free, pct))
end

local function run()
if sub == "ls" then
  local p = dev(words[1] or ":")
  for _, e in ipairs(r:ls(p)) do
    local line = e.type == "dir" and string.format("%10s  %s/\n", "", e.name)
      or string.format("%10s  %s\n", e.size and tostring(e.size) or "?", e.name)
    ui.result({ event = "file", path = p, name = e.name, type = e.type, size = e.size }, line)
  end
elseif sub == "cat" then
  if not words[1] then mpctl.usage_error("fs cat needs a device file") end
  for _, p in ipairs(words) do ui.out((r:get(dev(p)))) end
elseif sub == "sha256" then
  if not words[1] then mpctl.usage_error("fs sha256 needs a device file") end
  for _, p in ipairs(words) do
    local h = r:sha256(dev(p))
    if not h then mpctl.fail("no device file :" .. dev(p)) end
    ui.result({ event = "sha256", path = dev(p), sha256 = h }, h .. "  :" .. dev(p) .. "\n")
  end
elseif sub == "rm" then
  if not words[1] then mpctl.usage_error("fs rm needs a device path") end
  for _, p in ipairs(words) do r:rm(dev(p), {recursive = arg.r}) end
elseif sub == "mkdir" then
  if not words[1] then mpctl.usage_error("fs mkdir needs a device path") end
  for _, p in ipairs(words) do r:mkdir(dev(p)) end
elseif sub == "rmdir" then
  if not words[1] then mpctl.usage_error("fs rmdir needs a device folder") end
  for _, p in ipairs(words) do r:rmdir(dev(p)) end
elseif sub == "touch" then
  if not words[1] then mpctl.usage_error("fs touch needs a device file") end
  for _, p in ipairs(words) do r:touch(dev(p)) end
elseif sub == "tree" then
  for _, p in ipairs(#words > 0 and words or {":"}) do tree(dev(p)) end
elseif sub == "df" then
  for _, p in ipairs(#words > 0 and words or {":"}) do df(dev(p)) end
elseif sub == "cp" then
  if #words < 2 then mpctl.usage_error("fs cp needs SRC... DST, one side with ':' (cp main.py :main.py)") end
  local dst = table.remove(words)
  -- cp -r ignores a trailing '/' on the destination, as mpremote and Unix cp do
  if arg.r then dst = dst:gsub("(.)/+$", "%1") end
  for _, src in ipairs(words) do
    if is_dev(src) == is_dev(dst) then
      mpctl.usage_error("fs cp: exactly one of " .. src .. " and " .. dst .. " must be a device path (':name')")
    end
  end
  -- as mpremote: an existing folder receives the sources under their own names; a trailing '/'
  -- or several sources need one, instead of each source overwriting the same file
  local into
  if is_dev(dst) then
    into = dst == ":" or device_is_dir((dev(dst):gsub("(.)/+$", "%1")))
  else
    local st = lfs.stat(dst)
    into = st ~= nil and st.type == "dir"
  end
  if not into and (dst:sub(-1) == "/" or #words > 1) then
    mpctl.fail("fs cp: destination " .. dst .. " is not an existing folder"
      .. (is_dev(dst) and " on the device" or ""))
  end
  for _, src in ipairs(words) do
    local d = is_dev(dst) and dev(dst) or dst
    if into then d = join(d, basename(dev(src))) end
    if is_dev(dst) then put_tree(src, d) else get_tree(dev(src), d) end
  end
else
  mpctl.usage_error("fs: unknown command '" .. sub .. "'; " .. usage)
end
end

local ok, e = pcall(run)
pcall(r.close, r)
if not ok then
  -- a device OSError in the words of the command: "cat: :nope.py: no such file"
  if mpctl.repl.is_error(e) and e.reason and e.path then
    require("mpctl.errors").raise(e.kind, nil, string.format("%s: :%s: %s", sub, e.path, e.reason),
      {errno = e.errno, errno_name = e.errno_name, path = e.path})
  end
  error(e, 0)
end
