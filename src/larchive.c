/* mpctl.archive: firmware bundles (.zip, .tar, .tar.gz/xz/zst ...) over libarchive.
 *
 *   archive.list(path) -> { {name=, size=?, type=, mode=, link=?}, ... }   (headers only)
 *   archive.read(path, name[, max]) -> data            (streams to the entry, nothing unpacked)
 *   archive.open(path) -> a;  a:next() -> info|nil;  a:read([n]) -> data ("" at the entry's end);
 *                             a:close(); __gc; __close
 *   for info, a in archive.each(path) do ... a:read() ... end   (closes the archive on break)
 *   archive.verify(path) -> entries     (reads every byte: CRCs, truncation)
 *   archive.extract(path, dir[, {max_bytes=}]) -> { names written }
 *
 * extract refuses, before writing anything: absolute names, `..` components, hardlinks,
 * device files/fifos/sockets, symlinks whose target is absolute or leaves the folder (including
 * through another symlink of the archive), and entries below a symlink. libarchive's
 * ARCHIVE_EXTRACT_SECURE_{SYMLINKS,NODOTDOT,NOABSOLUTEPATHS} guard the writes as a second line.
 * The target folder must be new or empty, so nothing already there can redirect a write. */
#include "mpctl.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARCHIVE_MT "mpctl.archive"
#define DEFAULT_MAX_READ ((lua_Integer)256 << 20)
#define DEFAULT_MAX_EXTRACT ((lua_Integer)1 << 30)

typedef struct {
    struct archive *a;
    struct archive_entry *entry; /* owned by libarchive, valid until the next header */
    int entry_done;
} lar;

/* A file that cannot be opened is not_found/access; one libarchive cannot read is malformed
 * input, refused before anything is extracted or flashed. */
static const char *archive_kind(struct archive *a)
{
    int err = archive_errno(a);
    if (err == ENOENT || err == EACCES || err == EPERM)
        return mpctl_errno_kind(err);
    return "refused";
}

static lar *check_lar(lua_State *L, int i)
{
    lar *h = luaL_checkudata(L, i, ARCHIVE_MT);
    if (h->a == NULL)
        luaL_error(L, "archive: handle is closed");
    return h;
}

static int lar_close(lua_State *L)
{
    lar *h = luaL_checkudata(L, 1, ARCHIVE_MT);
    if (h->a) {
        archive_read_free(h->a);
        h->a = NULL;
    }
    return 0;
}

static int lar_tostring(lua_State *L)
{
    lar *h = luaL_checkudata(L, 1, ARCHIVE_MT);
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "mpctl.archive(%s%s)", lua_tostring(L, -1), h->a ? "" : ", closed");
    return 1;
}

static const char *archive_path(lua_State *L, int i)
{
    lua_getiuservalue(L, i, 1);
    const char *p = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string is anchored in the user value */
    return p ? p : "?";
}

/* Pushes a new handle for path; raises when the file is not a readable archive. */
static lar *open_archive(lua_State *L, const char *path)
{
    lar *h = lua_newuserdatauv(L, sizeof *h, 1);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, ARCHIVE_MT);
    lua_pushstring(L, path);
    lua_setiuservalue(L, -2, 1);
    h->a = archive_read_new();
    if (h->a == NULL)
        luaL_error(L, "archive %s: out of memory", path);
    archive_read_support_filter_all(h->a);
    archive_read_support_format_all(h->a);
    h->entry_done = 1;
    if (archive_read_open_filename(h->a, path, 65536) != ARCHIVE_OK)
        mpctl_raise(L, archive_kind(h->a), path, "archive %s: %s", path, archive_error_string(h->a));
    return h;
}

/* open_archive for a handle used only inside one C function: marked to-be-closed, so an error
 * (corrupt entry, missing name) closes the file at once instead of at garbage collection. */
static lar *open_scoped(lua_State *L, const char *path)
{
    lar *h = open_archive(L, path);
    lua_toclose(L, -1);
    return h;
}

