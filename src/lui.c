/* mpctl.ui: what the person (or the CI job) sees. Logs with levels to stderr, colour only on a
 * tty and never with NO_COLOR (https://no-color.org), one progress bar line on a tty, and with
 * --json one JSON object per line on stdout instead, for logs, progress and events.
 *
 * Configuration lives in a userdata in the Lua registry (one per Lua state), not in C globals.
 * JSON conventions (ui.null, ui.array) are documented in ui_json.h. */
#include "mpctl.h"
#include "ui_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define CONF_KEY "mpctl.ui.conf"
#define CONF_MT "mpctl.ui_conf"
#define PROGRESS_MT "mpctl.progress"
#define TTYS_KEY "mpctl.ui.ttys"
#define SAVED_TTY_MT "mpctl.ui_saved_tty"

#define REDRAW_INTERVAL 0.1 /* s between bar redraws */
#define JSON_INTERVAL 0.5   /* s between progress events in --json mode */

enum level { LV_ERROR, LV_WARN, LV_INFO, LV_VERBOSE, LV_DEBUG };
static const char *const level_names[] = {"error", "warn", "info", "verbose", "debug", NULL};

struct conf {
    int level; /* messages at or below this level are shown */
    int json;
    int color;       /* -1 auto, 0 off, 1 on */
    const void *bar; /* progress object whose line is on screen, or NULL */
    char barline[512];
};

static struct conf *get_conf(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, CONF_KEY) == LUA_TUSERDATA) {
        struct conf *c = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return c;
    }
    lua_pop(L, 1);
    struct conf *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->level = LV_INFO;
    c->color = -1;
    lua_setfield(L, LUA_REGISTRYINDEX, CONF_KEY);
    return c;
}

static int use_color(const struct conf *c)
{
    if (c->color >= 0)
        return c->color;
    const char *no = getenv("NO_COLOR");
    const char *term = getenv("TERM");
    return isatty(2) && !(no && *no) && !(term && strcmp(term, "dumb") == 0);
}

/* ---- output ------------------------------------------------------------------------------ */

static void json_line(lua_State *L, int idx)
{
    ui_json_encode(L, idx, 0);
    fputs(lua_tostring(L, -1), stdout);
    fputc('\n', stdout);
    fflush(stdout);
    lua_pop(L, 1);
}

