-- The command line as a person meets it: exit codes, messages, recipe lookup, the sandbox.
local test = require("mpctl.test")

local probe = "tests/fixtures/recipes/sandbox_probe.lua"
local run = require("support").mpctl


test("--version prints the version and exits 0", function()
  local rc, out = run("--version")
  test.eq(rc, 0)
  test.ok(out:match("^mpctl %d+%.%d+%.%d+"), "version line: " .. out)
end)

test("no command is a usage error (exit 2)", function()
  local rc, out = run("")
  test.eq(rc, 2)
  test.contains(out, "usage: mpctl")
end)

test("an unknown recipe names the closest ones (exit 2)", function()
  local rc, out = run("verify_rpel")
  test.eq(rc, 2)
  test.contains(out, "unknown command or recipe 'verify_rpel'")
  test.contains(out, "did you mean: verify_repl")
end)

test("malformed key=value is a usage error", function()
  local rc, out = run(probe .. " board=")
  test.eq(rc, 2)
  test.contains(out, "'board=' has no value")
  rc, out = run(probe .. " =x")
  test.eq(rc, 2)
  test.contains(out, "has no key")
end)

test("an unknown recipe option is a usage error naming the closest", function()
  local rc, out = run(probe .. " --wht=arg")
  test.eq(rc, 2)
  test.contains(out, "unknown option 'wht'")
  test.contains(out, "did you mean what?")
end)

test("a missing option value is a usage error", function()
  local rc, out = run(probe .. " --port")
  test.eq(rc, 2)
  test.contains(out, "--port needs a value")
end)

test("a setting the recipe does not declare is refused, naming the closest", function()
  local rc, out = run(probe .. " wht=arg")
  test.eq(rc, 2)
  test.contains(out, "unknown setting 'wht'; did you mean what?")
end)

test("key=value pairs, options and words reach the recipe's arg table", function()
  local rc, out = run(probe .. " what=arg --port sim://x --board B x=1 one two --what=arg")
  test.eq(rc, 0, out)
  test.contains(out, "port=sim://x board=B x=1 1=one 2=two")
end)

for _, case in ipairs({
  { "execute", "os.execute is disabled in recipes; run mpctl with --allow-exec" },
  { "popen", "io.popen is disabled in recipes; run mpctl with --allow-exec" },
  { "loadlib", "package.loadlib is disabled in recipes; run mpctl with --allow-exec" },
  { "proc", "require 'mpctl.proc' is disabled in recipes; run mpctl with --allow-exec" },
}) do
  test("sandbox: " .. case[1] .. " is refused with a clear error naming the flag", function()
    local rc, out = run(probe .. " what=" .. case[1])
    test.eq(rc, 1, out)
    test.contains(out, case[2])
  end)
end

test("--allow-exec lets a recipe run programs", function()
  local rc, out = run("--allow-exec " .. probe .. " what=execute")
  test.eq(rc, 0, out)
  test.contains(out, "done execute")
end)

test("a failed check exits 1 and says which", function()
  local rc, out = run(probe .. " what=fail")
  test.eq(rc, 1)
  test.contains(out, "check failed: a failing step")
end)

test("a recipe error exits 1 with its message", function()
  local rc, out = run(probe .. " what=error")
  test.eq(rc, 1)
  test.contains(out, "boom from the recipe")
end)

test("a missing port is a usage error listing the ports present", function()
  local rc, out = run(probe .. " what=usage")
  test.eq(rc, 2)
  test.contains(out, "no port given: use --port PORT (ports present:")
end)

test("help RECIPE shows its description and options", function()
  local rc, out = run("help " .. probe)
  test.eq(rc, 0)
  test.contains(out, "Probes the recipe sandbox")
  test.contains(out, "what")
end)

test("mpctl recipes lists recipes with descriptions", function()
  local rc, out = run("recipes")
  test.eq(rc, 0, out)
  test.ok(out:match("verify_repl%s+%S"), "verify_repl listed with a description:\n" .. out)
end)

test("mpctl recipes lists workflows only; tool commands keep their help", function()
  local rc, out = run("recipes")
  test.eq(rc, 0, out)
  test.ok(out:match("esp32_flash%s"), "esp32_flash listed:\n" .. out)
  for _, tool in ipairs({ "fs", "exec", "run", "repl", "firmware", "history" }) do
    test.ok(not out:match("\n" .. tool .. "%s") and not out:match("^" .. tool .. "%s"), tool .. " is not a recipe:\n" .. out)
    local hrc, help = run("help " .. tool)
    test.eq(hrc, 0, help)
    test.contains(help, "mpctl " .. tool .. ": ")
    test.contains(help, "lua/mpctl/commands/" .. tool .. ".lua")
  end
  rc, out = run("help esp32_flash")
  test.eq(rc, 0, out)
  test.contains(out, "recipes/esp32_flash.lua")
end)

test("a misspelt tool command is suggested too", function()
  local rc, out = run("firmwre")
  test.eq(rc, 2)
  test.contains(out, "did you mean: firmware")
end)

test("mpctl ports runs and mpctl ports --json prints JSON lines", function()
  local rc, out = run("ports")
  test.eq(rc, 0, out)
  rc, out = run("ports --json")
  test.eq(rc, 0, out)
  for line in out:gmatch("[^\n]+") do test.ok(line:match("^{.*}$"), "JSON line: " .. line) end
end)

