/* JSON for mpctl.ui through cJSON; the Lua <-> JSON mapping is described in ui_json.h.
 * cJSON trees are owned by a userdata with __gc while they are built or read, so a Lua error
 * half way (a function inside the value, a bad key) cannot leak them. */
#include "ui_json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TREE_MT "mpctl.json.tree"
#define MAX_DEPTH 200
#define PATH_MAX_LEN 200

/* Address used as the null sentinel; never written. */
static const char null_sentinel = 0;

struct tree {
    cJSON *root;
};

static int tree_gc(lua_State *L)
{
    struct tree *t = luaL_checkudata(L, 1, TREE_MT);
    cJSON_Delete(t->root);
    t->root = NULL;
    return 0;
}

static struct tree *push_tree(lua_State *L)
{
    struct tree *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->root = NULL;
    if (luaL_newmetatable(L, TREE_MT)) {
        lua_pushcfunction(L, tree_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return t;
}

void ui_json_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&null_sentinel);
}

static int is_null(lua_State *L, int idx)
{
    return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == (void *)&null_sentinel;
}

void ui_json_push_array_mt(lua_State *L)
{
    if (luaL_newmetatable(L, UI_JSON_ARRAY_MT)) {
        lua_pushliteral(L, "json array");
        lua_setfield(L, -2, "__name");
    }
}

/* ---- encoding ------------------------------------------------------------------------------ */

struct enc {
    lua_State *L;
    char path[PATH_MAX_LEN + 8]; /* where we are, for error messages: .a.b[3] */
};

static void enc_fail(struct enc *e, const char *what)
{
    luaL_error(e->L, "json_encode: %s at %s", what, e->path[0] ? e->path : "the top level");
}

static void oom(lua_State *L)
{
    luaL_error(L, "json_encode: out of memory");
}

/* Length of a valid UTF-8 sequence at s (n bytes left), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Push a quoted, escaped JSON string for s[0..n). */
static void push_quoted(lua_State *L, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        char tmp[8];
        if (c == '"' || c == '\\') {
            luaL_addchar(&b, '\\');
            luaL_addchar(&b, (char)c);
            i++;
        } else if (c < 0x20) {
            const char *esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (esc == NULL) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
            luaL_addstring(&b, esc);
            i++;
        } else {
            size_t k = utf8_len(s + i, n - i);
            if (k == 0) {
                /* not UTF-8: keep the byte's value as a Latin-1 code point */
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                luaL_addstring(&b, tmp);
                i++;
            } else {
                luaL_addlstring(&b, (const char *)s + i, k);
                i += k;
            }
        }
    }
    luaL_addchar(&b, '"');
    luaL_pushresult(&b);
}

static cJSON *raw_item(lua_State *L, const char *text)
{
    cJSON *item = cJSON_CreateRaw(text);
    if (item == NULL)
        oom(L);
    return item;
}

static cJSON *number_item(struct enc *e, int idx)
{
    char buf[64];
    if (lua_isinteger(e->L, idx)) {
        snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(e->L, idx));
    } else {
        double d = lua_tonumber(e->L, idx);
        if (!isfinite(d))
            enc_fail(e, "cannot encode NaN or infinity");
        snprintf(buf, sizeof buf, "%.14g", d);
        if (strtod(buf, NULL) != d)
            snprintf(buf, sizeof buf, "%.17g", d);
    }
    return raw_item(e->L, buf);
}

static void attach(struct enc *e, cJSON *parent, const char *key, cJSON *item)
{
    int ok = key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item);
    if (!ok) {
        cJSON_Delete(item);
        oom(e->L);
    }
}

static void encode_value(struct enc *e, int idx, cJSON *parent, const char *key, int depth);

/* 1 if the table at idx should be a JSON array: the marker metatable, or keys exactly 1..n. */
static int is_array(lua_State *L, int idx, lua_Integer *len)
{
    if (lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, UI_JSON_ARRAY_MT);
        int marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked) {
            *len = (lua_Integer)lua_rawlen(L, idx);
            return 1;
        }
    }
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max)
            max = k;
        count++;
    }
    *len = count;
    return count > 0 && max == count;
}

struct keyref {
    const char *s;
    lua_Integer slot; /* index of the original key in the anchor table */
};

static int keycmp(const void *a, const void *b)
{
    return strcmp(((const struct keyref *)a)->s, ((const struct keyref *)b)->s);
}

/* Extend the error path with ".key" or "[i]"; returns the old length to cut back to. */
static size_t path_push_key(struct enc *e, const char *key)
{
    size_t old = strlen(e->path);
    if (old < PATH_MAX_LEN && key)
        snprintf(e->path + old, sizeof e->path - old, ".%s", key);
    return old;
}

static size_t path_push_index(struct enc *e, lua_Integer i)
{
    size_t old = strlen(e->path);
    if (old < PATH_MAX_LEN)
        snprintf(e->path + old, sizeof e->path - old, "[%lld]", (long long)i);
    return old;
}