static void bar_clear(struct conf *c)
{
    if (c->bar) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

static void bar_restore(struct conf *c)
{
    if (c->bar) {
        fputs(c->barline, stderr);
        fflush(stderr);
    }
}

static void emit_log(lua_State *L, struct conf *c, int level, const char *msg)
{
    if (level > c->level)
        return;
    if (c->json) {
        lua_createtable(L, 0, 3);
        lua_pushliteral(L, "log");
        lua_setfield(L, -2, "event");
        lua_pushstring(L, level_names[level]);
        lua_setfield(L, -2, "level");
        lua_pushstring(L, msg);
        lua_setfield(L, -2, "msg");
        json_line(L, -1);
        lua_pop(L, 1);
        return;
    }
    int color = use_color(c);
    static const char *const plain_prefix[] = {"error: ", "warning: ", "", "", "debug: "};
    static const char *const color_prefix[] = {"\033[1;31merror:\033[0m ", "\033[1;33mwarning:\033[0m ", "", "",
                                               "\033[2mdebug: "};
    bar_clear(c);
    fputs(color ? color_prefix[level] : plain_prefix[level], stderr);
    fputs(msg, stderr);
    if (color && level == LV_DEBUG)
        fputs("\033[0m", stderr);
    fputc('\n', stderr);
    bar_restore(c);
    fflush(stderr);
}

/* ui.log(level, fmt, ...): string.format(fmt, ...) when arguments follow, else fmt as is */
static int u_log(lua_State *L)
{
    int level = luaL_checkoption(L, 1, NULL, level_names);
    struct conf *c = get_conf(L);
    if (level > c->level)
        return 0;
    const char *msg;
    if (lua_gettop(L) > 2) {
        luaL_checkstring(L, 2);
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_getfield(L, -1, "string");
        lua_remove(L, -2);
        lua_getfield(L, -1, "format");
        lua_remove(L, -2);
        lua_rotate(L, 2, 1); /* string.format just before fmt */
        lua_call(L, lua_gettop(L) - 2, 1);
        msg = lua_tostring(L, -1);
    } else {
        msg = luaL_tolstring(L, 2, NULL);
    }
    emit_log(L, c, level, msg);
    return 0;
}

/* ui.event(table): one JSON line on stdout in --json mode, nothing otherwise */
static int u_event(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (get_conf(L)->json)
        json_line(L, 1);
    return 0;
}

/* ui.configure{level=, json=, color=true|false|"auto"} */
static int u_configure(lua_State *L)
{
    static const char *const configure_levels[] = {"error", "warn", "info", "verbose", "debug", "quiet", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    struct conf *c = get_conf(L);
    if (lua_getfield(L, 1, "level") != LUA_TNIL) {
        int lv = luaL_checkoption(L, -1, NULL, configure_levels);
        c->level = lv == 5 ? LV_WARN : lv;
    }
    if (lua_getfield(L, 1, "json") != LUA_TNIL)
        c->json = lua_toboolean(L, -1);
    int t = lua_getfield(L, 1, "color");
    if (t == LUA_TBOOLEAN)
        c->color = lua_toboolean(L, -1);
    else if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0)
        c->color = -1;
    else if (t != LUA_TNIL)
        return luaL_error(L, "ui.configure: color must be true, false or \"auto\"");
    return 0;
}

/* ui.config() -> {level=, json=, color=} with colour as it is in effect now */
static int u_config(lua_State *L)
{
    struct conf *c = get_conf(L);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, level_names[c->level]);
    lua_setfield(L, -2, "level");
    lua_pushboolean(L, c->json);
    lua_setfield(L, -2, "json");
    lua_pushboolean(L, use_color(c));
    lua_setfield(L, -2, "color");
    return 1;
}

static int u_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
    return 1;
}

/* ---- progress ---------------------------------------------------------------------------- */

enum pmode { P_PLAIN, P_BAR, P_JSON };

struct progress {
    enum pmode mode;
    double total; /* 0 = unknown */
    double done;
    double start, last;
    int finished;
};

static void fmt_size(char *out, size_t n, double v)
{
    if (v < 1024)
        snprintf(out, n, "%.0f B", v);
    else if (v < 1024.0 * 1024)
        snprintf(out, n, "%.1f KiB", v / 1024);
    else if (v < 1024.0 * 1024 * 1024)
        snprintf(out, n, "%.1f MiB", v / (1024.0 * 1024));
    else
        snprintf(out, n, "%.2f GiB", v / (1024.0 * 1024 * 1024));
}

