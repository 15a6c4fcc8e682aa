/* mpctl.time: monotonic clock, sleep, wall clock and ISO 8601 timestamps. */
#include "mpctl.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

static int t_now(lua_State *L)
{
    lua_pushnumber(L, mpctl_now());
    return 1;
}

/* Sleeps the whole time: a SIGCHLD or SIGWINCH arriving mid-sleep does not cut protocol delays
 * (reset pulses) short; only SIGINT/SIGTERM/SIGHUP end it, with an `interrupted` error. */
static int t_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s == s, 1, "sleep: NaN seconds");
    if (s <= 0)
        return 0;
    luaL_argcheck(L, s < 1e9, 1, "sleep: too long");
    mpctl_sleep_l(L, (double)s); /* a signal ends it with an `interrupted` error */
    return 0;
}

static int t_wall(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* UTC, whole seconds: the form used in history records and JSON events. */
static int t_iso(lua_State *L)
{
    lua_Number e;
    if (lua_isnoneornil(L, 1)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        e = (lua_Number)ts.tv_sec;
    } else {
        e = luaL_checknumber(L, 1);
    }
    luaL_argcheck(L, e == e && fabs(e) < 1e15, 1, "time.iso: epoch out of range");
    time_t t = (time_t)floor(e);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return luaL_error(L, "time.iso(%f): cannot convert", (double)e);
    char buf[64];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    lua_pushstring(L, buf);
    return 1;
}

int luaopen_mpctl_time(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"now", t_now},
        {"sleep", t_sleep},
        {"wall", t_wall},
        {"iso", t_iso},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
