/* mpctl.slip: codec vectors (esptool serial-protocol.rst trace), error messages, read_frame over
 * a scripted fake port (chunking, garbage, empty frames, unread of trailing bytes, timeouts),
 * and the incremental decoder fed byte by byte. */
#include "nativetest.h"

static const char *const codec =
    "local slip = require('mpctl.slip')\n"
    "assert(slip.encode('') == '\\192\\192')\n"
    "assert(slip.encode('\\192') == '\\192\\219\\220\\192')\n"
    "assert(slip.encode('\\219') == '\\192\\219\\221\\192')\n"
    "assert(slip.encode('a\\192b\\219c') == '\\192a\\219\\220b\\219\\221c\\192')\n"
    /* SYNC request from serial-protocol.rst "Tracing": header then 07 07 12 20 + 32 x 0x55 */
    "local sync = '\\0\\8\\36\\0\\0\\0\\0\\0\\7\\7\\18\\32' .. string.rep('U', 32)\n"
    "assert(slip.encode(sync) == '\\192' .. sync .. '\\192')\n"
    "assert(slip.decode('a\\219\\220b\\219\\221c') == 'a\\192b\\219c')\n"
    "assert(slip.decode('\\192a\\192') == 'a')\n"
    "local ok, err = pcall(slip.decode, 'ab\\219\\65')\n"
    "assert(not ok and err:find('bad escape 0xDB 0x41 at offset 2', 1, true), err)\n"
    "ok, err = pcall(slip.decode, 'ab\\219')\n"
    "assert(not ok and err:find('truncated escape', 1, true), err)\n"
    "ok, err = pcall(slip.decode, 'a\\192b')\n"
    "assert(not ok and err:find('unescaped 0xC0 at offset 1', 1, true), err)\n"
    /* every byte value survives, including long runs of the two special bytes */
    "local t = {} for i = 0, 255 do t[#t+1] = string.char(i) end\n"
    "local all = table.concat(t) .. string.rep('\\192', 300) .. string.rep('\\219', 300)\n"
    "assert(slip.decode(slip.encode(all)) == all)\n";

/* A fake port: serves `data` in pieces of `chunk` bytes, records unread and written bytes. */
static const char *const fakeport =
    "function fakeport(data, chunk)\n"
    "  local p = {name = 'fake', data = data, chunk = chunk or 1e9, written = {}, reads = 0}\n"
    "  function p:read(n, timeout)\n"
    "    assert(math.type(n) == 'integer' and timeout >= 0)\n"
    "    self.reads = self.reads + 1\n"
    "    local k = math.min(n, self.chunk)\n"
    "    local s = self.data:sub(1, k); self.data = self.data:sub(k + 1); return s\n"
    "  end\n"
    "  function p:unread(s) self.data = s .. self.data end\n"
    "  function p:write(s) self.written[#self.written+1] = s; return #s end\n"
    "  return p\n"
    "end\n";

