/* Small helpers shared by the native modules. */
#include "mpctl.h"

#include <errno.h>
#include <stdarg.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
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

/* ---- structured errors -------------------------------------------------------------------- */

static int error_tostring(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE && lua_getfield(L, 1, "msg") == LUA_TSTRING)
        return 1;
    lua_pushliteral(L, "error");
    return 1;
}

/* "prefix: " .. e and e .. " suffix": code written when errors were strings keeps working. */
static int error_concat(lua_State *L)
{
    luaL_tolstring(L, 1, NULL);
    luaL_tolstring(L, 2, NULL);
    lua_concat(L, 2);
    return 1;
}

static int error_len(lua_State *L)
{
    size_t n = 0;
    luaL_tolstring(L, 1, &n);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* e:find(...), e:match(...): string methods applied to msg, for the same reason as __concat.
 * New code reads e.kind instead. */
static int error_string_method(lua_State *L)
{
    luaL_tolstring(L, 1, NULL);
    lua_replace(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int error_index(lua_State *L)
{
    if (lua_getmetatable(L, 1) && lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TNIL && lua_tostring(L, 2)[0] != '_')
            return 1;
        lua_pop(L, 2);
        /* the host's string library, from the loaded table (not a global a recipe can replace) */
        static const char *const text_methods[] = {"find", "match", "gmatch", "gsub", "sub",
                                                   "lower", "upper", "len", NULL};
        const char *key = lua_tostring(L, 2);
        int known = 0;
        for (int i = 0; text_methods[i]; i++)
            known |= strcmp(key, text_methods[i]) == 0;
        if (!known) {
            lua_pushnil(L);
            return 1;
        }
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_getfield(L, -1, LUA_STRLIBNAME);
        if (lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, lua_tostring(L, 2)) == LUA_TFUNCTION) {
            lua_pushcclosure(L, error_string_method, 1);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

void mpctl_error_metatable(lua_State *L)
{
    if (luaL_newmetatable(L, MPCTL_ERROR_MT)) {
        static const luaL_Reg meta[] = {
            {"__tostring", error_tostring},
            {"__concat", error_concat},
            {"__len", error_len},
            {"__index", error_index},
            {NULL, NULL},
        };
        luaL_setfuncs(L, meta, 0);
    }
}

void mpctl_push_error(lua_State *L, const char *kind, const char *where, const char *detail)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    if (where) {
        lua_pushstring(L, where);
        lua_setfield(L, -2, "where");
    }
    lua_pushstring(L, detail);
    lua_setfield(L, -2, "detail");
    lua_pushstring(L, detail);
    lua_setfield(L, -2, "msg");
    mpctl_error_metatable(L);
    lua_setmetatable(L, -2);
}

int mpctl_raise(lua_State *L, const char *kind, const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *detail = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    mpctl_push_error(L, kind, where, detail);
    return lua_error(L);
}

int mpctl_raise_seen(lua_State *L, const char *kind, const char *where, const char *seen,
                     size_t seen_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *detail = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    mpctl_push_escaped(L, seen, seen_len, 64);
    const char *esc = lua_tostring(L, -1);
    mpctl_push_error(L, kind, where, detail);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "seen");
    lua_pushfstring(L, "%s; last bytes seen: \"%s\"", detail, esc);
    lua_setfield(L, -2, "msg");
    return lua_error(L);
}

const char *mpctl_errno_kind(int err)
{
    switch (err) {
    case ENOENT:
    case ENODEV:
    case ENXIO: return "not_found";
    case EACCES:
    case EPERM: return "access";
    case EBUSY: return "busy";
    case ETIMEDOUT: return "timeout";
    case EPIPE:
    case ECONNRESET: return "eof";
    case EINTR: return "interrupted";
    default: return "io";
    }
}
