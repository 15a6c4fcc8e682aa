/* mpctl.serial: serial ports for Lua (contract in docs/internals.md "mpctl.serial").
 * Local ttys, socket://, rfc2217:// (client), sim:// (a simulator child spoken to over RFC 2217)
 * and fd://; listeners for pty, socket:// and rfc2217:// (server side). These are the bindings:
 * the buffered port is in serial_io.c, and each transport is a backend (struct port_ops in
 * serial_port.h): raw (serial_io.c), ttys (serial_local.c), RFC 2217 (serial_rfc.c), sim://
 * (serial_sim.c); sockets are made in serial_net.c.
 *
 * Beyond the contract:
 *   port:caps() -> {signals=bool, baud=bool, kind="local"|"pty"|"socket"|"rfc2217"|"sim"|"fd"|
 *                   "rfc2217-server"}   -- signals=false: set_dtr/set_rts/set_signals are no-ops
 *   events carry pos = data bytes received before the event (to split data at a reset)
 *   on RFC 2217 server ports, read() also returns early and poll() reports the port when a
 *   control event arrives; accept()/listen("fd://N") wait up to 2 s (opts.settle) for the
 *   client's first SET-BAUDRATE so port:baud() starts at the client's rate
 *   rfc2217://HOST:PORT?ign_set_control&timeout=SECONDS (answer wait, default 1 s)
 *   opts.timeout: connect + negotiation time for socket:// and rfc2217:// (5 s), sim:// (10 s)
 *   listener.url; serial.listen("fd://N") without rfc2217 gives a raw port */
#include "serial_port.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT 1.0
#define CONNECT_TIMEOUT 5.0
#define SIM_START_TIMEOUT 10.0
#define SERVER_SETTLE 2.0 /* longest wait for a new RFC 2217 client's first SET-BAUDRATE */

/* ---- helpers ----------------------------------------------------------------------------- */

static struct port *push_port(lua_State *L)
{
    struct port *p = lua_newuserdatauv(L, sizeof *p, 0);
    port_init(p, -1, &port_raw_ops, "?", "fd");
    luaL_setmetatable(L, SERIAL_PORT_MT);
    return p;
}

static void name_port(struct port *p, const char *name, const char *label)
{
    free(p->name);
    p->name = strdup(name);
    p->label = label;
}

static size_t pending_events(const struct port *p)
{
    return p->ops->pending_events ? p->ops->pending_events(p) : 0;
}

static struct port *check_port(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SERIAL_PORT_MT);
}

static struct port *check_open(lua_State *L, int idx)
{
    struct port *p = check_port(L, idx);
    if (p->fd < 0)
        mpctl_raise(L, "io", p->name, "serial %s: port is closed", p->name);
    return p;
}

static double opt_timeout(lua_State *L, int idx, double def)
{
    double t = luaL_optnumber(L, idx, def);
    luaL_argcheck(L, t >= 0, idx, "timeout must be >= 0 seconds");
    return t;
}

static int opt_field_bool(lua_State *L, int idx, const char *key, int def)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return def;
    lua_getfield(L, idx, key);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static double opt_field_number(lua_State *L, int idx, const char *key, double def)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return def;
    lua_getfield(L, idx, key);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A wait that ended without what it waited for: kind eof (r < 0) or timeout, with the bytes
 * seen. The kind comes from how the wait ended, never from the text (a URL may hold "timeout"). */