static const char *type_name(struct archive_entry *e)
{
    if (archive_entry_hardlink(e))
        return "hardlink";
    switch (archive_entry_filetype(e)) {
    case AE_IFREG: return "file";
    case AE_IFDIR: return "dir";
    case AE_IFLNK: return "symlink";
    case AE_IFCHR: return "char";
    case AE_IFBLK: return "block";
    case AE_IFIFO: return "fifo";
    case AE_IFSOCK: return "socket";
    default: return "other";
    }
}

static const char *entry_name(struct archive_entry *e)
{
    const char *n = archive_entry_pathname(e);
    return n ? n : "";
}

static void push_info(lua_State *L, struct archive_entry *e)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, entry_name(e));
    lua_setfield(L, -2, "name");
    if (archive_entry_size_is_set(e)) {
        lua_pushinteger(L, (lua_Integer)archive_entry_size(e));
        lua_setfield(L, -2, "size");
    }
    lua_pushstring(L, type_name(e));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(archive_entry_perm(e) & 07777));
    lua_setfield(L, -2, "mode");
    const char *link = archive_entry_hardlink(e);
    if (link == NULL)
        link = archive_entry_symlink(e);
    if (link) {
        lua_pushstring(L, link);
        lua_setfield(L, -2, "link");
    }
}

/* Advances to the next header; 1 with h->entry set, 0 at the end. Raises on a corrupt archive. */
static int next_header(lua_State *L, lar *h, const char *path)
{
    int rc = archive_read_next_header(h->a, &h->entry);
    if (rc == ARCHIVE_EOF) {
        h->entry = NULL;
        return 0;
    }
    if (rc < ARCHIVE_WARN)
        mpctl_raise(L, archive_kind(h->a), path, "archive %s: reading the entry after %s: %s", path,
                   h->entry ? entry_name(h->entry) : "the start", archive_error_string(h->a));
    h->entry_done = 0;
    return 1;
}

/* Reads up to max bytes of the current entry into a pushed string. */
static void read_entry(lua_State *L, lar *h, const char *path, lua_Integer max)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Integer total = 0;
    while (!h->entry_done) {
        size_t want = (size_t)((max - total) < 65536 ? (max - total) : 65536);
        if (want == 0)
            break;
        char *dst = luaL_prepbuffsize(&b, want);
        la_ssize_t n = archive_read_data(h->a, dst, want);
        if (n < 0)
            mpctl_raise(L, archive_kind(h->a), path, "archive %s: entry %s: %s", path, entry_name(h->entry), archive_error_string(h->a));
        if (n == 0) {
            h->entry_done = 1;
            break;
        }
        luaL_addsize(&b, (size_t)n);
        total += n;
    }
    luaL_pushresult(&b);
}

static int lar_next(lua_State *L)
{
    lar *h = check_lar(L, 1);
    if (!next_header(L, h, archive_path(L, 1))) {
        lua_pushnil(L);
        return 1;
    }
    push_info(L, h->entry);
    return 1;
}

static int lar_read(lua_State *L)
{
    lar *h = check_lar(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, DEFAULT_MAX_READ);
    luaL_argcheck(L, max >= 0, 2, "negative size");
    if (h->entry == NULL)
        return luaL_error(L, "archive %s: read before next()", archive_path(L, 1));
    read_entry(L, h, archive_path(L, 1), max);
    return 1;
}

/* Generic-for step: (info, handle) until the end, then nil. */
static int each_step(lua_State *L)
{
    lar *h = check_lar(L, 1);
    if (!next_header(L, h, archive_path(L, 1))) {
        lua_pushnil(L);
        return 1;
    }
    push_info(L, h->entry);
    lua_pushvalue(L, 1);
    return 2;
}

static int ar_open(lua_State *L)
{
    open_archive(L, luaL_checkstring(L, 1));
    return 1;
}

static int ar_each(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_pushcfunction(L, each_step);
    open_archive(L, path);
    lua_pushnil(L);
    lua_pushvalue(L, -2); /* to-be-closed: a `break` out of the loop closes the archive */
    return 4;
}

