/* mpctl.zlib: libdeflate output inflates with zlib and vice versa (a stream made by CPython's
 * zlib.compress), every level, sized and unsized decompress, raw deflate, the inflater fed one
 * byte at a time, and error messages for corrupt, truncated and trailing input. */
#include "nativetest.h"

static const char *const roundtrip =
    "local zlib = require('mpctl.zlib')\n"
    /* python3 -c \"import zlib; print(zlib.compress(b'hello hello hello hello', 9).hex())\" */
    "local py = '\\x78\\xda\\xcb\\x48\\xcd\\xc9\\xc9\\x57\\xc8\\x40\\x27\\x01\\x68\\x03\\x08\\xb1'\n"
    "assert(zlib.decompress(py) == 'hello hello hello hello')\n"
    "assert(zlib.decompress(py, 23) == 'hello hello hello hello')\n"
    "assert(zlib.inflate_raw('\\xcb\\x48\\xcd\\xc9\\xc9\\x57\\xc8\\x40\\x27\\x01') == 'hello hello hello hello')\n"
    "local t = {}\n"
    "for i = 1, 20000 do t[i] = string.char((i * 7919) % 251) .. (i % 3 == 0 and 'mpy' or '') end\n"
    "local data = table.concat(t) .. string.rep('\\255', 100000)\n"
    "local prev\n"
    "for level = 0, 12 do\n"
    "  local c = zlib.compress(data, level)\n"
    "  assert(c:byte(1) == 0x78, 'zlib header')\n"
    "  assert(zlib.decompress(c) == data, 'level ' .. level)\n"
    "  assert(zlib.decompress(c, #data) == data)\n"
    "  assert(zlib.inflate_raw(zlib.deflate_raw(data, level)) == data)\n"
    "  if level == 9 then assert(#c < #data / 3, 'compresses') end\n"
    "end\n"
    "assert(zlib.compress(data) == zlib.compress(data, 9))\n"
    "assert(zlib.decompress(zlib.compress('')) == '')\n"
    "assert(not pcall(zlib.compress, 'x', 13))\n";

static const char *const errors =
    "local zlib = require('mpctl.zlib')\n"
    "local c = zlib.compress(string.rep('abcdefgh', 1000))\n"
    "local ok, err = pcall(zlib.decompress, c:sub(1, 10))\n"
    "assert(not ok and err:find('truncated zlib stream: input ended after 10 bytes', 1, true), err)\n"
    "ok, err = pcall(zlib.decompress, '\\x78\\x00' .. c:sub(3))\n"
    "assert(not ok and err:find('corrupt zlib stream at input offset %d+: incorrect header check'), err)\n"
    "local bad = c:sub(1, 5) .. '\\255\\255\\255\\255' .. c:sub(10)\n"
    "ok, err = pcall(zlib.decompress, bad)\n"
    "assert(not ok and err:find('corrupt zlib stream at input offset', 1, true), err)\n"
    "ok, err = pcall(zlib.decompress, c .. 'xx')\n"
    "assert(not ok and err:find('2 bytes of trailing data after the end of the stream at input offset ' .. #c, 1, true), err)\n"
    "ok, err = pcall(zlib.decompress, c, 7999)\n"
    "assert(not ok and err:find('more than the expected 7999 bytes', 1, true), err)\n"
    "ok, err = pcall(zlib.decompress, c, 8001)\n"
    "assert(not ok and err:find('inflates to 8000 bytes, expected 8001', 1, true), err)\n"
    /* an impossible size (a bad length field) is refused without allocating it */
    "ok, err = pcall(zlib.decompress, c, 1 << 50)\n"
    "assert(not ok and err:find('inflates to 8000 bytes, expected ' .. (1 << 50), 1, true), err)\n"
    "ok, err = pcall(zlib.decompress, bad, 8000)\n"
    "assert(not ok and err:find('corrupt zlib stream at input offset', 1, true), err)\n"
    /* a corrupt raw block: BTYPE 11 is reserved */
    "ok, err = pcall(zlib.inflate_raw, '\\7\\0')\n"
    "assert(not ok and err:find('corrupt deflate stream at input offset %d+: invalid block type'), err)\n";

static const char *const inflater =
    "local zlib = require('mpctl.zlib')\n"
    "local data = {}\n"
    "for i = 1, 50000 do data[i] = tostring(i * i % 977) end\n"
    "data = table.concat(data, ',')\n"
    "local c = zlib.compress(data, 12)\n"
    "local z = zlib.inflater()\n"
    "local out, done = {}, false\n"
    "for i = 1, #c do\n"
    "  assert(not done, 'done before the last byte')\n"
    "  local o; o, done = z:feed(c:sub(i, i)); out[#out+1] = o\n"
    "end\n"
    "assert(done and z:done() and table.concat(out) == data)\n"
    "local tin, tout = z:totals(); assert(tin == #c and tout == #data)\n"
    "assert(z:unused() == '')\n"
    "local o2, d2 = z:feed('extra'); assert(o2 == '' and d2 == true and z:unused() == 'extra')\n"
    "assert(tostring(z):find('done', 1, true))\n"
    /* blocks of the size the ESP stub receives, stream end and trailing bytes in one feed */
    "z = zlib.inflater()\n"
    "out = {}\n"
    "local stream = c .. 'TAIL'\n"
    "for i = 1, #stream, 16384 do local o = z:feed(stream:sub(i, i + 16383)); out[#out+1] = o end\n"
    "assert(table.concat(out) == data and z:unused() == 'TAIL')\n"
    /* raw inflater, and an error naming the offset across feeds */
    "z = zlib.inflater(true)\n"
    "assert(z:feed(zlib.deflate_raw('xyz')) == 'xyz')\n"
    "z = zlib.inflater()\n"
    "assert(z:feed('\\120') == '')\n"
    "local ok, err = pcall(z.feed, z, '\\218\\7\\0')\n"
    "assert(not ok and err:find('zlib inflater: corrupt zlib stream at input offset [23]: invalid block type'), err)\n"
    "z:close(); ok, err = pcall(z.feed, z, 'x')\n"
    "assert(not ok and err:find('closed', 1, true))\n";

int main(void)
{
    lua_State *L = nt_state();
    nt_lua(L, "roundtrip", roundtrip);
    nt_lua(L, "errors", errors);
    nt_lua(L, "inflater", inflater);
    return nt_finish(L, "test_zlib");
}