static const char *const reading =
    "local slip = require('mpctl.slip')\n"
    "local p = fakeport('boot log\\r\\n\\192\\192\\192ab\\219\\220\\192\\192cd\\192tail', 3)\n"
    "assert(slip.read_frame(p, 1) == 'ab\\192')\n"
    "assert(slip.read_frame(p, 1) == 'cd')\n"
    "assert(p.data == 'tail', p.data)\n"
    /* big frame in one read: the rest is unread at once */
    "local big = string.rep('\\192\\1\\219', 6000)\n"
    "p = fakeport(slip.encode(big) .. slip.encode('next'))\n"
    "assert(slip.read_frame(p, 1) == big)\n"
    "assert(p.data == '\\192next\\192')\n"
    "assert(slip.read_frame(p, 1) == 'next' and p.data == '')\n"
    /* timeout before a frame start: says so and shows what was seen */
    "p = fakeport('garbage', 4)\n"
    "local ok, err = pcall(slip.read_frame, p, 0)\n"
    "assert(not ok and err:find('on fake: timeout', 1, true) and err:find('frame start', 1, true)\n"
    "       and err:find('garb', 1, true), err)\n"
    "p = fakeport('\\192abc\\1')\n"
    "ok, err = pcall(slip.read_frame, p, 0)\n"
    "assert(not ok and err:find('end of a frame (4 payload bytes so far)', 1, true)\n"
    "       and err:find('abc\\\\x01', 1, true), err)\n"
    /* bad escape names the byte; the bytes after it stay readable */
    "p = fakeport('\\192ab\\219\\90cd\\192\\192ok\\192')\n"
    "ok, err = pcall(slip.read_frame, p, 1)\n"
    "assert(not ok and err:find('bad escape 0xDB 0x5A at payload offset 2', 1, true), err)\n"
    "assert(p.data == 'cd\\192\\192ok\\192', p.data)\n"
    "assert(slip.read_frame(p, 1) == 'ok')\n"
    /* a port at EOF fails at once rather than spinning until the deadline */
    "p = fakeport('\\192ab'); p.is_eof = function() return true end\n"
    "ok, err = pcall(slip.read_frame, p, 30)\n"
    "assert(not ok and err:find('closed by the peer in the middle of a frame', 1, true), err)\n"
    /* a port that never stops sending noise still times out */
    "local spew = {name = 'spew', read = function() return 'noise' end, unread = function() end}\n"
    "ok, err = pcall(slip.read_frame, spew, 0.05)\n"
    "assert(not ok and err:find('waiting for a frame start', 1, true) and err:find('noise', 1, true), err)\n"
    "local first = true\n"
    "spew.read = function() local s = first and 'x\\192yyyy' or 'yyyy'; first = false; return s end\n"
    "ok, err = pcall(slip.read_frame, spew, 30, 100)\n"
    "assert(not ok and err:find('frame longer than 100 bytes', 1, true), err)\n"
    /* the bound also holds for a frame that ends within the one chunk read */
    "p = fakeport(slip.encode(string.rep('a', 50)) .. slip.encode('ok'))\n"
    "ok, err = pcall(slip.read_frame, p, 1, 10)\n"
    "assert(not ok and err:find('frame longer than 10 bytes (50 bytes to its end)', 1, true), err)\n"
    "assert(slip.read_frame(p, 1) == 'ok', 'the bytes after the long frame stay in the port')\n"
    /* write_frame */
    "p = fakeport('')\n"
    "assert(slip.write_frame(p, '\\192') == 4 and p.written[1] == '\\192\\219\\220\\192')\n";

static const char *const decoder =
    "local slip = require('mpctl.slip')\n"
    "local d = slip.decoder()\n"
    "local stream = 'junk\\192\\192' .. slip.encode('one\\219') .. slip.encode('\\192two')\n"
    "       .. '\\192x\\219\\1y\\192' .. slip.encode('three')\n"
    "local got, errs = {}, {}\n"
    "for i = 1, #stream do\n"
    "  local frames, e = d:feed(stream:sub(i, i))\n"
    "  for _, f in ipairs(frames) do got[#got+1] = f end\n"
    "  for _, m in ipairs(e or {}) do errs[#errs+1] = m end\n"
    "end\n"
    "assert(#got == 3 and got[1] == 'one\\219' and got[2] == '\\192two' and got[3] == 'three')\n"
    "assert(#errs == 1 and errs[1]:find('0xDB 0x01 at payload offset 1', 1, true), errs[1])\n"
    "local frames = d:feed(slip.encode('a') .. slip.encode('b') .. '\\192par')\n"
    "assert(#frames == 2 and frames[2] == 'b' and d:pending() == 3)\n"
    "frames = d:feed('t\\192')\n"
    "assert(#frames == 1 and frames[1] == 'part' and d:pending() == 0)\n"
    "assert(tostring(d):find('mpctl.slip_decoder', 1, true))\n"
    "d = slip.decoder(8)\n"
    "local f1, e1 = d:feed('\\192' .. string.rep('z', 20))\n"
    "assert(#f1 == 0 and e1[1]:find('frame longer than 8 bytes', 1, true), e1 and e1[1])\n"
    "f1, e1 = d:feed('tail\\192' .. slip.encode('short'))\n"
    "assert(#f1 == 1 and f1[1] == 'short' and e1 == nil)\n"
    /* a long frame that ends within one feed is dropped too */
    "f1, e1 = d:feed(slip.encode(string.rep('z', 20)) .. slip.encode('short'))\n"
    "assert(#f1 == 1 and f1[1] == 'short' and e1 and e1[1]:find('frame longer than 8 bytes', 1, true))\n";

int main(void)
{
    lua_State *L = nt_state();
    nt_lua(L, "codec", codec);
    nt_lua(L, "fakeport", fakeport);
    nt_lua(L, "read_frame", reading);
    nt_lua(L, "decoder", decoder);
    return nt_finish(L, "test_slip");
}