static void fmt_duration(char *out, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

static int term_cols(void)
{
    struct winsize ws;
    if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static void draw_bar(struct conf *c, const struct progress *p, const char *label)
{
    char done[32], total[32], rate[32] = "", eta[32] = "", right[160];
    double elapsed = mpctl_now() - p->start;
    double r = elapsed > 0.2 ? p->done / elapsed : 0;
    fmt_size(done, sizeof done, p->done);
    if (r > 0) {
        fmt_size(rate, sizeof rate, r);
        strcat(rate, "/s");
    }
    if (p->total > 0) {
        fmt_size(total, sizeof total, p->total);
        if (r > 0 && p->done < p->total) {
            char d[24];
            fmt_duration(d, sizeof d, (p->total - p->done) / r);
            snprintf(eta, sizeof eta, "ETA %s", d);
        }
        double pct = 100.0 * p->done / p->total;
        /* fixed-width fields, so the bar does not change length as the numbers grow */
        snprintf(right, sizeof right, " %3.0f%% %10s / %-10s %12s %-9s", pct > 100 ? 100 : pct, done, total, rate,
                 eta);
    } else {
        snprintf(right, sizeof right, " %10s %12s", done, rate);
    }
    int cols = term_cols() - 1; /* never touch the last column: some terminals wrap */
    int lab = (int)strlen(label);
    if (lab > 24)
        lab = 24;
    int width = cols - lab - (int)strlen(right) - 3;
    char line[sizeof c->barline];
    int pos = snprintf(line, sizeof line, "\r%.*s ", lab, label);
    if (p->total > 0 && width >= 5) {
        if (width > 60)
            width = 60;
        int fill = (int)(width * (p->done / p->total));
        if (fill > width)
            fill = width;
        line[pos++] = '[';
        for (int i = 0; i < width; i++)
            line[pos++] = i < fill ? '#' : '-';
        line[pos++] = ']';
        line[pos] = '\0';
    }
    snprintf(line + pos, sizeof line - (size_t)pos, "%.*s\033[K", cols > lab ? cols - lab - 1 : 0, right);
    memcpy(c->barline, line, sizeof line);
    c->bar = p;
    fputs(c->barline, stderr);
    fflush(stderr);
}

static void progress_json(lua_State *L, const struct progress *p, int label_idx, const char *summary)
{
    lua_createtable(L, 0, 8);
    lua_pushliteral(L, "progress");
    lua_setfield(L, -2, "event");
    lua_getiuservalue(L, label_idx, 1);
    lua_setfield(L, -2, "label");
    lua_pushinteger(L, (lua_Integer)p->done);
    lua_setfield(L, -2, "done");
    if (p->total > 0) {
        lua_pushinteger(L, (lua_Integer)p->total);
        lua_setfield(L, -2, "total");
    }
    double elapsed = mpctl_now() - p->start;
    lua_pushnumber(L, (lua_Number)((long long)(elapsed * 1000)) / 1000);
    lua_setfield(L, -2, "seconds");
    if (p->finished) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "finished");
        if (summary) {
            lua_pushstring(L, summary);
            lua_setfield(L, -2, "summary");
        }
    }
    json_line(L, -1);
    lua_pop(L, 1);
}

/* A byte count argument: finite and exact as a double, so that the JSON events' integer
 * conversion is defined (NaN or math.huge would be undefined behaviour there). */
static double check_count(lua_State *L, int idx)
{
    double v = luaL_checknumber(L, idx);
    luaL_argcheck(L, v == v && v > -9007199254740992.0 && v < 9007199254740992.0, idx,
                  "byte count must be a finite number below 2^53");
    return v;
}

