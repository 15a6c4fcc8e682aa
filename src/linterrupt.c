/* mpctl.interrupt: the Lua face of src/interrupt.c (signals -> `interrupted` errors) and the
 * shared error metatable. Used by lua/mpctl/errors.lua (errors.shield, errors.Error) and by the
 * CLI's error report; recipes use mpctl.errors, not this module.
 *
 *   interrupt.hold(); interrupt.release()   -- errors.shield's bracket (nests)
 *   interrupt.pending() -> signal number or nil (a signal received and not yet acknowledged)
 *   interrupt.delivered() -> signal number or nil (raised as an error at least once)
 *   interrupt.check()                       -- raise `interrupted` now if one is due
 *   interrupt.acknowledge()                 -- the CLI reported it: stop re-raising
 *   interrupt.Error                         -- the error metatable (registry "mpctl.error")
 *   interrupt.new_error(kind, where, detail) -> e   -- as C's mpctl_push_error
 *   interrupt.arm()                         -- the running coroutine checks for interrupts */
#include "mpctl.h"

static int l_hold(lua_State *L)
{
    mpctl_interrupt_hold(L, 1);
    return 0;
}

static int l_release(lua_State *L)
{
    mpctl_interrupt_hold(L, -1);
    return 0;
}

static int push_signo(lua_State *L, int signo)
{
    if (signo)
        lua_pushinteger(L, signo);
    else
        lua_pushnil(L);
    return 1;
}

static int l_pending(lua_State *L)
{
    return push_signo(L, mpctl_interrupt_pending());
}

static int l_delivered(lua_State *L)
{
    return push_signo(L, mpctl_interrupt_delivered(L));
}

static int l_check(lua_State *L)
{
    mpctl_check_interrupt(L);
    return 0;
}

static int l_acknowledge(lua_State *L)
{
    mpctl_interrupt_acknowledge(L);
    return 0;
}

static int l_new_error(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const char *where = luaL_optstring(L, 2, NULL);
    const char *detail = luaL_checkstring(L, 3);
    mpctl_push_error(L, kind, where, detail);
    return 1;
}

int luaopen_mpctl_interrupt(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"hold", l_hold},
        {"release", l_release},
        {"pending", l_pending},
        {"delivered", l_delivered},
        {"check", l_check},
        {"acknowledge", l_acknowledge},
        {"new_error", l_new_error},
        {"arm", mpctl_interrupt_arm},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    mpctl_error_metatable(L);
    lua_setfield(L, -2, "Error");
    return 1;
}
