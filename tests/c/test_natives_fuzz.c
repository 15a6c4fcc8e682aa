/* Random and mutated inputs through the native parsers (SLIP decode and decoder, zlib inflate,
 * JSON decode): they may raise, but must never crash, hang or touch memory they do not own
 * (this runs under ASan+UBSan in the sanitizer build). Deterministic: fixed seeds. */
#include "nativetest.h"

static const char *const fuzz =
    "local slip, zlib, ui = require('mpctl.slip'), require('mpctl.zlib'), require('mpctl.ui')\n"
    "local x = 12345\n"
    "local function rnd(n) x = (x * 1103515245 + 12345) % 2147483648; return x % n end\n"
    "local alphabet = {'\\192', '\\219', '\\220', '\\221', 'a', '\\0', '{', '}', '[', ']', '\"', ':', ',',\n"
    "                  '1', '-', 'e', '.', 'n', 't', '\\\\', 'u', ' ', '\\255'}\n"
    "local function noise(n)\n"
    "  local t = {}\n"
    "  for i = 1, n do t[i] = rnd(3) == 0 and string.char(rnd(256)) or alphabet[rnd(#alphabet) + 1] end\n"
    "  return table.concat(t)\n"
    "end\n"
    "local function mutate(s)\n"
    "  local b = {s:byte(1, -1)}\n"
    "  for _ = 1, 1 + rnd(4) do if #b > 0 then b[rnd(#b) + 1] = rnd(256) end end\n"
    "  if rnd(4) == 0 then for _ = 1, rnd(#b + 1) do table.remove(b) end end\n"
    "  return string.char(table.unpack(b))\n"
    "end\n"
    "local good_z = zlib.compress(string.rep('mpctl flashes boards ', 200), 9)\n"
    "local good_j = ui.json_encode({a = {1, 2, {b = 'c', d = ui.null}}, e = 'f\\195\\169', g = -1.5e10})\n"
    "local raised = 0\n"
    "for i = 1, 3000 do\n"
    "  local s = noise(rnd(200))\n"
    "  if not pcall(slip.decode, s) then raised = raised + 1 end\n"
    "  local d = slip.decoder(64)\n"
    "  for k = 1, #s, 7 do d:feed(s:sub(k, k + 6)) end\n"
    "  if not pcall(ui.json_decode, s) then raised = raised + 1 end\n"
    "  if not pcall(ui.json_decode, mutate(good_j)) then raised = raised + 1 end\n"
    "  local m = mutate(good_z)\n"
    "  pcall(zlib.decompress, m)\n"
    "  pcall(zlib.decompress, m, 4200)\n"
    "  pcall(zlib.inflate_raw, m:sub(3))\n"
    "  local z = zlib.inflater()\n"
    "  pcall(function() for k = 1, #m, 5 do z:feed(m:sub(k, k + 4)) end end)\n"
    "end\n"
    "assert(raised > 1000, 'the inputs exercise the error paths: ' .. raised)\n";

int main(void)
{
    lua_State *L = nt_state();
    nt_lua(L, "fuzz", fuzz);
    return nt_finish(L, "test_natives_fuzz");
}