/* ui.progress(label[, total]) -> p; total may be nil or 0 when unknown (sizes in bytes) */
static int u_progress(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_Number total = lua_isnoneornil(L, 2) ? 0 : check_count(L, 2);
    struct conf *c = get_conf(L);
    struct progress *p = lua_newuserdatauv(L, sizeof *p, 1);
    memset(p, 0, sizeof *p);
    p->total = total > 0 ? total : 0;
    p->start = mpctl_now();
    p->last = -1e9; /* the first update draws at once */
    const char *term = getenv("TERM");
    if (c->json)
        p->mode = P_JSON;
    else if (isatty(2) && c->level >= LV_INFO && !(term && strcmp(term, "dumb") == 0))
        p->mode = P_BAR;
    else
        p->mode = P_PLAIN;
    luaL_setmetatable(L, PROGRESS_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    if (p->mode == P_JSON)
        progress_json(L, p, lua_gettop(L), NULL);
    return 1;
}

static struct progress *check_progress(lua_State *L)
{
    return luaL_checkudata(L, 1, PROGRESS_MT);
}

static void progress_tick(lua_State *L, struct progress *p, int force)
{
    if (p->finished)
        return;
    double now = mpctl_now();
    if (p->mode == P_BAR && (force || now - p->last >= REDRAW_INTERVAL)) {
        lua_getiuservalue(L, 1, 1);
        draw_bar(get_conf(L), p, lua_tostring(L, -1));
        lua_pop(L, 1);
        p->last = now;
    } else if (p->mode == P_JSON && (force || now - p->last >= JSON_INTERVAL)) {
        progress_json(L, p, 1, NULL);
        p->last = now;
    }
}

/* p:update(done[, total]) -> p */
static int pm_update(lua_State *L)
{
    struct progress *p = check_progress(L);
    p->done = check_count(L, 2);
    if (!lua_isnoneornil(L, 3))
        p->total = check_count(L, 3);
    progress_tick(L, p, 0);
    lua_settop(L, 1);
    return 1;
}

/* p:add(n) -> p */
static int pm_add(lua_State *L)
{
    struct progress *p = check_progress(L);
    p->done += check_count(L, 2);
    progress_tick(L, p, 0);
    lua_settop(L, 1);
    return 1;
}

static void bar_release(lua_State *L, struct progress *p)
{
    struct conf *c = get_conf(L);
    if (c->bar == p) {
        bar_clear(c);
        c->bar = NULL;
    }
}

/* p:finish([summary]): replaces the bar with one line "label: summary" (default: size, time,
 * rate) at info level; in --json mode a last progress event with finished=true. */
static int pm_finish(lua_State *L)
{
    struct progress *p = check_progress(L);
    const char *summary = luaL_optstring(L, 2, NULL);
    if (p->finished)
        return 0;
    p->finished = 1;
    if (p->mode == P_JSON) {
        progress_json(L, p, 1, summary);
        return 0;
    }
    bar_release(L, p);
    double elapsed = mpctl_now() - p->start;
    char line[256];
    if (summary == NULL) {
        char size[32], rate[32] = "";
        fmt_size(size, sizeof size, p->done);
        if (elapsed > 0.05) {
            fmt_size(rate, sizeof rate, p->done / elapsed);
            strcat(rate, "/s");
        }
        snprintf(line, sizeof line, "%s in %.1f s%s%s%s", size, elapsed, *rate ? " (" : "", rate, *rate ? ")" : "");
        summary = line;
    }
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), summary);
    emit_log(L, get_conf(L), LV_INFO, lua_tostring(L, -1));
    return 0;
}

/* __gc/__close: an abandoned bar (an error or Ctrl-C unwinding) is ended with a newline where
 * it stopped, so the error prints on a line of its own below the last state shown. */
static int pm_gc(lua_State *L)
{
    struct progress *p = check_progress(L);
    if (!p->finished) {
        p->finished = 1;
        struct conf *c = get_conf(L);
        if (p->mode == P_BAR && c->bar == p) {
            fputc('\n', stderr);
            fflush(stderr);
            c->bar = NULL;
        }
    }
    return 0;
}

/* ui.finish_progress(): a bar still on screen (an error or Ctrl-C ended its work) is ended with
 * a newline where it stopped, so the last state stays visible above the error message. */
static int u_finish_progress(lua_State *L)
{
    struct conf *c = get_conf(L);
    if (c->bar) {
        fputc('\n', stderr);
        fflush(stderr);
        c->bar = NULL;
    }
    return 0;
}

static int pm_tostring(lua_State *L)
{
    struct progress *p = check_progress(L);
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "mpctl.progress %s (%I/%I%s)", lua_tostring(L, -1), (lua_Integer)p->done, (lua_Integer)p->total,
                    p->finished ? ", finished" : "");
    return 1;
}

/* ---- terminal raw mode ------------------------------------------------------------------- */

struct saved_tty {
    int fd;
    int active;
    struct termios t;
};