static void raise_wait(lua_State *L, struct port *p, const char *what, int r, double timeout,
                       const char *detail)
{
    if (r < 0) {
        port_push_eof_reason(L, p);
    } else {
        char secs[32];
        snprintf(secs, sizeof secs, "%.1f", timeout);
        lua_pushfstring(L, "timeout after %s s", secs);
    }
    mpctl_raise_seen(L, r < 0 ? "eof" : "timeout", p->name, port_buf_ptr(&p->in), p->in.len, "%s on %s: %s%s",
                     what, p->name, lua_tostring(L, -1), detail);
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Wait for data; on the server side of RFC 2217 a control event (DTR, RTS, baud...) also ends
 * the wait, so a simulator reacts to a reset sequence at once rather than at its next timeout. */
static void fill_for_read(lua_State *L, struct port *p, double deadline)
{
    if (p->ops->pending_events == NULL) {
        port_fill(L, p, deadline);
        return;
    }
    size_t len = p->in.len, nev = pending_events(p);
    while (p->in.len == len && pending_events(p) == nev && port_fill_once(L, p, deadline) > 0) {
    }
}

static int port_read(lua_State *L)
{
    struct port *p = check_open(L, 1);
    lua_Integer n = luaL_optinteger(L, 2, 65536);
    double timeout = opt_timeout(L, 3, DEFAULT_TIMEOUT);
    luaL_argcheck(L, n >= 0, 2, "byte count must be >= 0");
    if (p->in.len < (size_t)n && !p->eof)
        fill_for_read(L, p, p->in.len > 0 ? mpctl_now() : mpctl_now() + timeout);
    size_t k = p->in.len < (size_t)n ? p->in.len : (size_t)n;
    lua_pushlstring(L, port_buf_ptr(&p->in), k);
    port_buf_consume(&p->in, k);
    return 1;
}

static int port_read_exact(lua_State *L)
{
    struct port *p = check_open(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    double timeout = opt_timeout(L, 3, DEFAULT_TIMEOUT);
    luaL_argcheck(L, n >= 0, 2, "byte count must be >= 0");
    double deadline = mpctl_now() + timeout;
    while (p->in.len < (size_t)n) {
        int r = port_fill(L, p, deadline);
        if (r <= 0) {
            lua_pushfstring(L, " wanting %d bytes, got %d", (int)n, (int)p->in.len);
            raise_wait(L, p, "read_exact", r, timeout, lua_tostring(L, -1));
        }
    }
    lua_pushlstring(L, port_buf_ptr(&p->in), (size_t)n);
    port_buf_consume(&p->in, (size_t)n);
    return 1;
}

/* Hand buffered bytes [0, n) to on_chunk (stack index 4) and drop them from the buffer. */
static void stream_chunk(lua_State *L, struct port *p, size_t n)
{
    if (n == 0)
        return;
    lua_pushvalue(L, 4);
    lua_pushlstring(L, port_buf_ptr(&p->in), n);
    port_buf_consume(&p->in, n);
    lua_call(L, 1, 0);
}

/* port:read_until(delim, timeout[, on_chunk]). Without on_chunk: the bytes up to and including
 * delim. With it: the bytes before delim go to on_chunk(piece) as they arrive (never a part of
 * delim: up to #delim-1 bytes that could start it are held back), delim is consumed and
 * returned. Either way a timeout or end of stream raises with the bytes seen; bytes not yet
 * handed over stay buffered. */
static int port_read_until(lua_State *L)
{
    struct port *p = check_open(L, 1);
    size_t dl;
    const char *delim = luaL_checklstring(L, 2, &dl);
    double timeout = opt_timeout(L, 3, DEFAULT_TIMEOUT);
    luaL_argcheck(L, dl > 0, 2, "delimiter must not be empty");
    int streaming = !lua_isnoneornil(L, 4);
    if (streaming)
        luaL_checktype(L, 4, LUA_TFUNCTION);
    lua_settop(L, 4);
    double deadline = mpctl_now() + timeout;
    size_t from = 0;
    for (;;) {
        const char *buf = port_buf_ptr(&p->in);
        const char *hit = p->in.len >= dl ? memmem(buf + from, p->in.len - from, delim, dl) : NULL;
        if (hit && streaming) {
            stream_chunk(L, p, (size_t)(hit - buf));
            port_buf_consume(&p->in, dl);
            lua_pushvalue(L, 2);
            return 1;
        }
        if (hit) {
            size_t k = (size_t)(hit - buf) + dl;
            lua_pushlstring(L, buf, k);
            port_buf_consume(&p->in, k);
            return 1;
        }
        if (streaming) {
            stream_chunk(L, p, p->in.len >= dl ? p->in.len - dl + 1 : 0);
            from = 0;
        } else {
            from = p->in.len >= dl ? p->in.len - dl + 1 : 0;
        }
        int r = port_fill(L, p, deadline);
        if (r <= 0) {
            lua_pushliteral(L, " waiting for \"");
            mpctl_push_escaped(L, delim, dl, 64);
            lua_pushliteral(L, "\"");
            lua_concat(L, 3);
            raise_wait(L, p, "read_until", r, timeout, lua_tostring(L, -1));
        }
    }
}

/* Search the buffer: plain with memmem, else with string.find so recipes get Lua patterns.
 * Leaves nothing on the stack when not found; else pushes before, match, captures. */
static int expect_search(lua_State *L, struct port *p, const char *pat, size_t pl, int plain, size_t from)
{
    const char *buf = port_buf_ptr(&p->in);
    if (plain) {
        /* bytes before `from` were searched already: a plain match cannot start there */
        const char *hit = pl == 0 ? buf : memmem(buf + from, p->in.len - from, pat, pl);
        if (hit == NULL)
            return 0;
        size_t at = (size_t)(hit - buf);
        lua_pushlstring(L, buf, at);
        lua_pushlstring(L, hit, pl);
        port_buf_consume(&p->in, at + pl);
        return 2;
    }
    int top = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "string");
    lua_getfield(L, -1, "find");
    lua_remove(L, -2);
    lua_remove(L, -2);
    lua_pushlstring(L, buf, p->in.len);
    lua_pushlstring(L, pat, pl);
    lua_call(L, 2, LUA_MULTRET);
    if (lua_isnil(L, top + 1)) {
        lua_settop(L, top);
        return 0;
    }
    lua_Integer s = lua_tointeger(L, top + 1), e = lua_tointeger(L, top + 2);
    int ncap = lua_gettop(L) - top - 2;
    lua_pushlstring(L, buf, (size_t)(s - 1));
    lua_replace(L, top + 1);
    lua_pushlstring(L, buf + s - 1, (size_t)(e - s + 1));
    lua_replace(L, top + 2);
    port_buf_consume(&p->in, (size_t)e);
    return 2 + ncap;
}

static int port_expect(lua_State *L)
{
    struct port *p = check_open(L, 1);
    size_t pl;
    const char *pat = luaL_checklstring(L, 2, &pl);
    double timeout = opt_timeout(L, 3, DEFAULT_TIMEOUT);
    int plain = lua_toboolean(L, 4);
    lua_settop(L, 4);
    double deadline = mpctl_now() + timeout;
    size_t from = 0;
    for (;;) {
        int n = expect_search(L, p, pat, pl, plain, from);
        if (n > 0)
            return n;
        from = p->in.len >= pl ? p->in.len - pl + 1 : 0;
        int r = port_fill(L, p, deadline);
        if (r <= 0) {
            lua_pushliteral(L, " waiting for \"");
            mpctl_push_escaped(L, pat, pl, 200);
            lua_pushliteral(L, "\"");
            lua_concat(L, 3);
            raise_wait(L, p, "expect", r, timeout, lua_tostring(L, -1));
        }
    }
}

static int port_unread(lua_State *L)
{
    struct port *p = check_port(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    port_buf_prepend(&p->in, data, n);
    return 0;
}

static int port_pending(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_port(L, 1)->in.len);
    return 1;
}

static int port_is_eof(lua_State *L)
{
    struct port *p = check_port(L, 1);
    lua_pushboolean(L, p->eof && p->in.len == 0);
    return 1;
}

/* ---- writing and control ----------------------------------------------------------------- */

static int port_write(lua_State *L)
{
    struct port *p = check_open(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    /* Default: twice the wire time at the current baud plus slack for a slow peer. */
    double def = 5.0 + (double)n * 20.0 / (double)(p->baud > 0 ? p->baud : 115200);
    double timeout = opt_timeout(L, 3, def);
    port_write_all(L, p, data, n, mpctl_now() + timeout);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* The backend sets the rate on its wire; without one (sockets, fds, server ports) it is only
 * recorded. */
static void set_baud(lua_State *L, struct port *p, long baud)
{
    if (p->ops->set_baud)
        p->ops->set_baud(L, p, baud);
    else
        p->baud = baud;
}

static int port_set_baud(lua_State *L)
{
    struct port *p = check_open(L, 1);
    lua_Integer baud = luaL_checkinteger(L, 2);
    luaL_argcheck(L, baud > 0 && baud <= 0x7fffffff, 2, "baud rate must be positive");
    set_baud(L, p, (long)baud);
    return 0;
}

static int port_baud(lua_State *L)
{
    lua_pushinteger(L, check_port(L, 1)->baud);
    return 1;
}

/* dtr/rts: 1 assert, 0 release, -1 leave alone. Asserted is pyserial's True (line low). */
static void set_signals(lua_State *L, struct port *p, int dtr, int rts)
{
    /* sockets, fds and server-side ports have no modem lines to drive: caps().signals says so */
    if (p->ops->set_signals)
        p->ops->set_signals(L, p, dtr, rts);
}

static int port_set_dtr(lua_State *L)
{
    struct port *p = check_open(L, 1);
    luaL_checkany(L, 2);
    set_signals(L, p, lua_toboolean(L, 2), -1);
    return 0;
}

static int port_set_rts(lua_State *L)
{
    struct port *p = check_open(L, 1);
    luaL_checkany(L, 2);
    set_signals(L, p, -1, lua_toboolean(L, 2));
    return 0;
}

static int field_level(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    int v = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int port_set_signals(lua_State *L)
{
    struct port *p = check_open(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    set_signals(L, p, field_level(L, 2, "dtr"), field_level(L, 2, "rts"));
    return 0;
}

static int port_signals_supported(const struct port *p)
{
    return p->ops->has_signals && p->ops->has_signals(p);
}

static int port_caps(lua_State *L)
{
    struct port *p = check_port(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushboolean(L, port_signals_supported(p));
    lua_setfield(L, -2, "signals");
    lua_pushboolean(L, p->ops->has_baud && p->ops->has_baud(p));
    lua_setfield(L, -2, "baud");
    lua_pushstring(L, p->label);
    lua_setfield(L, -2, "kind");
    if (p->ops->push_caps && p->fd >= 0)
        p->ops->push_caps(L, p);
    return 1;
}

/* Discard what the OS already holds, without waiting for more. */
static void discard_readable(lua_State *L, struct port *p)
{
    for (int i = 0; i < 1024 && port_fill_once(L, p, mpctl_now()) > 0; i++)
        port_buf_consume(&p->in, p->in.len);
}

static int port_flush_input(lua_State *L)
{
    struct port *p = check_open(L, 1);
    if (p->ops->flush_input)
        p->ops->flush_input(L, p);
    discard_readable(L, p);
    port_buf_consume(&p->in, p->in.len);
    return 0;
}

static int port_drain(lua_State *L)
{
    struct port *p = check_open(L, 1);
    double deadline = mpctl_now() + opt_timeout(L, 2, 5.0);
    for (;;) {
        int queued = 0;
        /* TIOCOUTQ on ttys, SIOCOUTQ (same number on Linux) on sockets */
        if (ioctl(p->fd, TIOCOUTQ, &queued) != 0 || queued == 0) {
            lua_pushboolean(L, 1);
            return 1;
        }
        if (mpctl_now() >= deadline) {
            lua_pushboolean(L, 0);
            return 1;
        }
        mpctl_sleep_l(L, 0.001);
    }
}

static int port_send_break(lua_State *L)
{
    struct port *p = check_open(L, 1);
    double seconds = opt_timeout(L, 2, 0.25);
    /* bounded: a break is a pulse (a quarter second is usual), and the sleep must end */
    luaL_argcheck(L, seconds <= 60, 2, "a break lasts at most 60 seconds");
    if (p->ops->send_break)
        p->ops->send_break(L, p, seconds);
    return 0;
}

static int port_events(lua_State *L)
{
    struct port *p = check_port(L, 1);
    if (p->ops->push_events)
        p->ops->push_events(L, p);
    else
        lua_newtable(L);
    return 1;
}

/* port:counters() -> {rx=, tx=}: data bytes received and sent since the port was opened
 * (after the RFC 2217 codec: what the device sent and got, not the telnet framing). */
static int port_counters(lua_State *L)
{
    struct port *p = check_port(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)p->rx);
    lua_setfield(L, -2, "rx");
    lua_pushinteger(L, (lua_Integer)p->tx);
    lua_setfield(L, -2, "tx");
    return 1;
}

/* port:set_trace(fn | nil): fn("rx"|"tx", bytes) for every chunk of data read into the buffer
 * or written, as it happens (for --debug wire logs). nil turns it off. */
static int port_set_trace(lua_State *L)
{
    struct port *p = check_port(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    if (p->trace_L && p->trace_ref != LUA_NOREF)
        luaL_unref(p->trace_L, LUA_REGISTRYINDEX, p->trace_ref);
    p->trace_ref = LUA_NOREF;
    if (!lua_isnoneornil(L, 2)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
        p->trace_L = lua_tothread(L, -1); /* outlives any coroutine that set the trace */
        lua_pop(L, 1);
        lua_pushvalue(L, 2);
        p->trace_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 0;
}

static int port_fileno(lua_State *L)
{
    lua_pushinteger(L, check_port(L, 1)->fd);
    return 1;
}

static int port_close(lua_State *L)
{
    port_release(check_port(L, 1));
    return 0;
}

static int port_gc(lua_State *L)
{
    struct port *p = check_port(L, 1);
    port_release(p);
    free(p->name);
    p->name = NULL;
    return 0;
}

static int port_tostring(lua_State *L)
{
    struct port *p = check_port(L, 1);
    lua_pushfstring(L, "mpctl.port(%s%s)", p->name ? p->name : "?", p->fd < 0 ? ", closed" : "");
    return 1;
}

static int port_index(lua_State *L)
{
    struct port *p = check_port(L, 1);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "name") == 0) {
        lua_pushstring(L, p->name);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static const luaL_Reg port_methods[] = {
    {"read", port_read},
    {"read_exact", port_read_exact},
    {"read_until", port_read_until},
    {"write", port_write},
    {"expect", port_expect},
    {"unread", port_unread},
    {"pending", port_pending},
    {"is_eof", port_is_eof},
    {"set_baud", port_set_baud},
    {"baud", port_baud},
    {"set_dtr", port_set_dtr},
    {"set_rts", port_set_rts},
    {"set_signals", port_set_signals},
    {"caps", port_caps},
    {"flush_input", port_flush_input},
    {"drain", port_drain},
    {"send_break", port_send_break},
    {"events", port_events},
    {"counters", port_counters},
    {"set_trace", port_set_trace},
    {"fileno", port_fileno},
    {"close", port_close},
    {NULL, NULL},
};

/* ---- opening ----------------------------------------------------------------------------- */

static void apply_initial(lua_State *L, struct port *p, int opts)
{
    long baud = (long)opt_field_number(L, opts, "baud", 115200);
    if (baud <= 0)
        mpctl_raise(L, "usage", p->name, "serial %s: baud must be positive", p->name);
    set_baud(L, p, baud);
    if (lua_type(L, opts) == LUA_TTABLE)
        set_signals(L, p, field_level(L, opts, "dtr"), field_level(L, opts, "rts"));
}

static int take_fd_number(lua_State *L, const char *url, const char *num)
{
    char *end;
    long fd = strtol(num, &end, 10);
    if (*num == '\0' || *end != '\0' || fd < 0 || fd > 1 << 20 || fcntl((int)fd, F_GETFD) < 0)
        mpctl_raise(L, "not_found", url, "serial %s: not an open file descriptor", url);
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    port_set_nonblock((int)fd);
    return (int)fd;
}

/* Calls the function below the nargs arguments on top of the stack. If it raises, the port's
 * fd, lock and simulator child are released at once, not at some later garbage collection
 * (until which a retry would find the port busy and a hung simulator would keep running),
 * and the error goes on up. */
static void call_or_release(lua_State *L, struct port *p, int nargs)
{
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
        port_release(p);
        lua_error(L);
    }
}

/* serial.open's work, with (url, opts, port) as arguments. */
static int open_body(lua_State *L)
{
    const char *url = lua_tostring(L, 1);
    struct port *p = check_port(L, 3);
    double timeout = opt_field_number(L, 2, "timeout", CONNECT_TIMEOUT);
    if (strncmp(url, "socket://", 9) == 0) {
        name_port(p, url, "socket");
        p->fd = net_connect(L, url, url + 9, timeout);
    } else if (strncmp(url, "rfc2217://", 10) == 0) {
        name_port(p, url, "rfc2217");
        rfc_attach_client(p);
        rfc_parse_query(L, p, url);
        double deadline = mpctl_now() + timeout; /* one budget: lookup, connect, negotiation */
        p->fd = net_connect(L, url, url + 10, timeout);
        rfc_client_start(L, p, deadline - mpctl_now());
    } else if (strncmp(url, "sim://", 6) == 0) {
        name_port(p, url, "sim");
        sim_open(L, p, url + 6, opt_field_number(L, 2, "timeout", SIM_START_TIMEOUT));
    } else if (strncmp(url, "fd://", 5) == 0) {
        name_port(p, url, "fd");
        p->fd = take_fd_number(L, url, url + 5);
    } else if (strstr(url, "://") != NULL) {
        return mpctl_raise(L, "usage", url, "serial %s: unknown scheme (use a device path, socket://, rfc2217://, "
                             "sim:// or fd://)", url);
    } else {
        name_port(p, url, "local");
        local_open(L, p, url, opt_field_bool(L, 2, "exclusive", 1));
    }
    apply_initial(L, p, 2);
    return 0;
}

static int serial_open(lua_State *L)
{
    luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    struct port *p = push_port(L); /* 3 */
    lua_pushcfunction(L, open_body);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    call_or_release(L, p, 3);
    return 1;
}

/* RFC 2217 server start on a new port at the top of the stack, released if it fails. */
static int server_start_body(lua_State *L)
{
    rfc_server_start(L, check_port(L, 1), lua_tonumber(L, 2));
    return 0;
}

static void start_server(lua_State *L, struct port *p, double settle)
{
    lua_pushcfunction(L, server_start_body);
    lua_pushvalue(L, -2);
    lua_pushnumber(L, settle);
    call_or_release(L, p, 2);
}

static int serial_wrap_fd(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);
    luaL_argcheck(L, fd >= 0 && fd < (1 << 20) && fcntl((int)fd, F_GETFD) >= 0, 1, "not an open fd");
    lua_pushfstring(L, "fd://%d", (int)fd);
    const char *name = luaL_optstring(L, 2, lua_tostring(L, -1));
    struct port *p = push_port(L);
    name_port(p, name, "fd");
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    port_set_nonblock((int)fd);
    p->fd = (int)fd;
    return 1;
}

/* ---- listeners --------------------------------------------------------------------------- */

enum listener_kind { LISTEN_PTY, LISTEN_SOCKET, LISTEN_RFC2217 };

struct listener {
    int fd;       /* listening socket, or the pty master until accepted */
    int slave_fd; /* pty: held open so the master does not read EOF before a peer opens it */
    enum listener_kind kind;
    int port;
    char *url;
    char *path;
};

static struct listener *check_listener(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SERIAL_LISTENER_MT);
}

static void listener_release(struct listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    if (l->slave_fd >= 0)
        close(l->slave_fd);
    l->fd = l->slave_fd = -1;
}

static void listen_pty(lua_State *L, struct listener *l)
{
    int m, s;
    char name[128];
    if (openpty(&m, &s, name, NULL, NULL) != 0)
        mpctl_raise(L, "io", "pty", "serial pty: openpty: %s", strerror(errno));
    l->fd = m;
    l->slave_fd = s;
    fcntl(m, F_SETFD, FD_CLOEXEC);
    fcntl(s, F_SETFD, FD_CLOEXEC);
    struct termios t;
    if (tcgetattr(s, &t) == 0) {
        /* raw: no echo, no line editing, no CR/LF translation (no OPOST), 8 bit clean */
        cfmakeraw(&t);
        tcsetattr(s, TCSANOW, &t);
    }
    l->path = strdup(name);
}

static int serial_listen(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    if (strncmp(url, "fd://", 5) == 0) {
        struct port *p = push_port(L);
        int rfc = opt_field_bool(L, 2, "rfc2217", 0);
        name_port(p, url, "fd");
        p->fd = take_fd_number(L, url, url + 5);
        if (rfc) {
            rfc_attach_server(p);
            start_server(L, p, opt_field_number(L, 2, "settle", SERVER_SETTLE));
        }
        return 1;
    }
    struct listener *l = lua_newuserdatauv(L, sizeof *l, 0);
    memset(l, 0, sizeof *l);
    l->fd = l->slave_fd = -1;
    luaL_setmetatable(L, SERIAL_LISTENER_MT);
    l->url = strdup(url);
    if (strcmp(url, "pty") == 0) {
        l->kind = LISTEN_PTY;
        listen_pty(L, l);
    } else if (strncmp(url, "socket://", 9) == 0) {
        l->kind = LISTEN_SOCKET;
        l->fd = net_listen(L, url, url + 9, &l->port);
    } else if (strncmp(url, "rfc2217://", 10) == 0) {
        l->kind = LISTEN_RFC2217;
        l->fd = net_listen(L, url, url + 10, &l->port);
    } else {
        return mpctl_raise(L, "usage", url, "serial listen %s: expected pty, socket://HOST:PORT, rfc2217://HOST:PORT "
                             "or fd://N", url);
    }
    return 1;
}

static int listener_accept(lua_State *L)
{
    struct listener *l = check_listener(L, 1);
    double timeout = opt_timeout(L, 2, DEFAULT_TIMEOUT);
    if (l->kind == LISTEN_PTY) {
        if (l->fd < 0)
            return luaL_pushfail(L), 1; /* the one master was handed out already */
        struct port *p = push_port(L);
        lua_pushfstring(L, "pty:%s", l->path);
        name_port(p, lua_tostring(L, -1), "pty");
        lua_pop(L, 1);
        port_set_nonblock(l->fd);
        p->fd = l->fd;
        l->fd = -1;
        return 1;
    }
    if (l->fd < 0)
        return mpctl_raise(L, "io", l->url, "serial listen %s: listener is closed", l->url);
    int fd = net_accept(L, l->fd, l->url, timeout);
    if (fd < 0)
        return luaL_pushfail(L), 1;
    struct port *p = push_port(L);
    int rfc = l->kind == LISTEN_RFC2217;
    name_port(p, l->url, "socket");
    p->fd = fd;
    if (rfc) {
        rfc_attach_server(p);
        start_server(L, p, SERVER_SETTLE);
    }
    return 1;
}

static int listener_fileno(lua_State *L)
{
    struct listener *l = check_listener(L, 1);
    lua_pushinteger(L, l->fd >= 0 ? l->fd : l->slave_fd);
    return 1;
}

static int listener_close(lua_State *L)
{
    listener_release(check_listener(L, 1));
    return 0;
}

static int listener_gc(lua_State *L)
{
    struct listener *l = check_listener(L, 1);
    listener_release(l);
    free(l->url);
    free(l->path);
    l->url = l->path = NULL;
    return 0;
}

static int listener_tostring(lua_State *L)
{
    struct listener *l = check_listener(L, 1);
    lua_pushfstring(L, "mpctl.listener(%s)", l->path ? l->path : l->url ? l->url : "?");
    return 1;
}

static int listener_index(lua_State *L)
{
    struct listener *l = check_listener(L, 1);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "path") == 0 && l->path) {
        lua_pushstring(L, l->path);
        return 1;
    }
    if (key && strcmp(key, "port") == 0 && l->kind != LISTEN_PTY) {
        lua_pushinteger(L, l->port);
        return 1;
    }
    if (key && strcmp(key, "url") == 0) {
        lua_pushstring(L, l->url);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static const luaL_Reg listener_methods[] = {
    {"accept", listener_accept},
    {"fileno", listener_fileno},
    {"close", listener_close},
    {NULL, NULL},
};

/* ---- poll -------------------------------------------------------------------------------- */

/* Ready without waiting: a port with buffered bytes, at end of stream, or (server side of
 * RFC 2217) with control events not yet collected by events(). */
static int ready_now(lua_State *L, int idx)
{
    struct port *p = luaL_testudata(L, idx, SERIAL_PORT_MT);
    return p && (p->in.len > 0 || p->eof || pending_events(p) > 0);
}

static int obj_fd(lua_State *L, int idx)
{
    struct port *p = luaL_testudata(L, idx, SERIAL_PORT_MT);
    if (p)
        return p->fd;
    struct listener *l = luaL_testudata(L, idx, SERIAL_LISTENER_MT);
    if (l)
        return l->fd;
    return luaL_error(L, "serial.poll: expected ports and listeners, got %s", luaL_typename(L, idx));
}

/* A readable fd may carry only telnet commands: read them now and count the port only if data
 * (or end of stream) came of it. */
static int became_ready(lua_State *L, int idx)
{
    struct port *p = luaL_testudata(L, idx, SERIAL_PORT_MT);
    if (p == NULL)
        return 1;
    port_fill_once(L, p, mpctl_now());
    return p->in.len > 0 || p->eof || pending_events(p) > 0;
}

/* One object is ready if it already was (buffered input, EOF, events) or its fd polled readable
 * and reading showed data, EOF, events, or a pending connection. */
static int is_ready(lua_State *L, int idx, short revents)
{
    if (ready_now(L, idx))
        return 1;
    return revents != 0 && became_ready(L, idx);
}

static int serial_poll(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    double deadline = mpctl_now() + opt_timeout(L, 2, DEFAULT_TIMEOUT);
    int n = (int)luaL_len(L, 1);
    struct pollfd *pfds = lua_newuserdatauv(L, sizeof *pfds * (size_t)(n > 0 ? n : 1), 0);
    for (;;) {
        /* Always poll every fd, without waiting when something is ready already, so that all
         * ready objects are reported together and none starves behind a busy one. */
        int any_now = 0;
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, 1, i);
            pfds[i - 1] = (struct pollfd){obj_fd(L, -1), POLLIN, 0};
            any_now |= ready_now(L, -1);
            lua_pop(L, 1);
        }
        int r = mpctl_poll(L, pfds, (unsigned long)n, any_now ? mpctl_now() : deadline);
        if (r < 0 && errno != EINTR)
            return mpctl_raise(L, "io", NULL, "serial.poll: %s", strerror(errno));
        lua_newtable(L);
        int found = 0;
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, 1, i);
            if (is_ready(L, -1, r > 0 ? pfds[i - 1].revents : 0))
                lua_rawseti(L, -2, ++found);
            else
                lua_pop(L, 1);
        }
        if (found > 0 || mpctl_now() >= deadline)
            return 1;
        lua_pop(L, 1);
    }
}

/* ---- module ------------------------------------------------------------------------------ */

static int serial_list(lua_State *L)
{
    return local_list(L);
}

static const luaL_Reg serial_functions[] = {
    {"list", serial_list},
    {"open", serial_open},
    {"listen", serial_listen},
    {"poll", serial_poll},
    {"wrap_fd", serial_wrap_fd},
    {NULL, NULL},
};

/* __close releases the OS resources like close(); only __gc frees the rest, so a closed
 * handle can still be printed and named in errors. */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction index,
                      lua_CFunction gc, lua_CFunction close, lua_CFunction tostring)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

int luaopen_mpctl_serial(lua_State *L)
{
    new_class(L, SERIAL_PORT_MT, port_methods, port_index, port_gc, port_close, port_tostring);
    new_class(L, SERIAL_LISTENER_MT, listener_methods, listener_index, listener_gc, listener_close,
              listener_tostring);
    luaL_newlib(L, serial_functions);
    return 1;
}
