/* Tiny harness for C unit tests of the native modules: a Lua state with every mpctl.* module
 * preloaded, plus CHECK macros. Header-only so each tests/c/test_*.c stays one program. */
#ifndef NATIVETEST_H
#define NATIVETEST_H

#include "mpctl.h"

#include <dirent.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

static int nt_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            nt_failures++;                                                                         \
        }                                                                                          \
    } while (0)

/* nfds() -> descriptors this process has open (entries of /proc/self/fd, less opendir's own):
 * for checks that an error path closed what it opened. */
static inline int nt_nfds(lua_State *L)
{
    DIR *d = opendir("/proc/self/fd");
    lua_Integer n = 0;
    if (d) {
        while (readdir(d))
            n++;
        closedir(d);
    }
    lua_pushinteger(L, n - 3); /* ".", ".." and the directory's own fd */
    return 1;
}

/* A Lua state with every mpctl.* module preloaded and the global nfds(). */
static inline lua_State *nt_state(void)
{
    static const luaL_Reg mods[] = {
#define MPCTL_MODULE(name) {"mpctl." #name, luaopen_mpctl_##name},
#include "mpctl_modules.h"
#undef MPCTL_MODULE
        {NULL, NULL},
    };
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const luaL_Reg *m = mods; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 2);
    lua_register(L, "nfds", nt_nfds);
    return L;
}

static inline int nt_traceback(lua_State *L)
{
    luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
    return 1;
}

/* Run a chunk of Lua; a raised error (e.g. from assert) counts as a failure named `what`. */
static inline void nt_lua(lua_State *L, const char *what, const char *code)
{
    lua_pushcfunction(L, nt_traceback);
    if (luaL_loadbuffer(L, code, strlen(code), what) != LUA_OK ||
        lua_pcall(L, 0, 0, -2) != LUA_OK) {
        fprintf(stderr, "%s: %s\n", what, lua_tostring(L, -1));
        nt_failures++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static inline int nt_finish(lua_State *L, const char *name)
{
    lua_close(L);
    if (nt_failures)
        fprintf(stderr, "%s: %d failure(s)\n", name, nt_failures);
    else
        printf("%s: ok\n", name);
    return nt_failures ? 1 : 0;
}

#endif