static int ar_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lar *h = open_scoped(L, path);
    lua_newtable(L);
    for (lua_Integer i = 1; next_header(L, h, path); i++) {
        push_info(L, h->entry);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int ar_verify(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lar *h = open_scoped(L, path);
    lua_newtable(L);
    char buf[65536];
    for (lua_Integer i = 1; next_header(L, h, path); i++) {
        push_info(L, h->entry);
        lua_rawseti(L, -2, i);
        la_ssize_t n;
        while ((n = archive_read_data(h->a, buf, sizeof buf)) > 0) {
        }
        if (n < 0)
            return mpctl_raise(L, archive_kind(h->a), path, "archive %s: entry %s: %s", path, entry_name(h->entry), archive_error_string(h->a));
    }
    return 1;
}

static int ar_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *want = luaL_checkstring(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, DEFAULT_MAX_READ);
    luaL_argcheck(L, max >= 0, 3, "negative size");
    lar *h = open_scoped(L, path);
    while (next_header(L, h, path)) {
        const char *n = entry_name(h->entry);
        if (strncmp(n, "./", 2) == 0)
            n += 2;
        if (strcmp(n, want) == 0 && archive_entry_filetype(h->entry) == AE_IFREG) {
            read_entry(L, h, path, max);
            return 1;
        }
    }
    return mpctl_raise(L, "not_found", path, "archive %s: no file entry named %s", path, want);
}

/* ---- safe extraction ------------------------------------------------------------------------ */

/* Splits on '/' and '\\' (a Windows-made zip may use either) and calls fn on each component. */
typedef int (*component_fn)(void *ctx, const char *comp, size_t len);

static int each_component(const char *path, component_fn fn, void *ctx)
{
    const char *p = path;
    while (*p) {
        const char *q = p;
        while (*q && *q != '/' && *q != '\\')
            q++;
        if (q > p) {
            int rc = fn(ctx, p, (size_t)(q - p));
            if (rc)
                return rc;
        }
        p = *q ? q + 1 : q;
    }
    return 0;
}

static int has_dotdot(void *ctx, const char *c, size_t n)
{
    (void)ctx;
    return n == 2 && c[0] == '.' && c[1] == '.';
}

static int is_absolute(const char *n)
{
    return n[0] == '/' || n[0] == '\\' ||
           (((n[0] >= 'A' && n[0] <= 'Z') || (n[0] >= 'a' && n[0] <= 'z')) && n[1] == ':');
}

/* Lexical walk of a symlink target from its own folder; the `set` table (stack index) holds
 * every symlink name of the archive, so a walk through another link is refused: only then is
 * the lexical result the physical one. */
typedef struct {
    lua_State *L;
    int links;
    char path[4096];
    size_t len;
    int depth;
    int bad; /* 1 escapes, 2 goes through a symlink */
} walk;

static int walk_step(void *ctx, const char *c, size_t n)
{
    walk *w = ctx;
    if (n == 1 && c[0] == '.')
        return 0;
    if (n == 2 && c[0] == '.' && c[1] == '.') {
        if (w->depth == 0) {
            w->bad = 1;
            return 1;
        }
        w->depth--;
        while (w->len > 0 && w->path[w->len - 1] != '/')
            w->len--;
        if (w->len > 0)
            w->len--;
        w->path[w->len] = '\0';
        return 0;
    }
    if (w->len + n + 2 >= sizeof w->path) {
        w->bad = 1;
        return 1;
    }
    if (w->len)
        w->path[w->len++] = '/';
    memcpy(w->path + w->len, c, n);
    w->len += n;
    w->path[w->len] = '\0';
    w->depth++;
    lua_getfield(w->L, w->links, w->path);
    int is_link = lua_toboolean(w->L, -1);
    lua_pop(w->L, 1);
    if (is_link) {
        w->bad = 2;
        return 1;
    }
    return 0;
}

/* Normalised name: no leading "./" or '/' runs; pushed on the stack. */
static const char *push_clean_name(lua_State *L, const char *n)
{
    while (n[0] == '.' && (n[1] == '/' || n[1] == '\0'))
        n += n[1] ? 2 : 1;
    size_t len = strlen(n);
    while (len > 0 && n[len - 1] == '/')
        len--;
    lua_pushlstring(L, n, len);
    return lua_tostring(L, -1);
}

