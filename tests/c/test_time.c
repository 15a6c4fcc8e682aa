/* mpctl.time: clock monotonicity, sleep arguments, ISO formatting of known epochs. */
#include "nativetest.h"

int main(void)
{
    lua_State *L = nt_state();
    nt_lua(L, "iso", "local t = require('mpctl.time')\n"
                     "assert(t.iso(0) == '1970-01-01T00:00:00Z', t.iso(0))\n"
                     "assert(t.iso(1795548300) == '2026-11-24T19:25:00Z', t.iso(1795548300))\n"
                     "assert(t.iso(1795548300.9) == '2026-11-24T19:25:00Z')\n"
                     "assert(#t.iso() == 20)\n"
                     "assert(not pcall(t.iso, 0/0))\n");
    nt_lua(L, "clock", "local t = require('mpctl.time')\n"
                       "local a = t.now(); t.sleep(0.01); local b = t.now()\n"
                       "assert(b >= a, 'monotonic')\n"
                       "t.sleep(0); t.sleep(-1)\n"
                       "assert(not pcall(t.sleep, 'x'))\n"
                       "assert(t.wall() > 1.7e9)\n");
    return nt_finish(L, "test_time");
}
