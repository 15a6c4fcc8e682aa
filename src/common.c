/* Small helpers shared by the native modules. */
#include "mpctl.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

void mpctl_push_escaped(lua_State *L, const char *data, size_t len, size_t max)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t start = 0;
    if (len > max) {
        start = len - max;
        luaL_addstring(&b, "...");
    }
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        char tmp[8];
        switch (c) {
        case '\r': luaL_addstring(&b, "\\r"); break;
        case '\n': luaL_addstring(&b, "\\n"); break;
        case '\t': luaL_addstring(&b, "\\t"); break;
        case '\\': luaL_addstring(&b, "\\\\"); break;
        case '"': luaL_addstring(&b, "\\\""); break;
        default:
            if (c < 0x20 || c >= 0x7f) {
                snprintf(tmp, sizeof tmp, "\\x%02x", c);
                luaL_addstring(&b, tmp);
            } else {
                luaL_addchar(&b, (char)c);
            }
        }
    }
    luaL_pushresult(&b);
}

void mpctl_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    if (luaL_newmetatable(L, name)) {
        if (meta)
            luaL_setfuncs(L, meta, 0);
        if (methods) {
            lua_newtable(L);
            luaL_setfuncs(L, methods, 0);
            lua_setfield(L, -2, "__index");
        }
    }
    lua_pop(L, 1);
}

int mpctl_sleep(double seconds)
{
    if (!(seconds > 0))
        return 0; /* also NaN */
    if (seconds > 1e9)
        seconds = 1e9;
    struct timespec req, rem;
    req.tv_sec = (time_t)seconds;
    req.tv_nsec = (long)((seconds - (double)req.tv_sec) * 1e9);
    if (req.tv_nsec >= 1000000000L)
        req.tv_nsec = 999999999L;
    while (nanosleep(&req, &rem) != 0) {
        if (errno != EINTR)
            return errno;
        req = rem;
    }
    return 0;
}

double mpctl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
