-- mpctl.http against a real HTTP(S) server on 127.0.0.1: text, files, resume after a cut
-- connection, 404, stalls, retries, TLS with a CA made at test time and with an unknown one.
local test = require("mpctl.test")
local http = require("mpctl.http")
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")

local root = fs.tmpdir()
local work = fs.tmpdir()
local data = S.blob("http-test", 200000)
fs.write(fs.join(root, "big.bin"), data)
fs.write(fs.join(root, "page.html"), "<html>hello</html>\n")
local data_sha = hash.hex(hash.sha256(data))
local srv = S.start_server(root, { logdir = work })
local FAST = { backoff = 0.05, connect_timeout = 5, stall_timeout = 5 }

local function opts(extra)
  local o = {}
  for k, v in pairs(FAST) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

test("a page comes back as text with status, size and hash", function()
  local r = http.get(srv.url .. "/page.html", opts())
  test.eq(r.status, 200)
  test.eq(r.body, "<html>hello</html>\n")
  test.eq(r.size, #r.body)
  test.eq(r.sha256, hash.hex(hash.sha256(r.body)))
  test.ok(r.etag, "ETag captured")
end)

test("a file is written to disk with its SHA-256", function()
  local to = fs.join(work, "whole.bin")
  local r = http.get(srv.url .. "/big.bin", opts({ to = to }))
  test.eq(r.size, #data)
  test.eq(r.sha256, data_sha)
  test.eq(fs.read(to), data)
  test.eq(r.body, nil)
end)

test("404 raises with the status and the URL, without retrying", function()
  local before = srv.count("/missing.bin")
  local msg = test.raises(function() http.get(srv.url .. "/missing.bin", opts()) end, "HTTP 404")
  test.contains(msg, srv.url .. "/missing.bin")
  test.contains(msg, "after 1 attempt")
  test.eq(srv.count("/missing.bin") - before, 1)
end)

test("a cut connection is resumed with a Range request in the same call", function()
  local to = fs.join(work, "cut.bin")
  local seen = {}
  local r = http.get(srv.url .. "/_cut/70000/big.bin", opts({ to = to, progress = function(done, total)
    seen[#seen + 1] = { done, total }
  end }))
  test.eq(r.sha256, data_sha)
  test.eq(r.attempts, 2)
  test.eq(fs.read(to), data)
  local ranged = false
  for _, q in ipairs(srv.requests()) do
    if q.path == "/_cut/70000/big.bin" and q.range == "bytes=70000-" and q.status == 206 then ranged = true end
  end
  test.ok(ranged, "second request asked for bytes=70000-")
  test.ok(#seen >= 1, "progress called")
  test.eq(seen[#seen][1], #data, "last progress is the whole file")
  test.eq(seen[#seen][2], #data)
  for i = 2, #seen do test.ok(seen[i][1] >= seen[i - 1][1], "progress never goes back") end
end)

test("resume=true continues a partial file left by an earlier run", function()
  local to = fs.join(work, "partial.bin")
  fs.write(to, data:sub(1, 50000))
  local r = http.get(srv.url .. "/big.bin", opts({ to = to, resume = true }))
  test.eq(r.resumed_from, 50000)
  test.eq(r.status, 206)
  test.eq(r.sha256, data_sha)
  test.eq(fs.read(to), data)
end)

test("resume with a stale validator restarts from zero (If-Range)", function()
  local to = fs.join(work, "stale.bin")
  fs.write(to, string.rep("x", 50000))
  local r = http.get(srv.url .. "/big.bin", opts({ to = to, resume = true, if_range = '"not-the-etag"' }))
  test.eq(r.status, 200)
  test.eq(r.sha256, data_sha)
  test.eq(fs.read(to), data)
end)

test("a server without range support restarts the file instead of appending", function()
  local to = fs.join(work, "norange.bin")
  fs.write(to, data:sub(1, 1000))
  local r = http.get(srv.url .. "/_norange/big.bin", opts({ to = to, resume = true }))
  test.eq(r.sha256, data_sha)
  test.eq(fs.read(to), data)
end)

test("without resume an existing file is replaced", function()
  local to = fs.join(work, "replace.bin")
  fs.write(to, string.rep("y", 300000))
  local r = http.get(srv.url .. "/big.bin", opts({ to = to }))
  test.eq(r.size, #data)
  test.eq(fs.read(to), data)
end)

test("503s are retried with backoff until the server answers", function()
  local r = http.get(srv.url .. "/_flaky/2/page.html", opts())
  test.eq(r.attempts, 3)
  test.eq(r.body, "<html>hello</html>\n")
end)

test("retries run out with a message naming the attempts", function()
  test.raises(function() http.get(srv.url .. "/_flaky/5/page.html", opts({ retries = 1 })) end,
    "HTTP 503 (after 2 attempts)")
end)

test("a stalled server hits the stall timeout", function()
  local to = fs.join(work, "stall.bin")
  local msg = test.raises(function()
    http.get(srv.url .. "/_stall/1000/big.bin", opts({ to = to, stall_timeout = 1, retries = 0 }))
  end, "stalled: no data for 1")
  test.contains(msg, "/_stall/1000/big.bin")
  test.eq(fs.stat(to).size, 1000, "the bytes that came are kept for a resume")
end)

test("a refused connection is an error naming the address", function()
  -- Port 1 on loopback: nothing listens there on a test machine.
  test.raises(function() http.get("http://127.0.0.1:1/x", opts({ retries = 1 })) end, "127.0.0.1")
end)

test("an error raised by the progress callback stops the transfer and propagates", function()
  test.raises(function()
    http.get(srv.url .. "/_slow/big.bin", opts({ to = fs.join(work, "cb.bin"), progress = function()
      error("stop here")
    end }))
  end, "stop here")
end)

test("on_response sees each attempt's status and validator before its body is written", function()
  local seen = {}
  local r = http.get(srv.url .. "/_cut/70000/big.bin", opts({ to = fs.join(work, "resp.bin"), on_response = function(h)
    seen[#seen + 1] = h
  end }))
  test.eq(r.sha256, data_sha)
  test.eq(#seen, 2)
  test.eq({ seen[1].status, seen[2].status }, { 200, 206 })
  test.eq(seen[1].etag, r.etag)
  test.eq(seen[2].length, #data - 70000)
  test.raises(function()
    http.get(srv.url .. "/big.bin", opts({ to = fs.join(work, "resp2.bin"), on_response = function() error("no thanks") end }))
  end, "no thanks")
end)

test("an in-memory body is capped by max_size", function()
  test.raises(function() http.get(srv.url .. "/big.bin", opts({ max_size = 1000 })) end, "larger than max_size")
end)

test("file:// URLs work (local mirrors)", function()
  local r = http.get("file://" .. fs.join(root, "page.html"), opts())
  test.eq(r.body, "<html>hello</html>\n")
end)

-- TLS: one CA for the server, another one the client is told to trust.
local tls_dir = fs.tmpdir()
local other_dir = fs.tmpdir()
local ca = S.make_ca(tls_dir, "mpctl-test-ca")
local other = S.make_ca(other_dir, "mpctl-other-ca")
local tls = S.start_server(root, { tls = ca, logdir = tls_dir })

test("HTTPS with the test CA given as ca_file verifies and downloads", function()
  local r = http.get(tls.url .. "/big.bin", opts({ ca_file = ca.ca, to = fs.join(work, "tls.bin") }))
  test.eq(r.sha256, data_sha)
  test.ok(r.url:match("^https://"), r.url)
end)

test("HTTPS signed by an unknown CA is refused", function()
  local msg = test.raises(function()
    http.get(tls.url .. "/page.html", opts({ ca_file = other.ca, retries = 0 }))
  end, tls.url)
  test.ok(msg:lower():find("certificate", 1, true) or msg:find("SSL", 1, true), msg)
end)

test("HTTPS with the system store refuses the test CA too (verification is always on)", function()
  test.raises(function() http.get(tls.url .. "/page.html", opts({ retries = 0 })) end, "SSL")
end)

test("cleanup", function()
  srv.stop()
  tls.stop()
  for _, d in ipairs({ root, work, tls_dir, other_dir }) do fs.remove(d, { recursive = true }) end
end)
