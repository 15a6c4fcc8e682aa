/* mpctl.slip: SLIP framing as the ESP ROM loader and flasher stubs speak it.
 *
 * Framing facts (esptool loader.py, docs serial-protocol.rst; see anchors.md §3.1): a frame is
 * 0xC0 <payload> 0xC0, inside the payload 0xDB is sent as 0xDB 0xDD and 0xC0 as 0xDB 0xDC;
 * any other byte after 0xDB is a protocol error.
 *
 * read_frame/write_frame only use the port's Lua methods (read, write, unread, is_eof), so they
 * work over every port backend, including Lua tables that imitate a port in tests. */
#include "mpctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLIP_END 0xC0
#define SLIP_ESC 0xDB
#define SLIP_ESC_END 0xDC
#define SLIP_ESC_ESC 0xDD

#define DECODER_MT "mpctl.slip_decoder"
#define SCRATCH_MT "mpctl.slip_scratch"

/* Bytes asked of port:read at a time: large enough that a 16 KiB stub block (the hot path of
 * ESP flashing) arrives in few calls; bytes past the frame end are pushed back with unread. */
#define READ_CHUNK 65536
#define SEEN_MAX 64
/* Default bound on a frame's payload: ESP frames are at most a 16 KiB block plus headers;
 * without a bound, noise with one 0xC0 and no second one would grow the buffer forever. */
#define MAX_FRAME (1 << 20)

enum slip_state { OUTSIDE, IN_FRAME, IN_ESCAPE };
enum slip_event { NEED_MORE, FRAME_DONE, BAD_ESCAPE };

/* Decoder state shared by read_frame (lives on the C stack + a scratch userdata for the payload)
 * and by decoder objects (lives in the userdata). The payload buffer is malloc'd and freed by
 * the owning userdata's __gc, so a Lua error cannot leak it. */
struct slip_dec {
    unsigned char *buf;
    size_t len, cap;
    enum slip_state state;
    unsigned char bad; /* the byte that followed 0xDB in a bad escape */
    size_t bad_at;     /* its offset within the frame payload */
    size_t max;        /* decoder objects: longest payload accepted */
    int discard;       /* decoder objects: inside a frame already dropped as too long */
};

static int dec_reserve(struct slip_dec *d, size_t extra)
{
    if (d->cap - d->len >= extra)
        return 1;
    size_t cap = d->cap ? d->cap : 256;
    while (cap - d->len < extra)
        cap *= 2;
    unsigned char *p = realloc(d->buf, cap);
    if (p == NULL)
        return 0;
    d->buf = p;
    d->cap = cap;
    return 1;
}

/* Consume bytes of s[0..n) until a frame completes or a bad escape is seen; returns the number
 * of bytes consumed and the event through *ev. Empty frames (C0 C0) are skipped: the second
 * C0 opens the next frame. Bytes outside a frame are dropped. */
static size_t dec_step(struct slip_dec *d, const unsigned char *s, size_t n, enum slip_event *ev, int *oom)
{
    size_t i = 0;
    *ev = NEED_MORE;
    *oom = 0;
    while (i < n) {
        if (d->state == OUTSIDE) {
            const unsigned char *c0 = memchr(s + i, SLIP_END, n - i);
            if (c0 == NULL)
                return n;
            i = (size_t)(c0 - s) + 1;
            d->state = IN_FRAME;
            d->len = 0;
            continue;
        }
        if (d->discard)
            d->len = 0; /* a frame already dropped for its length: keep nothing, find its end */
        /* Reserve for the rest of the chunk once, so the inner loop has no bounds checks. */
        if (!dec_reserve(d, n - i)) {
            *oom = 1;
            return i;
        }
        unsigned char *out = d->buf + d->len;
        while (i < n) {
            unsigned char c = s[i++];
            if (d->state == IN_ESCAPE) {
                if (c == SLIP_ESC_END) {
                    *out++ = SLIP_END;
                } else if (c == SLIP_ESC_ESC) {
                    *out++ = SLIP_ESC;
                } else {
                    d->len = (size_t)(out - d->buf);
                    d->bad = c;
                    d->bad_at = d->len;
                    d->state = OUTSIDE;
                    /* A C0 here most likely opens the next frame: leave it unconsumed. */
                    if (c == SLIP_END)
                        i--;
                    *ev = BAD_ESCAPE;
                    return i;
                }
                d->state = IN_FRAME;
            } else if (c == SLIP_END) {
                d->len = (size_t)(out - d->buf);
                if (d->len == 0 && !d->discard)
                    continue; /* empty frame: this C0 starts the next one */
                d->state = OUTSIDE;
                *ev = FRAME_DONE;
                return i;
            } else if (c == SLIP_ESC) {
                d->state = IN_ESCAPE;
            } else {
                *out++ = c;
            }
        }
        d->len = (size_t)(out - d->buf);
    }
    return i;
}

