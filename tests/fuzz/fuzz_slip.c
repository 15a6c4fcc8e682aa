/* libFuzzer harness for the SLIP codec in src/lslip.c, through its Lua API (the parser is
 * internal to the module): slip.decode, slip.decoder(max):feed and slip.encode. Properties
 * checked on every input, beyond "no crash, no sanitizer report":
 *   - a decoder gives the same frames for the same bytes fed whole or split (issue 8), for a
 *     max and a split point the input chooses;
 *   - no frame it returns is longer than max;
 *   - decode(encode(x)) == x; decode of arbitrary bytes either returns or raises, never crashes.
 * Input layout: byte 0 -> max (1..64), byte 1 -> split point, the rest -> the stream. */
#include "mpctl.h"

#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static lua_State *L; /* one state for the whole run: building one per input would dominate */

static const char CHECK[] =
    "local slip = require('mpctl.slip')\n"
    "local function frames(chunks, max)\n"
    "  local d = slip.decoder(max)\n"
    "  local out = {}\n"
    "  for _, c in ipairs(chunks) do\n"
    "    for _, f in ipairs((d:feed(c))) do\n"
    "      if #f > max then error('frame longer than max') end\n"
    "      out[#out + 1] = f\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "return function(data)\n"
    "  if #data < 2 then return end\n"
    "  local max = data:byte(1) % 64 + 1\n"
    "  local body = data:sub(3)\n"
    "  local cut = data:byte(2) % (#body + 1)\n"
    "  local a = frames({ body }, max)\n"
    "  local b = frames({ body:sub(1, cut), body:sub(cut + 1) }, max)\n"
    "  if #a ~= #b then error('whole and split give different frame counts') end\n"
    "  for i = 1, #a do if a[i] ~= b[i] then error('frame ' .. i .. ' differs whole/split') end end\n"
    "  if slip.decode(slip.encode(body):sub(2, -2)) ~= body then error('decode(encode(x)) ~= x') end\n"
    "  pcall(slip.decode, body)\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void init(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "mpctl.slip", luaopen_mpctl_slip, 0);
    lua_pop(L, 1);
    if (luaL_loadstring(L, CHECK) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_slip: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.check");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (L == NULL)
        init();
    lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.check");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_slip: %s\n", luaL_tolstring(L, -1, NULL));
        abort();
    }
    lua_settop(L, 0);
    return 0;
}
