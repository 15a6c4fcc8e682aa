--- Make a device folder match a local folder: send only files whose device sha256 differs.
-- @option delete: yes|no = no; also remove device files and folders that are not in the local folder
-- @option dry-run: yes|no = no; only say what would be sent and removed
-- @option mode: binary|base64; transfer mode (default: the best the device offers)
--
-- mpctl sync --port P src :app                 send what changed in src/ to /app on the board
-- mpctl sync --port P src :app --delete        ... and remove what src/ does not have
-- mpctl sync --port P src :app --dry-run       only list what would change
-- Each file is compared by a sha256 computed on the device; a copy is verified the same way.

local lfs, ui = mpctl.fs, mpctl.ui
local src, dst = arg[1], arg[2]
if not src or not dst or dst:sub(1, 1) ~= ":" or arg[3] then
  mpctl.usage_error("sync needs LOCAL_DIR :DEVICE_DIR (mpctl sync --port P src :app)")
end
local st = lfs.stat(src)
if not st or st.type ~= "dir" then mpctl.usage_error("sync: " .. src .. " is not a local folder") end
local root = dst:sub(2)
if root == "" then root = "/" end
local dry = arg["dry-run"]

local function join(a, b) return (a:gsub("/+$", "")) .. "/" .. b end

-- local files and folders, relative to src
local files, dirs = {}, {}
local function walk(rel)
  local here = rel == "" and src or join(src, rel)
  for _, name in ipairs(lfs.list(here)) do
    local r = rel == "" and name or (rel .. "/" .. name)
    local s = lfs.stat(join(src, r))
    if s and s.type == "dir" then
      dirs[r] = true
      walk(r)
    elseif s then
      files[r] = true
    end
  end
end
walk("")

local port = mpctl.open_port(arg)
local r = mpctl.repl.attach(port)
local hash = mpctl.hash

local counts = {sent = 0, same = 0, removed = 0, bytes = 0}
local function say(ev, text) ui.result(ev, text .. "\n") end

local ok, err = pcall(function()
  -- the device side, relative to root; nil when root does not exist yet
  local dev_files, dev_dirs = {}, {}
  local function dwalk(rel)
    local path = rel == "" and root or join(root, rel)
    for _, e in ipairs(r:ls(path)) do
      local rr = rel == "" and e.name or (rel .. "/" .. e.name)
      if e.type == "dir" then dev_dirs[rr] = true; dwalk(rr) else dev_files[rr] = true end
    end
  end
  local rst = r:stat(root)
  if rst and rst.type ~= "dir" then mpctl.fail("sync: :" .. root .. " is a file on the device") end
  if rst then dwalk("") end

  local names = {}
  for f in pairs(files) do names[#names + 1] = f end
  table.sort(names)
  local dnames = {}
  for d in pairs(dirs) do dnames[#dnames + 1] = d end
  table.sort(dnames)
  if not dry then
    if not rst then r:mkdir(root, {exist_ok = true}) end
    for _, d in ipairs(dnames) do
      if not dev_dirs[d] then r:mkdir(join(root, d), {exist_ok = true}) end
    end
  end
  for _, f in ipairs(names) do
    local data = lfs.read(join(src, f))
    local target = join(root, f)
    local same = dev_files[f] and r:sha256(target) == hash.hex(hash.sha256(data))
    if same then
      counts.same = counts.same + 1
    elseif dry then
      counts.sent, counts.bytes = counts.sent + 1, counts.bytes + #data
      say({event = "sync", action = "would_send", path = target, bytes = #data},
        string.format("would send  %s -> :%s  %d bytes", join(src, f), target, #data))
    else
      local s = r:put(data, target, {force = true, mode = arg.mode})
      counts.sent, counts.bytes = counts.sent + 1, counts.bytes + #data
      say({event = "sync", action = "sent", path = target, bytes = #data, seconds = s.seconds, mode = s.mode},
        string.format("sent  %s -> :%s  %d bytes  %.2f s  %s", join(src, f), target, #data, s.seconds, s.mode))
    end
  end
  if arg.delete then
    -- device entries the local folder does not have; a removed folder takes its contents along
    local extra = {}
    for f in pairs(dev_files) do if not files[f] then extra[#extra + 1] = f end end
    for d in pairs(dev_dirs) do if not dirs[d] then extra[#extra + 1] = d end end
    table.sort(extra)
    local gone = {}
    for _, e in ipairs(extra) do
      local parent_gone = false
      for g in pairs(gone) do if e:sub(1, #g + 1) == g .. "/" then parent_gone = true end end
      if not parent_gone then
        gone[e] = true
        counts.removed = counts.removed + 1
        local target = join(root, e)
        if dry then
          say({event = "sync", action = "would_remove", path = target}, "would remove  :" .. target)
        else
          r:rm(target, {recursive = dev_dirs[e]})
          say({event = "sync", action = "removed", path = target}, "removed  :" .. target)
        end
      end
    end
  end
end)
pcall(r.close, r)
pcall(port.close, port)
if not ok then
  if mpctl.repl.is_error(err) and err.reason and err.path then
    require("mpctl.errors").raise(err.kind, nil, string.format("sync: :%s: %s", err.path, err.reason))
  end
  error(err, 0)
end
say({event = "sync_summary", sent = counts.sent, up_to_date = counts.same, removed = counts.removed,
  bytes = counts.bytes, dry_run = dry and true or false},
  string.format("%s%d sent (%d bytes), %d up to date, %d removed", dry and "dry run: " or "", counts.sent,
    counts.bytes, counts.same, counts.removed))
