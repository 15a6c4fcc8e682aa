/* mpctl.zlib: one-shot compression with libdeflate (denser than zlib at the same speed, and
 * levels 10..12 go further: fewer bytes on the wire flash faster), inflation with zlib
 * (streaming, for data of unknown size and for the ESP simulator which inflates each
 * FLASH_DEFL_DATA block as it arrives).
 *
 * The ESP flasher stub expects a zlib-wrapped stream (RFC 1950 header + adler32), as produced by
 * esptool's `zlib.compress(image, 9)` (anchors.md §3.1 FLASH_DEFL_BEGIN). */
#include "mpctl.h"

#include <libdeflate.h>
#include <string.h>
#include <zlib.h>

#define INFLATER_MT "mpctl.inflater"
#define COMPRESSOR_MT "mpctl.zlib_compressor"
#define REG_COMPRESSORS "mpctl.zlib.compressors"
#define OUT_CHUNK 65536

enum wrap { WRAP_ZLIB, WRAP_RAW };

/* ---- compression ------------------------------------------------------------------------- */

struct compressor {
    struct libdeflate_compressor *c;
};

static int compressor_gc(lua_State *L)
{
    struct compressor *c = luaL_checkudata(L, 1, COMPRESSOR_MT);
    if (c->c)
        libdeflate_free_compressor(c->c);
    c->c = NULL;
    return 0;
}

/* libdeflate compressors cost up to a few MB to set up at high levels, so one per level is
 * kept per Lua state (in the registry; freed by __gc when the state closes). */
static struct libdeflate_compressor *get_compressor(lua_State *L, int level)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, REG_COMPRESSORS) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, REG_COMPRESSORS);
    }
    struct compressor *c;
    if (lua_rawgeti(L, -1, level) == LUA_TUSERDATA) {
        c = lua_touserdata(L, -1);
    } else {
        lua_pop(L, 1);
        c = lua_newuserdatauv(L, sizeof *c, 0);
        c->c = NULL;
        luaL_setmetatable(L, COMPRESSOR_MT);
        c->c = libdeflate_alloc_compressor(level);
        if (c->c == NULL)
            luaL_error(L, "zlib: cannot allocate a level %d compressor", level);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, level);
    }
    lua_pop(L, 2);
    return c->c;
}

static int compress_with(lua_State *L, enum wrap wrap, const char *what)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer level = luaL_optinteger(L, 2, 9);
    luaL_argcheck(L, level >= 0 && level <= 12, 2, "level must be 0..12");
    struct libdeflate_compressor *c = get_compressor(L, (int)level);
    size_t bound = wrap == WRAP_ZLIB ? libdeflate_zlib_compress_bound(c, n) : libdeflate_deflate_compress_bound(c, n);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, bound);
    size_t got = wrap == WRAP_ZLIB ? libdeflate_zlib_compress(c, s, n, out, bound)
                                   : libdeflate_deflate_compress(c, s, n, out, bound);
    if (got == 0)
        return luaL_error(L, "zlib.%s: %d bytes did not fit the %d-byte bound", what, (int)n, (int)bound);
    luaL_pushresultsize(&b, got);
    return 1;
}

/* zlib.compress(data[, level 0..12 = 9]) -> zlib stream */
static int z_compress(lua_State *L)
{
    return compress_with(L, WRAP_ZLIB, "compress");
}

/* zlib.deflate_raw(data[, level]) -> raw deflate (RFC 1951) */
static int z_deflate_raw(lua_State *L)
{
    return compress_with(L, WRAP_RAW, "deflate_raw");
}

/* ---- inflation --------------------------------------------------------------------------- */

struct inflater {
    z_stream zs;
    int live;     /* inflateInit2 succeeded, inflateEnd pending */
    int done;     /* Z_STREAM_END seen */
    enum wrap wrap;
};

static int inflater_gc(lua_State *L)
{
    struct inflater *z = luaL_checkudata(L, 1, INFLATER_MT);
    if (z->live)
        inflateEnd(&z->zs);
    z->live = 0;
    return 0;
}

static struct inflater *push_inflater(lua_State *L, enum wrap wrap)
{
    struct inflater *z = lua_newuserdatauv(L, sizeof *z, 1);
    memset(z, 0, sizeof *z);
    z->wrap = wrap;
    luaL_setmetatable(L, INFLATER_MT);
    int rc = inflateInit2(&z->zs, wrap == WRAP_ZLIB ? 15 : -15);
    if (rc != Z_OK)
        luaL_error(L, "zlib: inflateInit failed: %s", z->zs.msg ? z->zs.msg : zError(rc));
    z->live = 1;
    return z;
}

