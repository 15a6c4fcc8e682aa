-- Ways out of the recipe sandbox, each tried by a recipe as a person would run it: every one must
-- fail without flags (and say which flag would allow it), and work with --allow-fs or
-- --allow-exec, so the test shows the door is there and is what holds.
--
-- Layout, all under one temporary folder ROOT (removed at the end):
--   ROOT/work       the current folder (allowed); work/recipes/escape.lua is the recipe
--   ROOT/home       $HOME (its dotfiles are outside the allowed folders)
--   ROOT/tmp        $TMPDIR (allowed)
--   ROOT/outside    a folder nothing allows; outside/secret.txt, outside/evil.lua
--   work/link       a symlink to ROOT/outside
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local sh = require("support").sh

local exe = test.exe()

local RECIPE = [=[
--- Tries one way out of the sandbox (tests/cli/sandbox_escape_test.lua).
-- @option case: TEXT; which attempt
-- @option home: DIR; the fake home
local home, out = os.getenv("HOME"), os.getenv("OUTSIDE")
local function escaped(what) print("ESCAPED " .. tostring(what)) end
local C = {}
-- modules that lead to programs or to the host environment
C.require_sandbox = function()
  local sb = require("mpctl.sandbox")
  sb.env(nil, { allow_exec = true }).os.execute("touch " .. out .. "/ran")
  escaped("sandbox")
end
C.require_cli = function() escaped(require("mpctl.cli").main) end
C.require_proc = function()
  require("mpctl.proc").spawn({ argv = { "touch", out .. "/ran" } }):wait(5)
  escaped("proc")
end
C.require_sim = function()
  local sim = require("mpctl.sim.micropython")
  escaped(sim.spawn)
end
C.mpctl_sim_field = function()
  local sim = mpctl.sim or mpctl.proc
  escaped(sim.spawn)
end
-- the test runner asked to run a file in the host's globals
C.test_run_env = function()
  local f = assert(io.open("evil_test.lua", "w"))
  f:write("local test = require('mpctl.test')\ntest('x', function() os.execute('touch " .. out .. "/ran') end)\n")
  f:close()
  mpctl.test.run({ paths = { "evil_test.lua" }, env_for = function() return nil end, out = function() end })
  os.remove("evil_test.lua")
  local g = io.open(out .. "/ran", "r")
  if g then g:close() escaped("test.run") end
end
-- load with an environment of one's own, binary chunks, bytecode
C.load_env = function()
  local e = load("return _ENV", "x", "t", nil)()
  local f = load("return debug or package.loaded", "y", "t", e)()
  escaped(assert(f, "neither debug nor package.loaded is reachable"))
end
C.load_binary = function()
  local dump = string.dump or assert(nil, "string.dump is not available")
  escaped(load(dump(function() end), "b", "b"))
end
C.debug_library = function() escaped(debug.getregistry()) end
-- metatables: the host's string table, library objects, the mpctl table
C.string_metatable = function()
  local mt = getmetatable("")
  mt.__index.find = function() return 1, 1 end
  escaped("string metatable")
end
C.library_metatable = function()
  local mt = getmetatable(io.stderr) or getmetatable(mpctl) or getmetatable(require("mpctl.ui"))
  escaped(mt.__index)
end
-- the recipe's own string table is its own: tampering leaves the library and C alone
C.string_copy = function()
  string.find = function() return 1, 1 end
  string.format = function() return "TAMPERED" end
  string.rep = nil
  local near = require("mpctl.text").closest("verfy", { "verify", "erase" }, 1)
  assert(("abc"):find("z") == nil, "method calls see the host's string.find")
  assert(("%d"):format(5) == "5", "method calls see the host's string.format")
  assert(near[1] == "verify", "library code sees the host's string table")
  mpctl.ui.log("info", "C formats with the host's %s", "string.format")
  escaped("nothing: the copy is the recipe's own") -- the only case where ESCAPED is wanted without flags
end
-- files: dotfiles in $HOME, symlinks, .., and the library used as a go-between
C.dotfile_io_open = function()
  local f = assert(io.open(home .. "/.bashrc", "a"))
  f:write("echo pwned\n")
  f:close()
  escaped("io.open")
end
C.dotfile_fs_write = function() mpctl.fs.write(home .. "/.profile", "echo pwned\n") escaped("fs.write") end
C.dotfile_rename = function()
  local f = assert(io.open("payload", "w")) f:write("echo pwned\n") f:close()
  assert(os.rename("payload", home .. "/.bash_login"))
  escaped("os.rename")
end
C.remove_outside = function() assert(os.remove(out .. "/victim.txt")) escaped("os.remove") end
C.read_outside = function() escaped(assert(io.open(out .. "/secret.txt")):read("a")) end
C.lines_outside = function() for l in io.lines(out .. "/secret.txt") do escaped(l) end end
C.dofile_outside = function() dofile(out .. "/evil.lua") escaped("dofile") end
C.dotdot = function() escaped(assert(io.open("../outside/secret.txt")):read("a")) end
C.dotdot_missing = function()
  local f = assert(io.open("nonexistent/../../outside/new.txt", "w"))
  f:write("x") f:close()
  escaped("..")
end
C.symlink_read = function() escaped(assert(io.open("link/secret.txt")):read("a")) end
C.symlink_write = function() mpctl.fs.write("link/planted.txt", "x") escaped("symlink write") end
C.symlink_list = function() escaped(table.concat(mpctl.fs.list("link"), ",")) end
C.http_file_url = function()
  escaped(mpctl.http.get("file://" .. out .. "/secret.txt").body)
end
C.http_to = function()
  mpctl.http.get("file://" .. os.getenv("PWD") .. "/recipes/escape.lua", { to = home .. "/.bashrc" })
  escaped("http to=")
end
C.hash_file = function() escaped(mpctl.hash.file(out .. "/secret.txt")) end
C.sim_flash_file = function()
  local p = mpctl.serial.open("sim://esp32?flash_file=" .. home .. "/.bashrc")
  p:close()
  escaped("sim flash_file")
end
C.sim_program = function()
  local p = mpctl.serial.open("sim://micropython?node=/bin/sh")
  p:close()
  escaped("sim node=")
end
assert(C[arg.case], "no case " .. tostring(arg.case))()
]=]

