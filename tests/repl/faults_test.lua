-- The REPL transfer under faults (issue 8), on sim://rawrepl (binary receiver modelled, code run by
-- the real WebAssembly MicroPython): a corrupted put is sent again a bounded number of times, stale
-- temporaries of killed puts are cleaned up and hidden, and a receiver left waiting by a client
-- that died mid-chunk gives up by itself so the next client gets in.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local repl = require("mpctl.repl")
local hash = require("mpctl.hash")

local random_bytes = test.random_bytes

local function connect(query, opts)
  local port = serial.open("sim://rawrepl" .. (query and ("?" .. query) or ""))
  local o = {timeout = 10, owns_port = true}
  for k, v in pairs(opts or {}) do o[k] = v end
  return repl.attach(port, o), port
end

test("a put corrupted once on the wire is sent again and succeeds, saying so", function()
  local r = connect("corrupt_at=1000&corrupt_times=1")
  local data = random_bytes(4096, 31)
  local retried = {}
  r.on_retry = function(path, attempt) retried[#retried + 1] = path .. "#" .. attempt end
  local s = r:put(data, "/again.bin", {compress = false})
  test.eq(s.status, "written")
  test.eq(s.attempts, 2, "the second attempt arrived intact")
  test.eq(retried, {"/again.bin#1"})
  test.eq(r:sha256("/again.bin"), hash.hex(hash.sha256(data)))
  r:close()
end)

test("a put corrupted every time fails after the bounded attempts and says how many", function()
  local r = connect("corrupt_at=10", {attempts = 4})
  r:put("old", "/bad.bin")
  local ok, e = pcall(r.put, r, random_bytes(2048, 32), "/bad.bin", {compress = false})
  test.ok(not ok, "put raised")
  test.contains(tostring(e), "after 4 attempts")
  test.eq(e.attempts, 4)
  test.eq(r:get("/bad.bin"), "old", "the file was left as it was")
  r:close()
end)

test("the next put removes stale .mpctl~ temporaries in its folder, and ls hides them", function()
  local r = connect()
  r:mkdir("/proj")
  -- what puts killed mid-way leave behind
  r:exec("for n in ('/proj/a.py.mpctl~','/proj/b.bin.mpctl~z'):\n with open(n,'wb') as f:\n  f.write(b'x'*300)")
  local names = {}
  for _, e in ipairs(r:ls("/proj")) do names[#names + 1] = e.name end
  test.eq(names, {}, "ls hides the temporaries")
  test.eq(#r:ls("/proj", {all = true}), 2, "ls {all=true} shows them")
  local s = r:put("print('c')\n", "/proj/c.py")
  test.eq(s.cleaned, 2, "two stale temporaries removed")
  local all = {}
  for _, e in ipairs(r:ls("/proj", {all = true})) do all[#all + 1] = e.name end
  test.eq(all, {"c.py"})
  r:close()
end)

test("a receiver whose client died mid-chunk gives up after its silence; the next client gets in", function()
  local r, port = connect()
  r:_ensure_helpers()
  -- what a put sends, then the client dies after 100 bytes of a 256-byte chunk
  r:_send("_mpctl_rx('/half.bin.mpctl~',1000,256,300)", 5)
  test.eq(r:_read_exact(1, 5, "ready"), "\6")
  port:write(random_bytes(100, 33))
  -- a new client on the same line (the board does not know its peer changed): its Ctrl-C and
  -- Ctrl-A would be taken as data by a receiver still waiting; this one gave up after 0.3 s
  local r2 = repl.attach(port, {timeout = 5})
  test.eq(r2:exec("print('next client')"), "next client\n")
  test.eq(r2:exec("import micropython\nmicropython.kbd_intr(3)\nprint('ok')"), "ok\n")
  test.eq(r2:stat("/half.bin.mpctl~"), nil, "no partial file")
  r2:close()
  port:close()
end)