/* Error text for a failed inflate: what zlib said and where in the compressed input. */
static int inflate_error(lua_State *L, const char *what, struct inflater *z, int rc)
{
    const char *msg = z->zs.msg ? z->zs.msg : zError(rc);
    return mpctl_raise(L, "protocol", NULL, "%s: corrupt %s stream at input offset %d: %s", what,
                      z->wrap == WRAP_ZLIB ? "zlib" : "deflate", (int)z->zs.total_in, msg);
}

/* Inflate s[0..n) into buffer b (caller has done luaL_buffinit and keeps the stack balanced).
 * Returns the number of input bytes consumed; stops at the end of the stream. */
static size_t inflate_into(lua_State *L, const char *what, struct inflater *z, const char *s, size_t n,
                           luaL_Buffer *b)
{
    z->zs.next_in = (Bytef *)s;
    size_t left = n;
    /* Small feeds (a simulator fed byte by byte) should not each allocate a 64 KiB box. */
    size_t chunk = n < OUT_CHUNK / 4 ? 4 * n : OUT_CHUNK;
    if (chunk < LUAL_BUFFERSIZE)
        chunk = LUAL_BUFFERSIZE;
    while (!z->done) {
        uInt in_now = left > (1u << 30) ? (1u << 30) : (uInt)left;
        z->zs.avail_in = in_now;
        char *out = luaL_prepbuffsize(b, chunk);
        z->zs.next_out = (Bytef *)out;
        z->zs.avail_out = (uInt)chunk;
        int rc = inflate(&z->zs, Z_NO_FLUSH);
        luaL_addsize(b, chunk - z->zs.avail_out);
        left -= in_now - z->zs.avail_in;
        if (rc == Z_STREAM_END) {
            z->done = 1;
            break;
        }
        if (rc == Z_BUF_ERROR || (rc == Z_OK && z->zs.avail_out != 0 && left == 0))
            break; /* needs more input */
        if (rc != Z_OK)
            inflate_error(L, what, z, rc);
    }
    return n - left;
}

static int inflate_oneshot(lua_State *L, enum wrap wrap, const char *what)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    struct inflater *z = push_inflater(L, wrap);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t used = inflate_into(L, what, z, s, n, &b);
    if (!z->done)
        return mpctl_raise(L, "protocol", NULL, "%s: truncated %s stream: input ended after %d bytes (%d bytes inflated) "
                             "without the end-of-stream marker",
                          what, wrap == WRAP_ZLIB ? "zlib" : "deflate", (int)n, (int)z->zs.total_out);
    if (used != n)
        return mpctl_raise(L, "protocol", NULL, "%s: %d bytes of trailing data after the end of the stream at input offset %d",
                          what, (int)(n - used), (int)used);
    luaL_pushresult(&b);
    return 1;
}

/* When the caller knows the size (e.g. from a FLASH_DEFL_BEGIN header), libdeflate inflates
 * in one pass into an exactly sized buffer. */
static int decompress_sized(lua_State *L, size_t size)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    /* Deflate expands at most 1032:1 (a 258-byte match in 2 bits), so a larger size (a corrupt
     * or hostile length field) cannot be right: say what the stream holds, without allocating. */
    if ((double)size > 1032.0 * (double)n + 1024.0) {
        lua_settop(L, 1);
        inflate_oneshot(L, WRAP_ZLIB, "zlib.decompress");
        return mpctl_raise(L, "protocol", NULL, "zlib.decompress: stream inflates to %I bytes, expected %I",
                          (lua_Integer)lua_rawlen(L, -1), (lua_Integer)size);
    }
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    if (d == NULL)
        return luaL_error(L, "zlib.decompress: cannot allocate a decompressor");
    char *out = lua_newuserdatauv(L, size ? size : 1, 0);
    size_t in_used = 0, got = 0;
    enum libdeflate_result r = libdeflate_zlib_decompress_ex(d, s, n, out, size, &in_used, &got);
    libdeflate_free_decompressor(d);
    if (r == LIBDEFLATE_SUCCESS && got != size)
        return mpctl_raise(L, "protocol", NULL, "zlib.decompress: stream inflates to %d bytes, expected %d", (int)got, (int)size);
    if (r == LIBDEFLATE_SUCCESS && in_used == n) {
        lua_pushlstring(L, out, got);
        return 1;
    }
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
        return mpctl_raise(L, "protocol", NULL, "zlib.decompress: stream inflates to more than the expected %d bytes", (int)size);
    if (r == LIBDEFLATE_SUCCESS)
        return mpctl_raise(L, "protocol", NULL, "zlib.decompress: %d bytes of trailing data after the end of the stream at input offset %d",
                          (int)(n - in_used), (int)in_used);
    /* libdeflate does not say where; let zlib find the offset for the message. */
    lua_settop(L, 1);
    return inflate_oneshot(L, WRAP_ZLIB, "zlib.decompress");
}

