/* mpctl.hash: known vectors (RFC 1321, FIPS 180-2, the CRC-32 check value), streaming equals
 * one-shot, digest() does not end the stream, hash.file over a temp file, bad arguments. */
#include "nativetest.h"

#include <stdlib.h>
#include <unistd.h>

static const char *const vectors =
    "local hash = require('mpctl.hash')\n"
    "assert(hash.hex(hash.md5('')) == 'd41d8cd98f00b204e9800998ecf8427e')\n"
    "assert(hash.hex(hash.md5('abc')) == '900150983cd24fb0d6963f7d28e17f72')\n"
    "assert(#hash.md5('x') == 16 and #hash.sha256('x') == 32)\n"
    "assert(hash.hex(hash.sha256('abc')) ==\n"
    "  'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')\n"
    "assert(hash.hex(hash.sha256('')) ==\n"
    "  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')\n"
    "assert(hash.crc32('123456789') == 0xCBF43926)\n"
    "assert(hash.crc32('') == 0)\n"
    "assert(hash.crc32('56789', hash.crc32('1234')) == 0xCBF43926)\n"
    "assert(hash.hex('\\0\\255\\16') == '00ff10')\n"
    "assert(not pcall(hash.crc32, 'x', -1))\n";

static const char *const streaming =
    "local hash = require('mpctl.hash')\n"
    "local h = hash.new('sha256')\n"
    "assert(h:update('a'):update('b') == h)\n"
    "local mid = h:hexdigest()\n"
    "assert(mid == hash.hex(hash.sha256('ab')))\n"
    "h:update('c')\n"
    "assert(h:digest() == hash.sha256('abc') and h:digest() == hash.sha256('abc'))\n"
    "local big = string.rep('0123456789abcdef', 100000)\n"
    "local m = hash.new('md5')\n"
    "for i = 1, #big, 4096 do m:update(big:sub(i, i + 4095)) end\n"
    "assert(m:digest() == hash.md5(big))\n"
    "assert(hash.new('sha1'):update('abc'):hexdigest() == 'a9993e364706816aba3e25717850c26c9cd0d89d')\n"
    "local ok, err = pcall(hash.new, 'sha3')\n"
    "assert(not ok and err:find('invalid option', 1, true), err)\n"
    "m:update('x')\n"
    "getmetatable(m).__close(m)\n"
    "ok, err = pcall(m.update, m, 'x')\n"
    "assert(not ok and err:find('closed', 1, true), err)\n"
    "assert(tostring(m) == 'mpctl.hash md5 (closed)')\n";

static const char *const files =
    "local hash = require('mpctl.hash')\n"
    "local path = TMPFILE\n"
    "local data = string.rep('\\1\\2\\3 mpctl ', 30000)\n"
    "local f = assert(io.open(path, 'wb')); f:write(data); f:close()\n"
    "assert(hash.file(path) == hash.hex(hash.sha256(data)))\n"
    "assert(hash.file(path, 'md5') == hash.hex(hash.md5(data)))\n"
    "assert(hash.file(path, 'crc32') == string.format('%08x', hash.crc32(data)))\n"
    "local ok, err = pcall(hash.file, path .. '.missing')\n"
    "assert(not ok and err:find('.missing: No such file or directory', 1, true), err)\n"
    "os.remove(path)\n";

int main(void)
{
    lua_State *L = nt_state();
    nt_lua(L, "vectors", vectors);
    nt_lua(L, "streaming", streaming);
    char path[] = "/tmp/mpctl_test_hash_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    lua_pushstring(L, path);
    lua_setglobal(L, "TMPFILE");
    nt_lua(L, "files", files);
    unlink(path);
    return nt_finish(L, "test_hash");
}