/* "0x5A": lua_pushfstring has no %02X. Returned by value so it can sit in an argument list. */
struct hex {
    char s[8];
};

static struct hex hexbyte(unsigned char c)
{
    struct hex h;
    snprintf(h.s, sizeof h.s, "0x%02X", (unsigned)c);
    return h;
}

static int scratch_gc(lua_State *L)
{
    struct slip_dec *d = luaL_checkudata(L, 1, SCRATCH_MT);
    free(d->buf);
    d->buf = NULL;
    d->cap = d->len = 0;
    return 0;
}

static struct slip_dec *push_scratch(lua_State *L)
{
    struct slip_dec *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, SCRATCH_MT);
    return d;
}

/* ---- encode / decode ------------------------------------------------------------------- */

static int slip_encode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, 2 * n + 2);
    unsigned char *p = out;
    *p++ = SLIP_END;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == SLIP_END) {
            *p++ = SLIP_ESC;
            *p++ = SLIP_ESC_END;
        } else if (c == SLIP_ESC) {
            *p++ = SLIP_ESC;
            *p++ = SLIP_ESC_ESC;
        } else {
            *p++ = c;
        }
    }
    *p++ = SLIP_END;
    luaL_pushresultsize(&b, (size_t)(p - out));
    return 1;
}

/* Accepts the payload between the delimiters; one leading and one trailing C0 are tolerated
 * so a whole frame from encode() decodes too. */
static int slip_decode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    if (n >= 1 && s[0] == SLIP_END) {
        s++;
        n--;
    }
    if (n >= 1 && s[n - 1] == SLIP_END)
        n--;
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n);
    unsigned char *p = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == SLIP_ESC) {
            if (i + 1 >= n)
                return mpctl_raise(L, "protocol", NULL, "slip.decode: truncated escape: 0xDB at the end of the frame (offset %d)",
                                  (int)i);
            unsigned char e = s[++i];
            if (e == SLIP_ESC_END)
                *p++ = SLIP_END;
            else if (e == SLIP_ESC_ESC)
                *p++ = SLIP_ESC;
            else
                return mpctl_raise(L, "protocol", NULL, "slip.decode: bad escape 0xDB %s at offset %d (expected 0xDC or 0xDD)",
                                  hexbyte(e).s, (int)(i - 1));
        } else if (c == SLIP_END) {
            return mpctl_raise(L, "protocol", NULL, "slip.decode: unescaped 0xC0 at offset %d inside the frame", (int)i);
        } else {
            *p++ = c;
        }
    }
    luaL_pushresultsize(&b, (size_t)(p - out));
    return 1;
}

/* ---- port I/O ---------------------------------------------------------------------------- */

/* A name for the port in error messages: port.name, else tostring(port). */
static const char *port_name(lua_State *L, int port)
{
    if (lua_getfield(L, port, "name") == LUA_TSTRING)
        return lua_tostring(L, -1); /* stays on the stack for the caller's error */
    lua_pop(L, 1);
    return luaL_tolstring(L, port, NULL);
}