/* zlib.decompress(data[, size]) -> data */
static int z_decompress(lua_State *L)
{
    if (!lua_isnoneornil(L, 2)) {
        lua_Integer size = luaL_checkinteger(L, 2);
        luaL_argcheck(L, size >= 0, 2, "size must be >= 0");
        return decompress_sized(L, (size_t)size);
    }
    return inflate_oneshot(L, WRAP_ZLIB, "zlib.decompress");
}

/* zlib.inflate_raw(data) -> data */
static int z_inflate_raw(lua_State *L)
{
    return inflate_oneshot(L, WRAP_RAW, "zlib.inflate_raw");
}

/* ---- incremental inflater ---------------------------------------------------------------- */

/* zlib.inflater([raw]) -> z.  z:feed(bytes) -> out, done
 * Bytes after the end of the stream are kept (z:unused()), not treated as an error: the caller
 * knows whether more data may follow. */
static int z_inflater(lua_State *L)
{
    push_inflater(L, lua_toboolean(L, 1) ? WRAP_RAW : WRAP_ZLIB);
    lua_pushliteral(L, "");
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static struct inflater *check_inflater(lua_State *L)
{
    struct inflater *z = luaL_checkudata(L, 1, INFLATER_MT);
    if (!z->live)
        luaL_error(L, "zlib inflater: already closed");
    return z;
}

static int inflater_feed(lua_State *L)
{
    struct inflater *z = check_inflater(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_settop(L, 2);
    if (z->done) {
        lua_getiuservalue(L, 1, 1);
        lua_pushvalue(L, 2);
        lua_concat(L, 2);
        lua_setiuservalue(L, 1, 1);
        lua_pushliteral(L, "");
        lua_pushboolean(L, 1);
        return 2;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t used = inflate_into(L, "zlib inflater", z, s, n, &b);
    luaL_pushresult(&b);
    if (used < n) {
        lua_pushlstring(L, s + used, n - used);
        lua_setiuservalue(L, 1, 1);
    }
    lua_pushboolean(L, z->done);
    return 2;
}

static int inflater_unused(lua_State *L)
{
    luaL_checkudata(L, 1, INFLATER_MT);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int inflater_totals(lua_State *L)
{
    struct inflater *z = luaL_checkudata(L, 1, INFLATER_MT);
    lua_pushinteger(L, (lua_Integer)z->zs.total_in);
    lua_pushinteger(L, (lua_Integer)z->zs.total_out);
    return 2;
}

static int inflater_done(lua_State *L)
{
    struct inflater *z = luaL_checkudata(L, 1, INFLATER_MT);
    lua_pushboolean(L, z->done);
    return 1;
}

static int inflater_tostring(lua_State *L)
{
    struct inflater *z = luaL_checkudata(L, 1, INFLATER_MT);
    lua_pushfstring(L, "mpctl.inflater (%s, %d in, %d out%s)", z->wrap == WRAP_ZLIB ? "zlib" : "raw",
                    (int)z->zs.total_in, (int)z->zs.total_out,
                    !z->live ? ", closed" : z->done ? ", done" : "");
    return 1;
}

int luaopen_mpctl_zlib(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"feed", inflater_feed},
        {"unused", inflater_unused},
        {"totals", inflater_totals},
        {"done", inflater_done},
        {"close", inflater_gc},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", inflater_gc},
        {"__close", inflater_gc},
        {"__tostring", inflater_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"compress", z_compress},
        {"decompress", z_decompress},
        {"inflater", z_inflater},
        {"deflate_raw", z_deflate_raw},
        {"inflate_raw", z_inflate_raw},
        {NULL, NULL},
    };
    mpctl_new_class(L, INFLATER_MT, meta, methods);
    if (luaL_newmetatable(L, COMPRESSOR_MT)) {
        lua_pushcfunction(L, compressor_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