/* Returns NULL when entry e may be written, else a reason. `links` = set of symlink names. */
static const char *entry_refusal(lua_State *L, struct archive_entry *e, const char *name, int links)
{
    const char *raw = entry_name(e);
    if (raw[0] == '\0')
        return "empty name";
    if (is_absolute(raw))
        return "absolute path";
    if (each_component(raw, has_dotdot, NULL))
        return "'..' in the path";
    if (archive_entry_hardlink(e))
        return "hardlink";
    switch (archive_entry_filetype(e)) {
    case AE_IFREG:
    case AE_IFDIR:
        break;
    case AE_IFLNK:
        break;
    default:
        return "device file, fifo or socket";
    }
    /* Below a symlink of the archive: the write would follow it. */
    walk w = {.L = L, .links = links};
    const char *slash = strrchr(name, '/');
    if (slash) {
        lua_pushlstring(L, name, (size_t)(slash - name));
        each_component(lua_tostring(L, -1), walk_step, &w);
        lua_pop(L, 1);
        if (w.bad == 2)
            return "inside a symlinked folder";
    }
    if (archive_entry_filetype(e) == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (target == NULL || target[0] == '\0')
            return "symlink without a target";
        if (is_absolute(target))
            return "symlink to an absolute path";
        each_component(target, walk_step, &w);
        if (w.bad == 1)
            return "symlink leaving the folder";
        if (w.bad == 2)
            return "symlink through another symlink";
    }
    return NULL;
}

/* First pass: every entry is checked before anything is written. Leaves the symlink set on
 * the stack. */
static void validate_all(lua_State *L, const char *path)
{
    lua_newtable(L);
    int links = lua_gettop(L);
    lar *h = open_scoped(L, path);
    while (next_header(L, h, path)) {
        if (archive_entry_filetype(h->entry) == AE_IFLNK) {
            push_clean_name(L, entry_name(h->entry));
            lua_pushboolean(L, 1);
            lua_settable(L, links);
        }
    }
    lua_pop(L, 1);
    h = open_scoped(L, path);
    while (next_header(L, h, path)) {
        const char *name = push_clean_name(L, entry_name(h->entry));
        const char *why = entry_refusal(L, h->entry, name, links);
        if (why)
            mpctl_raise(L, "refused", path, "archive %s: refusing entry \"%s\": %s (nothing extracted)", path, entry_name(h->entry), why);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int empty = 1;
    struct dirent *de;
    while (empty && (de = readdir(d)) != NULL)
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    closedir(d);
    return empty;
}

typedef struct {
    struct archive *disk;
    int cwd;
} extract_ctx;

static int extract_ctx_gc(lua_State *L)
{
    extract_ctx *x = lua_touserdata(L, 1);
    if (x->disk) {
        archive_write_free(x->disk);
        x->disk = NULL;
    }
    if (x->cwd >= 0) {
        if (fchdir(x->cwd) != 0) {
            /* nothing sane left to do; the descriptor is closed either way */
        }
        close(x->cwd);
        x->cwd = -1;
    }
    return 0;
}

/* Pushes a to-be-closed guard that frees the disk writer and returns to the saved working
 * directory, even when extraction raises. */
static extract_ctx *push_extract_guard(lua_State *L)
{
    extract_ctx *x = lua_newuserdatauv(L, sizeof *x, 0);
    x->disk = NULL;
    x->cwd = -1;
    lua_newtable(L);
    lua_pushcfunction(L, extract_ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, extract_ctx_gc);
    lua_setfield(L, -2, "__close");
    lua_setmetatable(L, -2);
    lua_toclose(L, -1);
    return x;
}

/* Copies the current entry's data to the disk writer; returns the new byte total. */
static lua_Integer copy_entry(lua_State *L, lar *h, struct archive *disk, const char *path, const char *name,
                              lua_Integer written, lua_Integer max_bytes)
{
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(h->a, buf, sizeof buf)) > 0) {
        written += n;
        if (written > max_bytes)
            mpctl_raise(L, "refused", path, "archive %s: more than %I bytes unpacked; stopped at %s", path, max_bytes, name);
        if (archive_write_data(disk, buf, (size_t)n) != n)
            mpctl_raise(L, "io", path, "archive %s: writing %s: %s", path, name, archive_error_string(disk));
    }
    if (n < 0)
        mpctl_raise(L, archive_kind(h->a), path, "archive %s: entry %s: %s", path, name, archive_error_string(h->a));
    return written;
}