static void port_method(lua_State *L, int port, const char *method)
{
    if (lua_getfield(L, port, method) == LUA_TNIL) {
        const char *name = port_name(L, port);
        luaL_error(L, "slip: %s has no %s method", name, method);
    }
    lua_pushvalue(L, port);
}

static void port_unread(lua_State *L, int port, const unsigned char *s, size_t n)
{
    if (n == 0)
        return;
    port_method(L, port, "unread");
    lua_pushlstring(L, (const char *)s, n);
    lua_call(L, 2, 0);
}

static int port_is_eof(lua_State *L, int port)
{
    if (lua_getfield(L, port, "is_eof") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushvalue(L, port);
    lua_call(L, 1, 1);
    int eof = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return eof;
}

/* The last SEEN_MAX raw bytes read, for "bytes seen" in timeout errors. */
struct seen {
    unsigned char ring[SEEN_MAX];
    size_t total;
};

static void seen_add(struct seen *sn, const unsigned char *s, size_t n)
{
    if (n > SEEN_MAX) {
        s += n - SEEN_MAX;
        sn->total += n - SEEN_MAX;
        n = SEEN_MAX;
    }
    for (size_t i = 0; i < n; i++)
        sn->ring[(sn->total + i) % SEEN_MAX] = s[i];
    sn->total += n;
}

static void seen_push(lua_State *L, const struct seen *sn)
{
    unsigned char tmp[SEEN_MAX];
    size_t n = sn->total < SEEN_MAX ? sn->total : SEEN_MAX;
    for (size_t i = 0; i < n; i++)
        tmp[i] = sn->ring[(sn->total - n + i) % SEEN_MAX];
    if (sn->total > n) {
        lua_pushliteral(L, "...");
        mpctl_push_escaped(L, (const char *)tmp, n, SEEN_MAX);
        lua_concat(L, 2);
    } else {
        mpctl_push_escaped(L, (const char *)tmp, n, SEEN_MAX);
    }
}

/* Raise an error object of `kind`; `seen_idx` (0 for none) is the stack index of the escaped
 * bytes seen, kept as the error's `seen` field. */
static int raise_slip(lua_State *L, const char *kind, const char *where, int seen_idx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *detail = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    mpctl_push_error(L, kind, where, detail);
    if (seen_idx) {
        lua_pushvalue(L, seen_idx);
        lua_setfield(L, -2, "seen");
    }
    return lua_error(L);
}

static int read_frame_timeout(lua_State *L, int port, double timeout, const struct slip_dec *d,
                              const struct seen *sn)
{
    const char *name = port_name(L, port);
    seen_push(L, sn);
    const char *seen = lua_tostring(L, -1);
    if (d->state == OUTSIDE)
        return raise_slip(L, "timeout", name, lua_gettop(L),
                          "slip.read_frame on %s: timeout after %f s waiting for a frame start (0xC0); "
                             "%d bytes seen: \"%s\"",
                          name, timeout, (int)sn->total, seen);
    return raise_slip(L, "timeout", name, lua_gettop(L),
                      "slip.read_frame on %s: timeout after %f s waiting for the end of a frame "
                         "(%d payload bytes so far); last bytes seen: \"%s\"",
                      name, timeout, (int)d->len, seen);
}

/* slip.read_frame(port, timeout[, max_payload = 1 MiB]) -> payload */
static int slip_read_frame(lua_State *L)
{
    luaL_checkany(L, 1);
    double timeout = luaL_checknumber(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, MAX_FRAME);
    luaL_argcheck(L, max > 0, 3, "maximum frame size must be > 0");
    lua_settop(L, 3);
    const int port = 1;
    struct slip_dec *d = push_scratch(L); /* index 4 */
    struct seen sn;
    memset(&sn, 0, sizeof sn);
    double deadline = mpctl_now() + timeout;
    for (;;) {
        double left = deadline - mpctl_now();
        port_method(L, port, "read");
        lua_pushinteger(L, READ_CHUNK);
        lua_pushnumber(L, left > 0 ? left : 0);
        lua_call(L, 3, 1);
        size_t n;
        const unsigned char *s = (const unsigned char *)lua_tolstring(L, -1, &n);
        if (s == NULL)
            return luaL_error(L, "slip.read_frame: port:read returned %s, not a string", luaL_typename(L, -1));
        if (n == 0) {
            lua_pop(L, 1);
            if (mpctl_now() >= deadline)
                return read_frame_timeout(L, port, timeout, d, &sn);
            if (port_is_eof(L, port)) {
                const char *name = port_name(L, port);
                seen_push(L, &sn);
                return raise_slip(L, "eof", name, lua_gettop(L),
                                  "slip.read_frame on %s: port closed by the peer %s; last bytes seen: \"%s\"",
                                  name, d->state == OUTSIDE ? "before a frame" : "in the middle of a frame",
                                  lua_tostring(L, -1));
            }
            continue;
        }
        enum slip_event ev;
        int oom;
        size_t used = dec_step(d, s, n, &ev, &oom);
        seen_add(&sn, s, used);
        if (oom)
            return luaL_error(L, "slip.read_frame: out of memory (frame of %d bytes)", (int)d->len);
        if (ev == NEED_MORE) {
            lua_pop(L, 1);
            if (d->state != OUTSIDE && d->len > (size_t)max)
                return raise_slip(L, "protocol", port_name(L, port), 0,
                                  "slip.read_frame on %s: frame longer than %d bytes without an end (0xC0)",
                                  port_name(L, port), (int)max);
            /* A device spewing noise (a boot log at full speed) must not keep us past the
             * deadline; a frame already under way may still complete from buffered bytes
             * (bounded by max). */
            if (d->state == OUTSIDE && mpctl_now() >= deadline)
                return read_frame_timeout(L, port, timeout, d, &sn);
            continue;
        }
        port_unread(L, port, s + used, n - used);
        if (d->len > (size_t)max) /* ended within the chunk that took it past the bound */
            return raise_slip(L, "protocol", port_name(L, port), 0,
                              "slip.read_frame on %s: frame longer than %I bytes (%I bytes to its end)",
                              port_name(L, port), max, (lua_Integer)d->len);
        if (ev == BAD_ESCAPE) {
            const char *name = port_name(L, port);
            seen_push(L, &sn);
            return raise_slip(L, "protocol", name, lua_gettop(L),
                              "slip.read_frame on %s: bad escape 0xDB %s at payload offset %d "
                                 "(expected 0xDC or 0xDD); last bytes seen: \"%s\"",
                              name, hexbyte(d->bad).s, (int)d->bad_at, lua_tostring(L, -1));
        }
        lua_pushlstring(L, (const char *)d->buf, d->len);
        return 1;
    }
}

/* slip.write_frame(port, payload[, timeout]) -> nbytes written on the wire */
static int slip_write_frame(lua_State *L)
{
    luaL_checkany(L, 1);
    luaL_checkstring(L, 2);
    int has_timeout = !lua_isnoneornil(L, 3);
    if (has_timeout)
        luaL_checknumber(L, 3);
    lua_pushcfunction(L, slip_encode);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    int frame = lua_gettop(L);
    port_method(L, 1, "write");
    lua_pushvalue(L, frame);
    if (has_timeout)
        lua_pushvalue(L, 3);
    lua_call(L, has_timeout ? 3 : 2, 0);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, frame));
    return 1;
}

