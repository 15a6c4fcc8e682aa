-- mpctl mip install against an index with micropython-lib's layout (built here, served by the
-- HTTP fixture on 127.0.0.1 and read as a folder), installing onto the real MicroPython
-- (WebAssembly) behind a simulated board: the files arrive with the right bytes, dependencies
-- come along, a file that does not match its hash stops the install before anything is written,
-- the cache serves exact versions and offline runs, and a missing package names close ones.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local ui = require("mpctl.ui")
local mip = require("mpctl.mip")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")
local R = dofile(here .. "/../repl/support.lua")

-- The packages of the fixture index: name -> {version, files = {target path -> bytes}, deps}
local PACKAGES = {
  greet = {version = "1.2", files = {
    ["greet/__init__.py"] = "from greet.core import hello\n",
    ["greet/core.py"] = "import shout\ndef hello(who):\n    return shout.shout('hello ' + who)\n",
  }, deps = {{"shout", "latest"}}},
  shout = {version = "0.3", files = {["shout.py"] = "def shout(s):\n    return s.upper() + '!'\n"}},
  gremlin = {version = "0.1", files = {["gremlin.py"] = "x = 1\n"}},
  escape = {version = "0.1", files = {["../boot.py"] = "print('not yours')\n"}},
}

-- Writes file/<h[:2]>/<h> and package/<mpy>/<name>/<version>.json as micropython-lib's
-- tools/build.py lays them out (8-digit SHA-256 prefixes), and index.json.
local function build_index(dir)
  local index = {v = 2, updated = 0, packages = {}}
  local names = {}
  for name in pairs(PACKAGES) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local p = PACKAGES[name]
    local hashes = {}
    local paths = {}
    for path in pairs(p.files) do paths[#paths + 1] = path end
    table.sort(paths)
    for _, path in ipairs(paths) do
      local data = p.files[path]
      local short = hash.hex(hash.sha256(data)):sub(1, 8)
      fs.mkdir(fs.join(dir, "file", short:sub(1, 2)), {parents = true})
      fs.write(fs.join(dir, "file", short:sub(1, 2), short), data)
      hashes[#hashes + 1] = {path, short}
    end
    local doc = ui.json_encode({v = 1, hashes = hashes, deps = p.deps, version = p.version})
    for _, mpy in ipairs({"py", "6"}) do
      fs.mkdir(fs.join(dir, "package", mpy, name), {parents = true})
      fs.write(fs.join(dir, "package", mpy, name, "latest.json"), doc)
      fs.write(fs.join(dir, "package", mpy, name, p.version .. ".json"), doc)
    end
    index.packages[#index.packages + 1] = {name = name, version = p.version, author = "", description = name .. " test",
      license = "MIT", versions = {py = {p.version}, ["6"] = {p.version}}, path = "test/" .. name}
  end
  fs.write(fs.join(dir, "index.json"), ui.json_encode(index))
  -- a third-party package.json naming its files by URL (mip's "urls"), served by the same server
  fs.mkdir(fs.join(dir, "thirdparty", "files"), {parents = true})
  fs.write(fs.join(dir, "thirdparty", "files", "blink.py"), "def on():\n    return 'blink on'\n")
end

local top = fs.tmpdir()
local idx = fs.join(top, "index")
build_index(idx)
local srv = S.start_server(idx, {logdir = top})
fs.write(fs.join(idx, "thirdparty", "package.json"), ui.json_encode({
  urls = {{"blink.py", srv.url .. "/thirdparty/files/blink.py"}}, deps = {{"shout", "latest"}}, version = "2.0"}))
local n_cache = 0
local function new_cache()
  n_cache = n_cache + 1
  return fs.join(top, "cache" .. n_cache)
end

local function mpctl(args) return R.mpctl(args, 90) end
local function cat(pty, path)
  local code, out = mpctl({"exec", "--port", pty, "import sys; sys.stdout.write(open('" .. path .. "').read())"})
  return code == 0 and out or nil
end

test("install from an HTTP index: dependencies come along, files land in /lib with their bytes", function()
  R.with_sim(function(pty)
    local cache = new_cache()
    local code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. srv.url, "cache=" .. cache})
    test.eq(code, 0, out)
    test.contains(out, "shout 0.3 (needed by greet)")
    for path, data in pairs(PACKAGES.greet.files) do test.eq(cat(pty, "/lib/" .. path), data, path) end
    test.eq(cat(pty, "/lib/shout.py"), PACKAGES.shout.files["shout.py"])
    code, out = mpctl({"exec", "--port", pty, "import greet; print(greet.hello('pico'))"})
    test.eq(code, 0, out)
    test.contains(out, "HELLO PICO!")
    -- the board's bytecode version (6 on this MicroPython) picked the package files
    test.eq(srv.count("/package/6/greet/latest.json"), 1)
    test.eq(srv.count("/package/6/shout/latest.json"), 1)
    -- again: every file is already identical on the board, and comes from the cache
    local files_before = srv.count("/file/")
    code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. srv.url, "cache=" .. cache})
    test.eq(code, 0, out)
    test.contains(out, "up to date :/lib/shout.py")
    test.contains(out, "0 files written")
    test.eq(srv.count("/file/"), files_before, "files served from the cache")
    -- offline=yes: "latest" and every file from the cache, not one request
    local requests = #srv.requests()
    code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. srv.url, "cache=" .. cache,
      "offline=yes", "target=/offline"})
    test.eq(code, 0, out)
    test.eq(cat(pty, "/offline/shout.py"), PACKAGES.shout.files["shout.py"])
    test.eq(#srv.requests(), requests, "no request offline")
  end)
