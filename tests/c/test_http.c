/* mpctl.http without a network: file:// transfers (body, to=, resume), argument checks, and an
 * error raised by the progress callback, in a bare Lua state (no mpctl.info in the registry), so
 * the sanitizer build covers the request handle's cleanup on every path. The HTTP(S) behaviour is
 * tested against a real server in tests/firmware/http_test.lua. */
#include "nativetest.h"

#include <stdlib.h>
#include <unistd.h>

int main(void)
{
    char tmpl[] = "/tmp/mpctl-http-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (dir == NULL)
        return 1;
    lua_State *L = nt_state();
    lua_pushstring(L, dir);
    lua_setglobal(L, "DIR");
    nt_lua(L, "setup", "local f = assert(io.open(DIR .. '/src.bin', 'wb'))\n"
                       "local t = {} for i = 1, 5000 do t[i] = string.char(i % 251) end\n"
                       "SRC = table.concat(t) f:write(SRC) f:close()\n");
    nt_lua(L, "body", "local http = require('mpctl.http')\n"
                      "local r = http.get('file://' .. DIR .. '/src.bin')\n"
                      "assert(r.body == SRC and r.size == #SRC, 'body')\n"
                      "assert(#r.sha256 == 64 and r.attempts == 1)\n"
                      "assert(http.version():find('libcurl'))\n");
    nt_lua(L, "to", "local http = require('mpctl.http')\n"
                    "local out = DIR .. '/out.bin'\n"
                    "local r = http.get('file://' .. DIR .. '/src.bin', {to = out})\n"
                    "local f = io.open(out, 'rb') local got = f:read('a') f:close()\n"
                    "assert(got == SRC and r.body == nil and r.size == #SRC)\n");
    nt_lua(L, "resume", "local http = require('mpctl.http')\n"
                        "local out = DIR .. '/part.bin'\n"
                        "local f = io.open(out, 'wb') f:write(SRC:sub(1, 1234)) f:close()\n"
                        "local calls = 0\n"
                        "local r = http.get('file://' .. DIR .. '/src.bin', {to = out, resume = true,\n"
                        "  progress = function(done, total) calls = calls + 1 end})\n"
                        "assert(r.resumed_from == 1234, r.resumed_from)\n"
                        "f = io.open(out, 'rb') local got = f:read('a') f:close()\n"
                        "assert(got == SRC, 'resumed file')\n"
                        "assert(calls >= 1)\n");
    nt_lua(L, "errors", "local http = require('mpctl.http')\n"
                        "local ok, e = pcall(http.get, 'file://' .. DIR .. '/missing.bin', {retries = 0})\n"
                        "assert(not ok and e:find('missing.bin', 1, true), e)\n"
                        "ok, e = pcall(http.get, 'file://' .. DIR .. '/src.bin', {connect_timeout = -1})\n"
                        "assert(not ok and e:find('connect_timeout'), e)\n"
                        "ok, e = pcall(http.get, 'file://' .. DIR .. '/src.bin', {retries = math.huge})\n"
                        "assert(not ok and e:find('retries must be a number from 0 to 1000', 1, true), e)\n"
                        "ok, e = pcall(http.get, 'file://' .. DIR .. '/src.bin', {timeout = 0/0})\n"
                        "assert(not ok and e:find('timeout must be', 1, true), e)\n"
                        "ok, e = pcall(http.get, 'file://' .. DIR .. '/src.bin', 5)\n"
                        "assert(not ok)\n"
                        "ok, e = pcall(http.get, 'gopher://example.invalid/', {retries = 0})\n"
                        "assert(not ok and e:find('gopher'), e)\n"
                        "ok, e = pcall(http.get, 'file://' .. DIR .. '/src.bin', {to = DIR .. '/no/such/dir/x'})\n"
                        "assert(not ok and e:find('cannot write'), e)\n"
                        "ok, e = pcall(http.get, 'file://' .. DIR .. '/src.bin', {max_size = 10})\n"
                        "assert(not ok and e:find('max_size'), e)\n");
    nt_lua(L, "progress error", "local http = require('mpctl.http')\n"
                                "local ok, e = pcall(http.get, 'file://' .. DIR .. '/src.bin',\n"
                                "  {progress = function() error({code = 42}) end})\n"
                                "assert(not ok and type(e) == 'table' and e.code == 42, tostring(e))\n"
                                "collectgarbage()\n");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return nt_finish(L, "test_http");
}