/* ---- incremental decoder ----------------------------------------------------------------- */

/* slip.decoder([max_payload = 1 MiB]) -> d.  d:feed(bytes) -> { payload, ... }, errors
 * Frames may span feeds. A frame with a bad escape is dropped (as the ROM does) and described
 * in the second result, a list of strings, which is nil when there were none. */
static int slip_decoder(lua_State *L)
{
    lua_Integer max = luaL_optinteger(L, 1, MAX_FRAME);
    luaL_argcheck(L, max > 0, 1, "maximum frame size must be > 0");
    struct slip_dec *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    d->max = (size_t)max;
    luaL_setmetatable(L, DECODER_MT);
    return 1;
}

static int decoder_feed(lua_State *L)
{
    struct slip_dec *d = luaL_checkudata(L, 1, DECODER_MT);
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 2, &n);
    lua_newtable(L); /* 3: frames */
    int errors = 0;   /* stack index of the error list, created on demand */
    lua_Integer nframes = 0, nerrors = 0;
    size_t i = 0;
    while (i < n) {
        enum slip_event ev;
        int oom;
        i += dec_step(d, s + i, n - i, &ev, &oom);
        if (oom)
            return luaL_error(L, "slip decoder: out of memory (frame of %d bytes)", (int)d->len);
        if (d->discard) {
            /* The rest of a frame already reported too long: its end (or a bad escape) closes
             * it exactly where it would have closed had it come in one piece, so the frames
             * after it are the same however the bytes were split (issue 8). */
            if (ev != NEED_MORE) {
                d->discard = 0;
                d->len = 0;
                d->state = OUTSIDE;
            }
            continue;
        }
        /* The bound holds whether the frame ended in this feed or is still open. */
        int too_long = d->len > d->max && (ev == FRAME_DONE || d->state != OUTSIDE);
        if (ev == FRAME_DONE && !too_long) {
            lua_pushlstring(L, (const char *)d->buf, d->len);
            lua_rawseti(L, 3, ++nframes);
            d->len = 0;
        } else if (ev == BAD_ESCAPE || too_long) {
            if (!errors) {
                lua_newtable(L);
                errors = lua_gettop(L);
            }
            if (ev == BAD_ESCAPE)
                lua_pushfstring(L, "bad escape 0xDB %s at payload offset %d; frame dropped", hexbyte(d->bad).s,
                                (int)d->bad_at);
            else
                lua_pushfstring(L, "frame longer than %d bytes; dropped", (int)d->max);
            lua_rawseti(L, errors, ++nerrors);
            d->len = 0;
            if (ev == NEED_MORE) /* still open: skip the rest of it, up to its own end */
                d->discard = 1;
            else
                d->state = OUTSIDE;
        }
    }
    if (!errors)
        lua_pushnil(L);
    return 2;
}