end, {timeout = 240})

test("mpy=no, target= (created when missing), an exact version, --dry-run writes nothing", function()
  R.with_sim(function(pty)
    local cache = new_cache()
    local code, out = mpctl({"mip", "install", "--port", pty, "shout@0.3", "mpy=no", "target=/apps/lib",
      "index=" .. srv.url, "cache=" .. cache, "--dry-run"})
    test.eq(code, 0, out)
    test.contains(out, "would write :/apps/lib/shout.py  " .. #PACKAGES.shout.files["shout.py"] .. " bytes")
    code, out = mpctl({"ls", "--port", pty, ":/"})
    test.ok(not out:find("apps/", 1, true), "dry run made no folder: " .. out)
    code, out = mpctl({"mip", "install", "--port", pty, "shout@0.3", "mpy=no", "target=/apps/lib",
      "index=" .. srv.url, "cache=" .. cache})
    test.eq(code, 0, out)
    test.eq(cat(pty, "/apps/lib/shout.py"), PACKAGES.shout.files["shout.py"])
    test.ok(srv.count("/package/py/shout/0.3.json") >= 1, "the .py package of version 0.3 was asked for")
    -- an exact version is never asked for again once cached; offline=yes works from the cache
    local asked = srv.count("/package/py/shout/0.3.json")
    code, out = mpctl({"mip", "install", "--port", pty, "shout@0.3", "mpy=no", "index=" .. srv.url,
      "cache=" .. cache, "offline=yes", "target=/apps/lib2"})
    test.eq(code, 0, out)
    test.eq(srv.count("/package/py/shout/0.3.json"), asked)
    test.eq(cat(pty, "/apps/lib2/shout.py"), PACKAGES.shout.files["shout.py"])
    -- offline with an empty cache: says so, writes nothing
    code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. srv.url, "cache=" .. new_cache(),
      "offline=yes"})
    test.eq(code, 1, out)
    test.contains(out, "offline=yes")
  end)
end, {timeout = 240})

test("a folder mirror: a file that does not match its hash is refused and nothing is written", function()
  R.with_sim(function(pty)
    local mirror = fs.join(top, "tampered")
    build_index(mirror)
    -- greet's second file changed after the index was built
    local short = hash.hex(hash.sha256(PACKAGES.greet.files["greet/core.py"])):sub(1, 8)
    fs.write(fs.join(mirror, "file", short:sub(1, 2), short), "import os\nos.remove('/boot.py')\n")
    local cache = new_cache()
    local code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. mirror, "cache=" .. cache})
    test.eq(code, 1, out)
    test.contains(out, "greet:greet/core.py from " .. mirror .. "/file/" .. short:sub(1, 2) .. "/" .. short
      .. " does not match its hash, nothing installed")
    test.contains(out, "expected sha256 " .. short .. "...")
    code, out = mpctl({"ls", "--port", pty, ":/"})
    test.eq(code, 0, out)
    test.ok(not out:find("lib/", 1, true), "nothing written, not even /lib: " .. out)
    test.ok(not fs.exists(fs.join(cache, "files", short:sub(1, 2), short)), "the bad file is not cached")
    -- the untampered folder mirror installs
    code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. idx, "cache=" .. cache})
    test.eq(code, 0, out)
    test.eq(cat(pty, "/lib/greet/core.py"), PACKAGES.greet.files["greet/core.py"])
    -- a damaged cached file is noticed and fetched again
    fs.write(fs.join(cache, "files", short:sub(1, 2), short), "damaged")
    code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. idx, "cache=" .. cache})
    test.eq(code, 0, out)
    test.contains(out, "is damaged, removing it")
  end)