static void encode_object(struct enc *e, int t, cJSON *obj, int depth)
{
    lua_State *L = e->L;
    lua_newtable(L); /* anchor: [2i-1] original key, [2i] key text */
    int anchor = lua_gettop(L);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        n++;
        lua_pushvalue(L, -1);
        lua_rawseti(L, anchor, 2 * n - 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, -1, &kl);
            for (size_t i = 0; i < kl;) {
                size_t c = k[i] ? utf8_len((const unsigned char *)k + i, kl - i) : 0;
                if (c == 0)
                    enc_fail(e, "object key is not NUL-free UTF-8");
                i += c;
            }
            lua_pushvalue(L, -1);
        } else if (lua_isinteger(L, -1)) {
            lua_pushfstring(L, "%I", lua_tointeger(L, -1));
        } else {
            lua_pushfstring(L, "cannot encode a %s key", luaL_typename(L, -1));
            enc_fail(e, lua_tostring(L, -1));
        }
        lua_rawseti(L, anchor, 2 * n);
    }
    struct keyref *keys = lua_newuserdatauv(L, sizeof *keys * (size_t)(n ? n : 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, anchor, 2 * i);
        keys[i - 1].s = lua_tostring(L, -1); /* kept alive by the anchor */
        keys[i - 1].slot = 2 * i - 1;
        lua_pop(L, 1);
    }
    qsort(keys, (size_t)n, sizeof *keys, keycmp);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, anchor, keys[i].slot);
        lua_rawget(L, t);
        size_t old = path_push_key(e, keys[i].s);
        encode_value(e, lua_gettop(L), obj, keys[i].s, depth + 1);
        e->path[old] = '\0';
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}

static void encode_value(struct enc *e, int idx, cJSON *parent, const char *key, int depth)
{
    lua_State *L = e->L;
    luaL_checkstack(L, 10, "json_encode: nested too deeply");
    cJSON *item = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        item = cJSON_CreateNull();
        break;
    case LUA_TBOOLEAN:
        item = cJSON_CreateBool(lua_toboolean(L, idx));
        break;
    case LUA_TNUMBER:
        item = number_item(e, idx);
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        push_quoted(L, s, n);
        item = raw_item(L, lua_tostring(L, -1));
        lua_pop(L, 1);
        break;
    }
    case LUA_TTABLE: {
        if (depth >= MAX_DEPTH)
            enc_fail(e, "tables nested too deeply (a cycle?)");
        lua_Integer len;
        int arr = is_array(L, idx, &len);
        item = arr ? cJSON_CreateArray() : cJSON_CreateObject();
        if (item == NULL)
            oom(L);
        attach(e, parent, key, item);
        if (arr) {
            for (lua_Integer i = 1; i <= len; i++) {
                lua_rawgeti(L, idx, i);
                size_t old = path_push_index(e, i);
                encode_value(e, lua_gettop(L), item, NULL, depth + 1);
                e->path[old] = '\0';
                lua_pop(L, 1);
            }
        } else {
            encode_object(e, idx, item, depth);
        }
        return;
    }
    case LUA_TLIGHTUSERDATA:
        if (is_null(L, idx)) {
            item = cJSON_CreateNull();
            break;
        }
        /* fall through */
    default:
        lua_pushfstring(L, "cannot encode a %s", luaL_typename(L, idx));
        enc_fail(e, lua_tostring(L, -1));
    }
    if (item == NULL)
        oom(L);
    attach(e, parent, key, item);
}

void ui_json_encode(lua_State *L, int idx, int pretty)
{
    idx = lua_absindex(L, idx);
    struct enc e;
    e.L = L;
    e.path[0] = '\0';
    struct tree *t = push_tree(L);
    /* A one-element array as holder gives every value (even a scalar) a parent. */
    t->root = cJSON_CreateArray();
    if (t->root == NULL)
        oom(L);
    encode_value(&e, idx, t->root, NULL, 0);
    cJSON *item = cJSON_GetArrayItem(t->root, 0);
    char *text = pretty ? cJSON_Print(item) : cJSON_PrintUnformatted(item);
    if (text == NULL)
        oom(L);
    lua_pushstring(L, text);
    cJSON_free(text);
    lua_remove(L, -2); /* the tree; freed by the GC */
}

/* ---- decoding ------------------------------------------------------------------------------ */

static void decode_item(lua_State *L, const cJSON *item, int depth)
{
    luaL_checkstack(L, 6, "json_decode: nested too deeply");
    if (cJSON_IsNull(item)) {
        ui_json_push_null(L);
    } else if (cJSON_IsFalse(item)) {
        lua_pushboolean(L, 0);
    } else if (cJSON_IsTrue(item)) {
        lua_pushboolean(L, 1);
    } else if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(item)) {
        lua_pushstring(L, item->valuestring);
    } else if (cJSON_IsArray(item)) {
        lua_createtable(L, cJSON_GetArraySize(item), 0);
        lua_Integer i = 0;
        for (const cJSON *c = item->child; c; c = c->next) {
            decode_item(L, c, depth + 1);
            lua_rawseti(L, -2, ++i);
        }
        ui_json_push_array_mt(L);
        lua_setmetatable(L, -2);
    } else if (cJSON_IsObject(item)) {
        lua_newtable(L);
        for (const cJSON *c = item->child; c; c = c->next) {
            lua_pushstring(L, c->string);
            decode_item(L, c, depth + 1);
            lua_rawset(L, -3);
        }
    } else {
        luaL_error(L, "json_decode: unexpected item type %d", item->type);
    }
}

void ui_json_decode(lua_State *L, const char *s, size_t len)
{
    const char *nul = memchr(s, '\0', len);
    if (nul)
        mpctl_raise(L, "protocol", NULL, "json_decode: NUL byte at offset %d", (int)(nul - s));
    struct tree *t = push_tree(L);
    const char *end = NULL;
    /* Lua strings end with a NUL after their length: pass it so trailing garbage is refused. */
    t->root = cJSON_ParseWithLengthOpts(s, len + 1, &end, 1);
    if (t->root == NULL) {
        size_t off = end && end >= s && end <= s + len ? (size_t)(end - s) : len;
        if (len == 0)
            mpctl_raise(L, "protocol", NULL, "json_decode: empty input");
        lua_pushlstring(L, s + off, len - off > 20 ? 20 : len - off);
        mpctl_raise(L, "protocol", NULL, "json_decode: syntax error at offset %d near \"%s\"", (int)off, lua_tostring(L, -1));
    }
    decode_item(L, t->root, 0);
    lua_remove(L, -2);
}
