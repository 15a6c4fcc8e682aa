-- Several commands on one connection (mpremote's `a + b`): the board keeps its state from one
-- command to the next because it is the same connection. sim://micropython starts a fresh
-- MicroPython for each connection, so a variable or a file surviving proves the port was shared.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local support = require("support")
local chain = require("mpctl.cli.chain")

test("argv splits at '+' words, not after '--'", function()
  test.eq(chain.split({ "-p", "P", "ls" }), nil)
  test.eq(chain.split({ "-p", "P", "cp", "a", ":a", "+", "exec", "x", "+", "ls" }),
    { { "-p", "P", "cp", "a", ":a" }, { "exec", "x" }, { "ls" } })
  test.eq(chain.split({ "exec", "--", "1", "+", "2" }), nil)
  local segs, err = chain.split({ "ls", "+" })
  test.eq(segs, nil)
  test.contains(err, "command 2 of the chain is empty")
end)

test("a variable set by one command is there for the next: one connection", function()
  local rc, out = support.mpctl("-p sim://micropython exec 'x = 6 * 7' + exec 'print(x)'")
  test.eq(rc, 0, out)
  test.contains(out, "42")
  -- the same two commands as separate runs: two connections, x is gone
  rc, out = support.mpctl("-p sim://micropython exec 'print(x)'")
  test.eq(rc, 1, out)
  test.contains(out, "NameError")
end)

test("cp + exec import + ls, as mpremote users chain them", function()
  local dir = fs.tmpdir()
  fs.write(dir .. "/chain_mod.py", "def hi():\n    return 'hi from the module'\n")
  local rc, out = support.mpctl(string.format(
    "-p sim://micropython cp %s/chain_mod.py :chain_mod.py + exec 'import chain_mod; print(chain_mod.hi())' + ls :",
    dir))
  support.sh(string.format("rm -rf %q", dir))
  test.eq(rc, 0, out)
  test.contains(out, "hi from the module")
  test.ok(out:match("%d+%s+chain_mod%.py"), "ls shows the copied file:\n" .. out)
end)

test("the chain stops at the first command that fails, with its exit code", function()
  local rc, out = support.mpctl("-p sim://micropython exec 'print(1)' + exec 'raise ValueError(7)' + exec 'print(333)'")
  test.eq(rc, 1, out)
  test.contains(out, "ValueError: 7")
  test.ok(not out:find("333", 1, true), "the command after the failure did not run:\n" .. out)
  rc, out = support.mpctl("exec 'print(1)' + ls", "env -u MPCTL_PORT")
  test.eq(rc, 2, out)
  test.contains(out, "give --port PORT or set MPCTL_PORT")
end)