/* d:pending() -> bytes of the unfinished frame so far (0 when between frames) */
static int decoder_pending(lua_State *L)
{
    struct slip_dec *d = luaL_checkudata(L, 1, DECODER_MT);
    lua_pushinteger(L, d->state == OUTSIDE ? 0 : (lua_Integer)d->len);
    return 1;
}

static int decoder_reset(lua_State *L)
{
    struct slip_dec *d = luaL_checkudata(L, 1, DECODER_MT);
    d->state = OUTSIDE;
    d->len = 0;
    d->discard = 0;
    return 0;
}

static int decoder_gc(lua_State *L)
{
    struct slip_dec *d = luaL_checkudata(L, 1, DECODER_MT);
    free(d->buf);
    d->buf = NULL;
    d->cap = d->len = 0;
    return 0;
}

static int decoder_tostring(lua_State *L)
{
    struct slip_dec *d = luaL_checkudata(L, 1, DECODER_MT);
    lua_pushfstring(L, "mpctl.slip_decoder (%s, %d bytes pending)", d->state == OUTSIDE ? "idle" : "in frame",
                    (int)d->len);
    return 1;
}

int luaopen_mpctl_slip(lua_State *L)
{
    static const luaL_Reg decoder_methods[] = {
        {"feed", decoder_feed},
        {"pending", decoder_pending},
        {"reset", decoder_reset},
        {NULL, NULL},
    };
    static const luaL_Reg decoder_meta[] = {
        {"__gc", decoder_gc},
        {"__close", decoder_gc},
        {"__tostring", decoder_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"encode", slip_encode},
        {"decode", slip_decode},
        {"read_frame", slip_read_frame},
        {"write_frame", slip_write_frame},
        {"decoder", slip_decoder},
        {NULL, NULL},
    };
    mpctl_new_class(L, DECODER_MT, decoder_meta, decoder_methods);
    if (luaL_newmetatable(L, SCRATCH_MT)) {
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