-- case, the flag that should open it (nil: stays shut even with flags), what the refusal says
local CASES = {
  { "require_sandbox", "--allow-exec", "require 'mpctl.sandbox' is disabled in recipes" },
  { "require_cli", "--allow-exec", "require 'mpctl.cli' is disabled in recipes" },
  { "require_proc", "--allow-exec", "require 'mpctl.proc' is disabled in recipes; run mpctl with --allow-exec" },
  { "require_sim", "--allow-exec", "simulators are reached through sim:// ports" },
  { "mpctl_sim_field", nil, "attempt to index a nil value" },
  -- (mpctl.test.run is given the sandbox's environment builder whatever the recipe passes)
  { "test_run_env", nil, "" },
  { "load_env", "--allow-exec", "neither debug nor package.loaded is reachable" },
  { "load_binary", "--allow-exec", "string.dump is not available" },
  { "debug_library", "--allow-exec", "attempt to index a nil value" },
  { "string_metatable", "--allow-exec", "attempt to index a nil value" },
  { "library_metatable", "--allow-exec", "attempt to index a nil value" },
  { "dotfile_io_open", "--allow-fs", "outside the folders a recipe may use; run mpctl with --allow-fs" },
  { "dotfile_fs_write", "--allow-fs", "fs.write %H/.profile: outside the folders a recipe may use; run mpctl with --allow-fs" },
  { "dotfile_rename", "--allow-fs", "os.rename %H/.bash_login: outside" },
  { "remove_outside", "--allow-fs", "os.remove %O/victim.txt: outside" },
  { "read_outside", "--allow-fs", "--allow-fs" },
  { "lines_outside", "--allow-fs", "io.lines %O/secret.txt: outside" },
  { "dofile_outside", "--allow-fs", "%O/evil.lua: outside the folders a recipe may use" },
  { "dotdot", "--allow-fs", "../outside/secret.txt" },
  { "dotdot_missing", nil, "nonexistent/../../outside/new.txt" },
  { "symlink_read", "--allow-fs", "link/secret.txt" },
  { "symlink_write", "--allow-fs", "fs.write link/planted.txt: outside" },
  { "symlink_list", "--allow-fs", "fs.list link: outside" },
  { "http_file_url", "--allow-fs", "http.get %O/secret.txt: outside" },
  { "http_to", "--allow-fs", "http.get to= %H/.bashrc: outside" },
  { "hash_file", "--allow-fs", "hash.file %O/secret.txt: outside" },
  { "sim_flash_file", "--allow-fs", "sim option flash_file= %H/.bashrc: outside" },
  { "sim_program", nil, "sim option node= names a program to run; run mpctl with --allow-exec" },
}

local function setup()
  local root = fs.realpath(fs.tmpdir())
  for _, d in ipairs({ "work/recipes", "home", "tmp", "outside" }) do fs.mkdir(root .. "/" .. d, { parents = true }) end
  fs.write(root .. "/work/recipes/escape.lua", RECIPE)
  fs.write(root .. "/outside/secret.txt", "the secret\n")
  fs.write(root .. "/outside/evil.lua", "print('evil ran')\n")
  assert(sh(string.format("ln -s %q %q", root .. "/outside", root .. "/work/link")) == 0)
  return root
end

local function run_case(root, case, flag)
  fs.write(root .. "/outside/victim.txt", "victim\n")
  local env = string.format("cd %q && env -u XDG_CONFIG_HOME -u XDG_CACHE_HOME -u XDG_STATE_HOME " ..
    "-u MPCTL_PATH -u MPCTL_HISTORY -u MPCTL_CACHE_DIR HOME=%q TMPDIR=%q OUTSIDE=%q", root .. "/work",
    root .. "/home", root .. "/tmp", root .. "/outside")
  return sh(string.format("%s %q %s escape case=%s", env, exe, flag or "", case))
end

-- What a case leaves behind when it got out.
local function traces(root)
  local found = {}
  for _, p in ipairs({ "/home/.bashrc", "/home/.profile", "/home/.bash_login", "/outside/ran",
    "/outside/planted.txt", "/outside/new.txt" }) do
    if fs.exists(root .. p) then found[#found + 1] = p end
  end
  if not fs.exists(root .. "/outside/victim.txt") then found[#found + 1] = "victim.txt removed" end
  return found
end

local function clean(root)
  for _, p in ipairs({ "/home/.bashrc", "/home/.profile", "/home/.bash_login", "/outside/ran",
    "/outside/planted.txt", "/outside/new.txt", "/work/payload", "/work/evil_test.lua" }) do
    if fs.exists(root .. p) then fs.remove(root .. p) end
  end
end

test("every escape fails without flags, naming the flag where one would allow it", function()
  local root = setup()
  local ok, err = pcall(function()
    for _, c in ipairs(CASES) do
      local rc, out = run_case(root, c[1])
      test.ok(rc ~= 0 or not out:find("ESCAPED", 1, true), c[1] .. " got out:\n" .. out)
      test.ok(not out:find("ESCAPED", 1, true), c[1] .. " printed ESCAPED:\n" .. out)
      test.eq(traces(root), {}, c[1] .. " left traces:\n" .. out)
      local want = c[3]:gsub("%%H", root .. "/home"):gsub("%%O", root .. "/outside")
      test.contains(out, want, c[1])
      clean(root)
    end
  end)
  sh(string.format("rm -rf %q", root))
  if not ok then error(err, 0) end
end)

test("the same attempts work with the flag that allows them", function()
  local root = setup()
  local ok, err = pcall(function()
    for _, c in ipairs(CASES) do
      if c[2] then
        local rc, out = run_case(root, c[1], c[2])
        -- the attempt got through the sandbox: either it finished (ESCAPED) or it failed later
        -- for a reason that is not the sandbox (e.g. http_to's download, test_run_env's report)
        test.ok(out:find("ESCAPED", 1, true) or #traces(root) > 0,
          c[1] .. " with " .. c[2] .. " (rc " .. tostring(rc) .. "):\n" .. out)
        test.ok(not out:find("--allow-", 1, true), c[1] .. " still refused with " .. c[2] .. ":\n" .. out)
        clean(root)
      end
    end
  end)
  sh(string.format("rm -rf %q", root))
  if not ok then error(err, 0) end
end)

test("tampering with the recipe's own string table changes nothing outside it", function()
  local root = setup()
  local rc, out = run_case(root, "string_copy")
  sh(string.format("rm -rf %q", root))
  test.eq(rc, 0, out)
  test.contains(out, "ESCAPED nothing: the copy is the recipe's own")
  test.contains(out, "C formats with the host's string.format")
end)

test("inside the allowed folders files work without flags, through links that stay inside", function()
  local root = setup()
  fs.mkdir(root .. "/work/data")
  assert(sh(string.format("ln -s %q %q", root .. "/work/data", root .. "/work/inlink")) == 0)
  fs.write(root .. "/work/recipes/files.lua", "--- Files inside.\n" ..
    "mpctl.fs.write('inlink/a.txt', 'A')\n" ..
    "local f = assert(io.open(os.getenv('TMPDIR') .. '/t.txt', 'w')) f:write('T') f:close()\n" ..
    "assert(os.rename(os.getenv('TMPDIR') .. '/t.txt', 'data/t.txt'))\n" ..
    "print('read ' .. mpctl.fs.read('data/a.txt') .. io.open('data/t.txt'):read('a'))\n" ..
    "mpctl.fs.write(os.getenv('HOME') .. '/.config/mpctl/note.txt', 'ok')\n" ..
    "print('config ' .. mpctl.fs.read(os.getenv('HOME') .. '/.config/mpctl/note.txt'))\n")
  fs.mkdir(root .. "/home/.config/mpctl", { parents = true })
  local rc, out = sh(string.format("cd %q && env -u XDG_CONFIG_HOME HOME=%q TMPDIR=%q %q files",
    root .. "/work", root .. "/home", root .. "/tmp", exe))
  -- a file named on the command line is the person's choice, wherever it is
  local rc2, out2 = sh(string.format("cd %q && HOME=%q TMPDIR=%q OUTSIDE=%q %q escape case=read_outside home=%q",
    root .. "/work", root .. "/home", root .. "/tmp", root .. "/outside", exe, root .. "/outside"))
  sh(string.format("rm -rf %q", root))
  test.eq(rc, 0, out)
  test.contains(out, "read AT")
  test.contains(out, "config ok")
  test.eq(rc2, 0, out2)
  test.contains(out2, "ESCAPED the secret")
end)

test("run from $HOME itself, the dotfiles there stay out of reach", function()
  local root = setup()
  local home = root .. "/home"
  fs.write(home .. "/plant.lua", "--- Plants.\n" ..
    "local ok, err = pcall(mpctl.fs.write, '.bashrc', 'echo pwned')\nprint(ok, err)\n" ..
    "print(io.open('.ssh_key', 'w'))\n" ..
    "mpctl.fs.write('project.txt', 'fine')\nprint('wrote project.txt')\n")
  local rc, out = sh(string.format("cd %q && env -u XDG_CONFIG_HOME HOME=%q TMPDIR=%q %q ./plant.lua",
    home, home, root .. "/tmp", exe))
  local planted = fs.exists(home .. "/.bashrc") or fs.exists(home .. "/.ssh_key")
  local wrote = fs.exists(home .. "/project.txt")
  sh(string.format("rm -rf %q", root))
  test.eq(rc, 0, out)
  test.ok(not planted, "a dotfile was written:\n" .. out)
  test.ok(wrote, "an ordinary file in the current folder is fine:\n" .. out)
  test.contains(out, "fs.write .bashrc: outside the folders a recipe may use; run mpctl with --allow-fs")
  test.contains(out, "io.open .ssh_key: outside")
end)