/* Second pass, inside the target folder: writes every entry; pushes the list of names. */
static void extract_entries(lua_State *L, extract_ctx *x, const char *path, lua_Integer max_bytes)
{
    x->disk = archive_write_disk_new();
    archive_write_disk_set_options(x->disk, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
    lar *h = open_scoped(L, path);
    lua_newtable(L);
    lua_Integer written = 0, count = 0;
    while (next_header(L, h, path)) {
        const char *name = push_clean_name(L, entry_name(h->entry));
        if (name[0] == '\0') {
            lua_pop(L, 1);
            continue;
        }
        archive_entry_set_pathname(h->entry, name);
        if (archive_write_header(x->disk, h->entry) < ARCHIVE_WARN)
            mpctl_raise(L, "io", path, "archive %s: entry %s: %s", path, name, archive_error_string(x->disk));
        written = copy_entry(L, h, x->disk, path, name, written, max_bytes);
        if (archive_write_finish_entry(x->disk) < ARCHIVE_WARN)
            mpctl_raise(L, "io", path, "archive %s: entry %s: %s", path, name, archive_error_string(x->disk));
        lua_rawseti(L, -2, ++count);
    }
    if (archive_write_close(x->disk) < ARCHIVE_WARN)
        mpctl_raise(L, "io", path, "archive %s: finishing: %s", path, archive_error_string(x->disk));
    /* the names stay on top; the archive below them closes when ar_extract returns */
}

static int ar_extract(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    lua_Integer max_bytes = DEFAULT_MAX_EXTRACT;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "max_bytes");
        max_bytes = luaL_optinteger(L, -1, DEFAULT_MAX_EXTRACT);
        lua_pop(L, 1);
    }
    char *real = realpath(path, NULL); /* the archive is opened by absolute path after chdir */
    if (real == NULL)
        return mpctl_raise(L, mpctl_errno_kind(errno), path, "archive %s: %s", path, strerror(errno));
    lua_pushstring(L, real);
    free(real);
    path = lua_tostring(L, -1);

    validate_all(L, path);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return mpctl_raise(L, mpctl_errno_kind(errno), dir, "archive %s: cannot create %s: %s", path, dir, strerror(errno));
    if (!dir_is_empty(dir))
        return mpctl_raise(L, "refused", dir, "archive %s: extract folder %s must be new or empty", path, dir);

    /* Extraction runs inside dir so libarchive's NOABSOLUTEPATHS check applies to the names as
     * they are. */
    extract_ctx *x = push_extract_guard(L);
    x->cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (x->cwd < 0 || chdir(dir) != 0)
        return mpctl_raise(L, mpctl_errno_kind(errno), dir, "archive %s: cannot enter %s: %s", path, dir, strerror(errno));
    extract_entries(L, x, path, max_bytes);
    return 1;
}

int luaopen_mpctl_archive(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"open", ar_open},       {"each", ar_each},       {"list", ar_list}, {"read", ar_read},
        {"verify", ar_verify},   {"extract", ar_extract}, {NULL, NULL},
    };
    static const luaL_Reg methods[] = {
        {"next", lar_next},
        {"read", lar_read},
        {"close", lar_close},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", lar_close},
        {"__close", lar_close},
        {"__tostring", lar_tostring},
        {NULL, NULL},
    };
    mpctl_new_class(L, ARCHIVE_MT, meta, methods);
    luaL_newlib(L, fns);
    return 1;
}