end, {timeout = 240})

test("a missing package names close ones; a missing version lists the versions; a path outside target is refused", function()
  local cache = new_cache()
  local code, out = mpctl({"mip", "install", "--port", "sim://micropython", "gret", "index=" .. srv.url, "cache=" .. cache})
  test.eq(code, 1, out)
  test.contains(out, "mip: no package 'gret' in " .. srv.url .. "; close names: greet")
  code, out = mpctl({"mip", "install", "--port", "sim://micropython", "greet@9.9", "index=" .. srv.url,
    "cache=" .. cache})
  test.eq(code, 1, out)
  test.contains(out, "mip: greet has no version 9.9 for .mpy version 6; it has: 1.2")
  code, out = mpctl({"mip", "install", "--port", "sim://micropython", "escape", "index=" .. srv.url, "cache=" .. cache})
  test.eq(code, 1, out)
  test.contains(out, "names the file '../boot.py', which is not a path inside the target folder; nothing installed")
  code, out = mpctl({"mip", "list", "index=" .. idx})
  test.eq(code, 0, out)
  test.contains(out, "greet")
  test.contains(out, "shout")
end, {timeout = 240})

test("a package.json at a URL: files named by URL and dependencies from the index", function()
  R.with_sim(function(pty)
    local code, out = mpctl({"mip", "install", "--port", pty, srv.url .. "/thirdparty/package.json",
      "index=" .. srv.url, "cache=" .. new_cache()})
    test.eq(code, 0, out)
    test.eq(cat(pty, "/lib/blink.py"), "def on():\n    return 'blink on'\n")
    test.eq(cat(pty, "/lib/shout.py"), PACKAGES.shout.files["shout.py"])
  end)
end, {timeout = 240})

test("an index that cannot be reached: the copy cached earlier is used, with a warning", function()
  R.with_sim(function(pty)
    local srv2 = S.start_server(idx, {logdir = fs.tmpdir()})
    local cache = new_cache()
    local code, out = mpctl({"mip", "install", "--port", pty, "shout", "index=" .. srv2.url, "cache=" .. cache})
    test.eq(code, 0, out)
    srv2.stop()
    code, out = mpctl({"mip", "install", "--port", pty, "shout", "index=" .. srv2.url, "cache=" .. cache,
      "retries=0", "target=/again"})
    test.eq(code, 0, out)
    test.contains(out, "using the copy of package/6/shout/latest.json cached earlier")
    test.eq(cat(pty, "/again/shout.py"), PACKAGES.shout.files["shout.py"])
    -- nothing cached for another package: the error says what could not be read and what to do
    code, out = mpctl({"mip", "install", "--port", pty, "greet", "index=" .. srv2.url, "cache=" .. cache, "retries=0"})
    test.eq(code, 1, out)
    test.contains(out, "mip: cannot read package/6/greet/latest.json from " .. srv2.url)
    test.contains(out, "offline=yes uses what the cache holds")
  end)
end, {timeout = 240})

test("spec and github: rewrites (mip's rules)", function()
  test.eq({mip.parse_spec("hmac@3.4.2-3")}, {"hmac", "3.4.2-3"})
  test.eq({mip.parse_spec("aioble")}, {"aioble"})
  test.eq({mip.parse_spec("github:org/repo@main")}, {"github:org/repo", "main"})
  test.eq(mip.github_url("github:org/repo", nil), "https://raw.githubusercontent.com/org/repo/HEAD/")
  test.eq(mip.github_url("github:org/repo/lib/x.py", "v1"), "https://raw.githubusercontent.com/org/repo/v1/lib/x.py")
end)

test("stop the server", function() srv.stop() end)