test("mpctl sim with an unknown simulator is a usage error", function()
  local rc, out = run("sim nosuchsim --listen pty")
  test.eq(rc, 2)
  test.contains(out, "no simulator named 'nosuchsim'")
end)

test("an unknown board is a usage error listing the known ones, closest first", function()
  local rc, out = run("esp32_flash --port sim://esp32 --board ESP32_GENRIC")
  test.eq(rc, 2)
  test.contains(out, "unknown board 'ESP32_GENRIC'; known boards: ESP32_GENERIC,")
end)

test("a port that does not exist is a usage error listing the ports present", function()
  local rc, out = run("verify_repl --port /dev/ttyNOPE")
  test.eq(rc, 2)
  test.contains(out, "/dev/ttyNOPE")
  test.contains(out, "ports present:")
end)

test("a recipe's declared option written --name VALUE takes the next word", function()
  local rc, out = run(probe .. " --what arg --x 7 word")
  test.eq(rc, 0, out)
  test.contains(out, "x=7 1=word")
  rc, out = run(probe .. " --x")
  test.eq(rc, 2)
  test.contains(out, "option --x needs a value")
end)

test("typed options: a bad value is refused with exit 2, naming the accepted values", function()
  for _, case in ipairs({
    { "esp32_flash --port sim://esp32 verify=yse", "bad value for verify: 'yse' (accepted values: yes, no)" },
    { "esp32_flash --port sim://esp32 erase=maybe", "bad value for erase: 'maybe' (accepted values: yes, no)" },
    { "esp32_flash --port sim://esp32 --verify=x", "bad value for verify: 'x'" },
    { "esp32_flash --port sim://esp32 reset=hard", "accepted values: classic, usb-jtag, none" },
    { "esp32_flash --port sim://esp32 timeout=soon", "bad value for timeout: 'soon' (expected a number of seconds" },
    { "history last=many", "bad value for last: 'many' (expected an integer" },
    { "-b fast ports", "--baud fast: expected a baud rate" },
  }) do
    local rc, out = run(case[1])
    test.eq(rc, 2, case[1] .. ": " .. out)
    test.contains(out, case[2])
  end
end)

test("typed options reach arg typed, with defaults; --name alone is a yes|no flag", function()
  local rc, out = run(probe .. " what=types")
  test.eq(rc, 0, out)
  test.contains(out, "flag=nil:nil level=number:3 size=number:4096 mode=string:fast name=nil:nil")
  -- --flag does not swallow the next word; 0x.. integers; --name=VALUE; -p/-b
  rc, out = run(probe .. " what=types --flag level=0.5 --size=0x10 mode=slow --name FILE.bin -p sim://x -b 9600")
  test.eq(rc, 0, out)
  test.contains(out, "flag=boolean:true level=number:0.5 size=number:16 mode=string:slow name=string:FILE.bin")
  test.contains(out, "port=sim://x baud=number:9600")
  rc, out = run(probe .. " what=types --flag=no mode=other")
  test.eq(rc, 2, out)
  test.contains(out, "bad value for mode: 'other' (accepted values: fast, slow)")
  rc, out = run(probe .. " what=types --flag=no")
  test.eq(rc, 0, out)
  test.contains(out, "flag=boolean:false")
end)

test("help shows each option's type and default", function()
  local rc, out = run("help esp32_flash")
  test.eq(rc, 0, out)
  test.ok(out:match("verify%s+yes|no = yes%s+check"), out)
  test.ok(out:match("timeout%s+seconds = 10%s+how long"), out)
  test.ok(out:match("backup%s+FILE|flash|files|all%s+keep"), out)
end)

test("built-in commands refuse what they do not know", function()
  for _, case in ipairs({
    { "ports --bogus", "ports: unknown option --bogus" },
    { "--version --bogus", "unknown option --bogus" },
    { "recipes --port x", "recipes: unknown option --port" },
    { "recipes extra", "recipes takes no words" },
    { "ports --prob", "--probe?" },
  }) do
    local rc, out = run(case[1])
    test.eq(rc, 2, case[1] .. ": " .. out)
    test.contains(out, case[2])
  end
end)

test("MPCTL_PORT is the default port; --port wins over it", function()
  local rc, out = run(probe .. " what=arg", "MPCTL_PORT=sim://fromenv")
  test.eq(rc, 0, out)
  test.contains(out, "port=sim://fromenv ")
  rc, out = run(probe .. " what=arg -p sim://given", "MPCTL_PORT=sim://fromenv")
  test.eq(rc, 0, out)
  test.contains(out, "port=sim://given ")
end)

test("mpremote's file commands are aliases of mpctl fs", function()
  local rc, out = run("-p sim://micropython ls :")
  test.eq(rc, 0, out)
  test.contains(out, "tmp/")
  rc, out = run("ls :", "MPCTL_PORT=sim://micropython")
  test.eq(rc, 0, out)
  test.contains(out, "tmp/")
  rc, out = run("cat :/nonexistent_file.py --port sim://micropython")
  test.eq(rc == 0, false, out)
  test.ok(not out:find("unknown command or recipe", 1, true), out)
end)
