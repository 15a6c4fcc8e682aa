/* mpctl: the host. Creates the Lua state, registers the native modules, finds the Lua library
 * and hands the command line to lua/mpctl/cli.lua. Everything a user might change lives in Lua. */
#include "mpctl.h"

#include <lualib.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const luaL_Reg native_modules[] = {
#define MPCTL_MODULE(name) {"mpctl." #name, luaopen_mpctl_##name},
#include "mpctl_modules.h"
#undef MPCTL_MODULE
    {NULL, NULL},
};

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The data folder holding lua/, recipes/ and boards/: share/mpctl next to the binary when
 * installed (relocatable), else the source tree it was built from (a build tree runs without
 * installing), else the configured install prefix. */
static int has_library(const char *dir)
{
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/lua/mpctl", dir);
    return is_dir(probe);
}

static const char *data_dir(const char *exe, char *buf, size_t bufsize)
{
    const char *slash = strrchr(exe, '/');
    if (slash) {
        snprintf(buf, bufsize, "%.*s/../share/mpctl", (int)(slash - exe), exe);
        if (has_library(buf))
            return buf;
    }
    if (has_library(MPCTL_SOURCE_DIR))
        return MPCTL_SOURCE_DIR;
    if (has_library(MPCTL_INSTALL_DATADIR))
        return MPCTL_INSTALL_DATADIR;
    return NULL;
}

static void register_natives(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const luaL_Reg *m = native_modules; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 2);
}

/* package.path: each MPCTL_PATH folder's lua/ first, then the data dir's lua/. */
static void set_package_path(lua_State *L, const char *datadir)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *extra = getenv("MPCTL_PATH");
    if (extra && *extra) {
        char *copy = strdup(extra);
        for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
            lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", tok, tok);
            luaL_addvalue(&b);
        }
        free(copy);
    }
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua", datadir, datadir);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    lua_getglobal(L, "package");
    lua_insert(L, -2);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, ""); /* native code comes only from the binary itself */
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = luaL_tolstring(L, 1, NULL);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int run(lua_State *L, int argc, char **argv, const char *datadir, const char *exe)
{
    lua_pushstring(L, exe);
    lua_setfield(L, LUA_REGISTRYINDEX, MPCTL_REG_EXE);

    lua_newtable(L); /* info table handed to the CLI */
    lua_pushstring(L, MPCTL_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, datadir);
    lua_setfield(L, -2, "datadir");
    lua_pushstring(L, exe);
    lua_setfield(L, -2, "exe");
    lua_setfield(L, LUA_REGISTRYINDEX, "mpctl.info");

    lua_pushcfunction(L, traceback);
    int errfunc = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "mpctl.cli");
    if (lua_pcall(L, 1, 1, errfunc) != LUA_OK) {
        fprintf(stderr, "mpctl: cannot load the Lua library: %s\n", lua_tostring(L, -1));
        return 70;
    }
    lua_getfield(L, -1, "main");
    lua_newtable(L);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "mpctl.info");
    if (lua_pcall(L, 2, 1, errfunc) != LUA_OK) {
        if (mpctl_interrupt_delivered(L)) { /* raised while the CLI was reporting or starting */
            fprintf(stderr, "mpctl: interrupted\n");
            return 130;
        }
        fprintf(stderr, "mpctl: internal error: %s\n", lua_tostring(L, -1));
        return 70;
    }
    return (int)luaL_optinteger(L, -1, 0);
}

int main(int argc, char **argv)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        snprintf(exe, sizeof exe, "%s", argv[0]);
    else
        exe[n] = '\0';

    /* A peer hanging up on a socket must be an error return, not a silent death. */
    signal(SIGPIPE, SIG_IGN);

    char datadir_buf[PATH_MAX];
    const char *datadir = data_dir(exe, datadir_buf, sizeof datadir_buf);
    if (datadir == NULL) {
        fprintf(stderr, "mpctl: cannot find the Lua library (looked in %s and %s)\n",
                MPCTL_SOURCE_DIR, MPCTL_INSTALL_DATADIR);
        return 70;
    }
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "mpctl: out of memory\n");
        return 70;
    }
    luaL_openlibs(L);
    register_natives(L);
    set_package_path(L, datadir);
    /* Ctrl-C, SIGTERM, SIGHUP: an `interrupted` error in Lua, not a silent death (interrupt.c) */
    mpctl_interrupt_install(L);
    int rc = run(L, argc, argv, datadir, exe);
    mpctl_interrupt_uninstall(L);
    lua_close(L);
    return rc;
}
