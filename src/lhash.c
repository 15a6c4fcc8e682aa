/* mpctl.hash: MD5 / SHA-256 (OpenSSL libcrypto EVP), streaming and one-shot; CRC-32 (zlib).
 * MD5 is what the ESP loader's SPI_FLASH_MD5 verify returns; SHA-256 checks downloads. */
#include "mpctl.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define HASH_MT "mpctl.hash"
#define FILE_CHUNK 65536

struct hash {
    EVP_MD_CTX *ctx;
    const char *algo; /* static string from algo_names */
};

static const char *const algo_names[] = {"md5", "sha1", "sha256", "sha512", NULL};

static const EVP_MD *algo_md(int i)
{
    switch (i) {
    case 0: return EVP_md5();
    case 1: return EVP_sha1();
    case 2: return EVP_sha256();
    default: return EVP_sha512();
    }
}

static int push_hex(lua_State *L, const unsigned char *s, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 2 * n);
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 15];
    }
    luaL_pushresultsize(&b, 2 * n);
    return 1;
}

static int oneshot(lua_State *L, const EVP_MD *md, const char *what)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (!EVP_Digest(s, n, out, &outlen, md, NULL))
        return luaL_error(L, "hash.%s: libcrypto failure", what);
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int h_md5(lua_State *L)
{
    return oneshot(L, EVP_md5(), "md5");
}

static int h_sha256(lua_State *L)
{
    return oneshot(L, EVP_sha256(), "sha256");
}

static int h_hex(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    return push_hex(L, (const unsigned char *)s, n);
}

/* hash.crc32(data[, crc]) -> integer in 0..2^32-1; pass the previous result to continue. */
static int h_crc32(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer prev = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, prev >= 0 && prev <= 0xFFFFFFFFLL, 2, "crc must be in 0..0xFFFFFFFF");
    uLong crc = (uLong)prev;
    /* zlib takes uInt lengths: feed huge strings in pieces */
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, (const Bytef *)s, k);
        s += k;
        n -= k;
    }
    lua_pushinteger(L, (lua_Integer)crc);
    return 1;
}

/* ---- streaming handles ------------------------------------------------------------------- */

static struct hash *check_hash(lua_State *L, int idx)
{
    struct hash *h = luaL_checkudata(L, idx, HASH_MT);
    if (h->ctx == NULL)
        luaL_error(L, "hash: %s handle already closed", h->algo);
    return h;
}

static struct hash *new_hash(lua_State *L, int algo_arg, const char *def)
{
    int i = luaL_checkoption(L, algo_arg, def, algo_names);
    struct hash *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->ctx = NULL;
    h->algo = algo_names[i];
    luaL_setmetatable(L, HASH_MT);
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || !EVP_DigestInit_ex(h->ctx, algo_md(i), NULL))
        luaL_error(L, "hash.new(\"%s\"): libcrypto failure", h->algo);
    return h;
}

/* hash.new(algo) -> h, algo one of md5, sha1, sha256, sha512 */
static int h_new(lua_State *L)
{
    new_hash(L, 1, NULL);
    return 1;
}

static int hm_update(lua_State *L)
{
    struct hash *h = check_hash(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (!EVP_DigestUpdate(h->ctx, s, n))
        return luaL_error(L, "hash %s: update failed", h->algo);
    lua_settop(L, 1);
    return 1;
}

/* Finalises a copy, so digest() can be called again and update() continued afterwards. */
static size_t finish(lua_State *L, struct hash *h, unsigned char *out)
{
    unsigned int outlen = 0;
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    int ok = copy && EVP_MD_CTX_copy_ex(copy, h->ctx) && EVP_DigestFinal_ex(copy, out, &outlen);
    EVP_MD_CTX_free(copy);
    if (!ok)
        luaL_error(L, "hash %s: digest failed", h->algo);
    return outlen;
}

static int hm_digest(lua_State *L)
{
    struct hash *h = check_hash(L, 1);
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t n = finish(L, h, out);
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

static int hm_hexdigest(lua_State *L)
{
    struct hash *h = check_hash(L, 1);
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t n = finish(L, h, out);
    return push_hex(L, out, n);
}

static int hm_gc(lua_State *L)
{
    struct hash *h = luaL_checkudata(L, 1, HASH_MT);
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    return 0;
}

static int hm_tostring(lua_State *L)
{
    struct hash *h = luaL_checkudata(L, 1, HASH_MT);
    lua_pushfstring(L, "mpctl.hash %s%s", h->algo, h->ctx ? "" : " (closed)");
    return 1;
}

/* hash.file(path[, algo = "sha256"]) -> hex; algo may also be "crc32" (8 hex digits). */
static int h_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *algo = luaL_optstring(L, 2, "sha256");
    int is_crc = strcmp(algo, "crc32") == 0;
    struct hash *h = NULL;
    if (!is_crc)
        h = new_hash(L, 2, "sha256");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mpctl_raise(L, mpctl_errno_kind(errno), path, "hash.file %s: %s", path, strerror(errno));
    uLong crc = crc32(0, Z_NULL, 0);
    unsigned char buf[FILE_CHUNK];
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            close(fd);
            return mpctl_raise(L, mpctl_errno_kind(e), path, "hash.file %s: read: %s", path, strerror(e));
        }
        if (k == 0)
            break;
        if (is_crc)
            crc = crc32(crc, buf, (uInt)k);
        else if (!EVP_DigestUpdate(h->ctx, buf, (size_t)k)) {
            close(fd);
            return luaL_error(L, "hash.file %s: %s update failed", path, algo);
        }
    }
    close(fd);
    if (is_crc) {
        char hex[16];
        snprintf(hex, sizeof hex, "%08lx", (unsigned long)crc);
        lua_pushstring(L, hex);
        return 1;
    }
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t n = finish(L, h, out);
    return push_hex(L, out, n);
}

int luaopen_mpctl_hash(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"update", hm_update},
        {"digest", hm_digest},
        {"hexdigest", hm_hexdigest},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", hm_gc},
        {"__close", hm_gc},
        {"__tostring", hm_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"md5", h_md5},
        {"sha256", h_sha256},
        {"hex", h_hex},
        {"crc32", h_crc32},
        {"new", h_new},
        {"file", h_file},
        {NULL, NULL},
    };
    mpctl_new_class(L, HASH_MT, meta, methods);
    luaL_newlib(L, fns);
    return 1;
}
