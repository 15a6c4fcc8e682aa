-- Where mpctl finds its library and recipes: the build tree, an install prefix, MPCTL_PATH and
-- the user's config folder.
local test = require("mpctl.test")
local fs = require("mpctl.fs")

local exe = test.exe()
local sh = require("support").sh


test("MPCTL_PATH adds recipes and Lua modules", function()
  local dir = fs.tmpdir()
  fs.mkdir(dir .. "/recipes")
  fs.mkdir(dir .. "/lua/teamlib", { parents = true })
  fs.write(dir .. "/lua/teamlib/greet.lua", "return { hello = function() return 'hi from the team' end }\n")
  fs.write(dir .. "/recipes/team_hello.lua", "--- Says hello from the team folder.\n" ..
    "print(require('lib.x'))\nprint(require('teamlib.greet').hello())\n" ..
    "print(pcall(require('teamlib.greet').spawn))\n")
  -- a team module runs in the recipe's sandbox too
  fs.write(dir .. "/lua/teamlib/greet.lua", "return { hello = function() return 'hi from the team' end," ..
    " spawn = function() return io.popen('true') end }\n")
  fs.mkdir(dir .. "/recipes/lib")
  fs.write(dir .. "/recipes/lib/x.lua", "return 'beside the recipe'\n")
  local rc, out = sh(string.format("MPCTL_PATH=%q %q team_hello", dir, exe))
  test.eq(rc, 0, out)
  test.contains(out, "beside the recipe")
  test.contains(out, "hi from the team")
  test.contains(out, "io.popen is disabled in recipes")
  rc, out = sh(string.format("MPCTL_PATH=%q %q recipes", dir, exe))
  test.contains(out, "team_hello")
  test.contains(out, "Says hello from the team folder.")
  rc, out = sh(string.format("MPCTL_PATH=%q %q --allow-exec %q/recipes/team_hello.lua", dir, exe, dir))
  test.eq(rc, 0, out)
end)

test("recipes in the user's config folder are found by name", function()
  local home = fs.tmpdir()
  fs.mkdir(home .. "/mpctl/recipes", { parents = true })
  fs.write(home .. "/mpctl/recipes/mine.lua", "--- Mine.\nprint('my recipe ran')\n")
  local rc, out = sh(string.format("XDG_CONFIG_HOME=%q %q mine", home, exe))
  test.eq(rc, 0, out)
  test.contains(out, "my recipe ran")
end)

test("an installed mpctl finds its own library, recipes and boards", function()
  local build = os.getenv("MPCTL_TEST_BUILD_DIR")
  if not build then test.skip("MPCTL_TEST_BUILD_DIR not set (run under ctest)") end
  local prefix = fs.tmpdir()
  local rc, out = sh(string.format("cmake --install %q --prefix %q", build, prefix))
  test.eq(rc, 0, out)
  -- run it from elsewhere, so neither ./recipes nor the source tree's cwd helps
  rc, out = sh(string.format("cd / && %q/bin/mpctl recipes", prefix))
  test.eq(rc, 0, out)
  test.contains(out, "verify_repl")
  test.ok(fs.exists(prefix .. "/share/mpctl/lua/mpctl/cli.lua"), "library installed")
  -- the tool commands come with the library, and the installed copy is the one found
  rc, out = sh(string.format("cd / && %q/bin/mpctl help fs", prefix))
  test.eq(rc, 0, out)
  test.contains(out, prefix .. "/bin/../share/mpctl/lua/mpctl/commands/fs.lua")
  sh(string.format("rm -rf %q", prefix))
end)

test("a team's recipe can require a workflow recipe shipped with mpctl by name", function()
  local dir = fs.tmpdir()
  fs.mkdir(dir .. "/recipes")
  fs.write(dir .. "/recipes/team_check.lua", "--- Our check: the shipped verify_repl, then ours.\n" ..
    "local ok, e = pcall(require, 'verify_repl')\nprint('verify_repl ran: ' .. tostring(e))\n" ..
    "print('its typed default: ' .. math.type(arg.timeout) .. ' ' .. arg.timeout)\n")
  fs.write(dir .. "/recipes/team_undo.lua", "--- Our rollback.\nreturn require('esp32_rollback')\n")
  -- from another folder, so ./recipes of the source tree does not help
  -- no --port: the shipped verify_repl is found and runs as far as its own port check
  local rc, out = sh(string.format("cd / && MPCTL_PATH=%q %q team_check", dir, exe))
  test.eq(rc, 0, out)
  test.contains(out, "verify_repl ran: no port given: use --port PORT")
  test.contains(out, "its typed default: integer 10")
  -- esp32_rollback itself requires rollback: the chain resolves too (it stops at its own usage check)
  rc, out = sh(string.format("cd / && MPCTL_PATH=%q %q team_undo", dir, exe))
  test.eq(rc, 2, out)
  test.contains(out, "rollback needs --port")
  sh(string.format("rm -rf %q", dir))
end)