static int saved_tty_restore(lua_State *L)
{
    struct saved_tty *s = luaL_checkudata(L, 1, SAVED_TTY_MT);
    if (s->active) {
        tcsetattr(s->fd, TCSAFLUSH, &s->t);
        s->active = 0;
    }
    return 0;
}

/* ui.raw_mode(fd, on) -> true on a change; the original settings are kept in the registry
 * and restored by raw_mode(fd, false) or, failing that, when the Lua state closes. Output
 * post-processing stays as it was so log lines printed meanwhile still start at column 0. */
static int u_raw_mode(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    int on = lua_toboolean(L, 2);
    if (lua_getfield(L, LUA_REGISTRYINDEX, TTYS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, TTYS_KEY);
    }
    int ttys = lua_gettop(L);
    lua_rawgeti(L, ttys, fd);
    struct saved_tty *s = luaL_testudata(L, -1, SAVED_TTY_MT);
    if (!on) {
        if (s == NULL || !s->active) {
            lua_pushboolean(L, 0);
            return 1;
        }
        int rc = tcsetattr(fd, TCSAFLUSH, &s->t);
        s->active = 0;
        lua_pushnil(L);
        lua_rawseti(L, ttys, fd);
        if (rc < 0)
            return mpctl_raise(L, "io", NULL, "ui.raw_mode(%d, false): %s", fd, strerror(errno));
        lua_pushboolean(L, 1);
        return 1;
    }
    struct termios cur;
    if (tcgetattr(fd, &cur) < 0)
        return mpctl_raise(L, errno == ENOTTY ? "unsupported" : "io", NULL, "ui.raw_mode(%d): %s", fd, errno == ENOTTY ? "not a terminal" : strerror(errno));
    if (s == NULL || !s->active) {
        s = lua_newuserdatauv(L, sizeof *s, 0);
        s->fd = fd;
        s->t = cur;
        s->active = 1;
        luaL_setmetatable(L, SAVED_TTY_MT);
        lua_rawseti(L, ttys, fd);
    }
    struct termios raw = cur;
    cfmakeraw(&raw);
    raw.c_oflag = s->t.c_oflag;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSAFLUSH, &raw) < 0)
        return mpctl_raise(L, "io", NULL, "ui.raw_mode(%d): %s", fd, strerror(errno));
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

/* ui.json_encode(value[, pretty]) -> string; pretty may be true or {pretty=true} */
static int u_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    int pretty = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "pretty");
        pretty = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else {
        pretty = lua_toboolean(L, 2);
    }
    ui_json_encode(L, 1, pretty);
    return 1;
}

static int u_json_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    ui_json_decode(L, s, n);
    return 1;
}

/* ui.array(t) -> t, marked to encode as a JSON array even when empty */
static int u_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    ui_json_push_array_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

int luaopen_mpctl_ui(lua_State *L)
{
    static const luaL_Reg pmethods[] = {
        {"update", pm_update},
        {"add", pm_add},
        {"finish", pm_finish},
        {NULL, NULL},
    };
    static const luaL_Reg pmeta[] = {
        {"__gc", pm_gc},
        {"__close", pm_gc},
        {"__tostring", pm_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"configure", u_configure},
        {"config", u_config},
        {"log", u_log},
        {"event", u_event},
        {"progress", u_progress},
        {"finish_progress", u_finish_progress},
        {"isatty", u_isatty},
        {"raw_mode", u_raw_mode},
        {"json_encode", u_json_encode},
        {"json_decode", u_json_decode},
        {"array", u_array},
        {NULL, NULL},
    };
    mpctl_new_class(L, PROGRESS_MT, pmeta, pmethods);
    if (luaL_newmetatable(L, SAVED_TTY_MT)) {
        lua_pushcfunction(L, saved_tty_restore);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    ui_json_push_array_mt(L);
    lua_pop(L, 1);
    get_conf(L);
    luaL_newlib(L, fns);
    ui_json_push_null(L);
    lua_setfield(L, -2, "null");
    return 1;
}
