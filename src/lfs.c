/* mpctl.fs: files and folders for the firmware cache, backups and the history file.
 * write() is atomic (temp file in the same folder, fsync, rename, fsync of the folder) so a
 * crash never leaves a half-written cache entry or record; append() is one O_APPEND write per
 * line (optionally fsync'd) so concurrent mpctl processes do not interleave history lines. */
#include "mpctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(lua_State *L, const char *op, const char *path, int err)
{
    return mpctl_raise(L, mpctl_errno_kind(err), path, "fs.%s %s: %s", op, path, strerror(err));
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int opt_bool(lua_State *L, int opts, const char *key, int def)
{
    if (!lua_istable(L, opts))
        return def;
    lua_getfield(L, opts, key);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A writable copy of a mkstemp/mkdtemp template (Lua strings must never be modified), owned by
 * a userdata left on the stack. */
static char *template_copy(lua_State *L, const char *tmpl)
{
    size_t n = strlen(tmpl);
    char *buf = lua_newuserdatauv(L, n + 1, 0);
    memcpy(buf, tmpl, n + 1);
    return buf;
}

/* fs.read(path) -> string */
static int f_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(L, "read", path, errno);
    struct stat st;
    memset(&st, 0, sizeof st);
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return fail(L, "read", path, EISDIR);
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        /* size from fstat is a hint only (files in /proc and /sys report 0 or 4096) */
        size_t want = st.st_size > 0 && (size_t)st.st_size > luaL_bufflen(&b) ? (size_t)st.st_size - luaL_bufflen(&b) : 65536;
        if (want > (1u << 24))
            want = 1u << 24;
        if (want < 4096)
            want = 4096;
        char *p = luaL_prepbuffsize(&b, want);
        ssize_t n = read(fd, p, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return fail(L, "read", path, e);
        }
        if (n == 0)
            break;
        luaL_addsize(&b, (size_t)n);
    }
    close(fd);
    luaL_pushresult(&b);
    return 1;
}

/* Directory part of path for the temp file and the directory fsync: "." if none. */
static void push_dirname(lua_State *L, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        lua_pushliteral(L, ".");
    else if (slash == path)
        lua_pushliteral(L, "/");
    else
        lua_pushlstring(L, path, (size_t)(slash - path));
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* fs.write(path, data[, {mode = 0644}]): atomic replace */
static int f_write(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    mode_t mode = 0644;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "mode");
        mode = (mode_t)luaL_optinteger(L, -1, 0644);
        lua_pop(L, 1);
    }
    push_dirname(L, path);
    const char *dir = lua_tostring(L, -1);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *tmp = template_copy(L, lua_pushfstring(L, "%s/.%s.tmp-XXXXXX", dir, base));
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return mpctl_raise(L, mpctl_errno_kind(errno), path, "fs.write %s: cannot create a temporary file in %s: %s",
                           path, dir, strerror(errno));
    int err = 0;
    if (write_all(fd, data, n) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0)
        err = errno;
    if (close(fd) < 0 && err == 0)
        err = errno;
    if (err == 0 && rename(tmp, path) < 0)
        err = errno;
    if (err) {
        unlink(tmp);
        return fail(L, "write", path, err);
    }
    fsync_dir(dir);
    return 0;
}

/* fs.append(path, line[, {fsync = true}]): one write(2) with O_APPEND; a "\n" is added when
 * the line does not end with one. */
static int f_append(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *line = luaL_checklstring(L, 2, &n);
    int do_sync = opt_bool(L, 3, "fsync", 1);
    if (n == 0 || line[n - 1] != '\n') {
        lua_pushvalue(L, 2);
        lua_pushliteral(L, "\n");
        lua_concat(L, 2);
        line = lua_tolstring(L, -1, &n);
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(L, "append", path, errno);
    int err = 0;
    if (write_all(fd, line, n) < 0 || (do_sync && fsync(fd) < 0))
        err = errno;
    if (close(fd) < 0 && err == 0)
        err = errno;
    if (err)
        return fail(L, "append", path, err);
    return 0;
}

static int f_exists(lua_State *L)
{
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}

/* fs.stat(path[, {follow = false}]) -> {size=, type="file"|"dir"|"link"|"other", mtime=, mode=},
 * or nil, message when it cannot be stat'ed (missing). Symlinks are followed unless follow=false. */
static int f_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int follow = opt_bool(L, 2, "follow", 1);
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "fs.stat %s: %s", path, strerror(errno));
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : S_ISLNK(st.st_mode) ? "link" : "other");
    lua_setfield(L, -2, "type");
    lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* fs.list(dir) -> sorted names, without "." and ".." */
static int f_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (d == NULL)
        return fail(L, "list", path, errno);
    lua_newtable(L);
    lua_Integer n = 0;
    struct dirent *e;
    /* errno is reset before every readdir: the allocations between calls may leave it set, and
     * readdir signals an error only through errno */
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    int err = errno;
    closedir(d);
    if (err)
        return fail(L, "list", path, err);
    const char **names = lua_newuserdatauv(L, sizeof *names * (size_t)(n ? n : 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        names[i - 1] = lua_tostring(L, -1); /* kept alive by the table */
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_pushstring(L, names[i - 1]);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int mkdir_one(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0)
        return 0;
    struct stat st;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    return -1;
}

/* fs.mkdir(path[, {parents = true, mode = 0755}]); with parents an existing folder is fine */
static int f_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int parents = opt_bool(L, 2, "parents", 0);
    mode_t mode = 0755;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "mode");
        mode = (mode_t)luaL_optinteger(L, -1, 0755);
        lua_pop(L, 1);
    }
    if (!parents) {
        if (mkdir(path, mode) < 0)
            return fail(L, "mkdir", path, errno);
        return 0;
    }
    size_t len = strlen(path);
    char *buf = lua_newuserdatauv(L, len + 1, 0);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir_one(buf, mode) < 0)
                return fail(L, "mkdir", buf, errno);
            buf[i] = c;
        }
    }
    return 0;
}

/* fs.remove(path[, {recursive = true}]) -> true, or false when it did not exist */
static int remove_tree(lua_State *L, const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : fail(L, "remove", path, errno);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d == NULL)
            return fail(L, "remove", path, errno);
        lua_newtable(L);
        lua_Integer n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                lua_pushfstring(L, "%s/%s", path, e->d_name);
                lua_rawseti(L, -2, ++n);
            }
        }
        closedir(d);
        luaL_checkstack(L, 4, "fs.remove: folders nested too deeply");
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            remove_tree(L, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (rmdir(path) < 0)
            return fail(L, "remove", path, errno);
    } else if (unlink(path) < 0) {
        return fail(L, "remove", path, errno);
    }
    return 1;
}

static int f_remove(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (opt_bool(L, 2, "recursive", 0)) {
        lua_pushboolean(L, remove_tree(L, path));
        return 1;
    }
    if (remove(path) < 0) {
        if (errno == ENOENT) {
            lua_pushboolean(L, 0);
            return 1;
        }
        return fail(L, "remove", path, errno);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int f_rename(lua_State *L)
{
    const char *a = luaL_checkstring(L, 1);
    const char *b = luaL_checkstring(L, 2);
    if (rename(a, b) < 0)
        return mpctl_raise(L, mpctl_errno_kind(errno), a, "fs.rename %s -> %s: %s", a, b, strerror(errno));
    return 0;
}

/* fs.tmpdir() -> a new folder only this user can enter, under $TMPDIR or /tmp */
static int f_tmpdir(lua_State *L)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = "/tmp";
    char *tmpl = template_copy(L, lua_pushfstring(L, "%s/mpctl-XXXXXX", base));
    if (mkdtemp(tmpl) == NULL)
        return mpctl_raise(L, mpctl_errno_kind(errno), base, "fs.tmpdir: cannot create a folder in %s: %s", base,
                           strerror(errno));
    lua_pushstring(L, tmpl);
    return 1;
}

static int f_realpath(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    /* The path the kernel resolves (open O_PATH, then /proc/self/fd/N), not libc's realpath: under
     * the simulated USB bus, umockdev 0.17's realpath wrapper strips its testbed prefix from a
     * result that left the testbed (/dev/ttyACM0 -> /dev/pts/N) and overflows its buffer
     * ("stack smashing detected"). Without /proc, realpath. */
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return fail(L, "realpath", path, errno);
    char link[64], buf[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n > 0 && buf[0] == '/') {
        lua_pushlstring(L, buf, (size_t)n);
        return 1;
    }
    char *r = realpath(path, NULL);
    if (r == NULL)
        return fail(L, "realpath", path, n < 0 ? err : errno);
    lua_pushstring(L, r);
    free(r);
    return 1;
}

/* fs.join(a, b, ...): one "/" between parts; an absolute part restarts the path */
static int f_join(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int empty = 1;
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_checklstring(L, i, &len);
        if (len == 0)
            continue;
        if (s[0] == '/') {
            luaL_buffsub(&b, luaL_bufflen(&b));
        } else if (!empty && luaL_bufflen(&b) > 0 && luaL_buffaddr(&b)[luaL_bufflen(&b) - 1] != '/') {
            luaL_addchar(&b, '/');
        }
        luaL_addlstring(&b, s, len);
        empty = 0;
    }
    luaL_pushresult(&b);
    return 1;
}

/* fs.dirname("a/b/c") -> "a/b"; "c" -> "."; "/c" -> "/"; trailing slashes are ignored */
static int f_dirname(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    while (n > 1 && s[n - 1] == '/')
        n--;
    while (n > 0 && s[n - 1] != '/')
        n--;
    if (n == 0) {
        lua_pushliteral(L, ".");
        return 1;
    }
    while (n > 1 && s[n - 1] == '/')
        n--;
    lua_pushlstring(L, s, n);
    return 1;
}

/* fs.basename("a/b/c") -> "c"; "a/b/" -> "b"; "/" -> "/" */
static int f_basename(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    while (n > 1 && s[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && s[start - 1] != '/')
        start--;
    if (start == n && n > 0) {
        lua_pushliteral(L, "/");
        return 1;
    }
    lua_pushlstring(L, s + start, n - start);
    return 1;
}

static const char *home_dir(void)
{
    const char *h = getenv("HOME");
    if (h && *h)
        return h;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir ? pw->pw_dir : NULL;
}

static int f_home(lua_State *L)
{
    const char *h = home_dir();
    if (h == NULL)
        return mpctl_raise(L, "not_found", NULL, "fs.home: HOME is not set and the user has no home folder");
    lua_pushstring(L, h);
    return 1;
}

/* fs.xdg(kind) -> "<base>/mpctl" per the XDG Base Directory spec: $XDG_<KIND>_HOME when set to
 * an absolute path (relative values are invalid by the spec and ignored), else the default
 * under $HOME. The folder is not created. */
static int f_xdg(lua_State *L)
{
    static const char *const kinds[] = {"config", "cache", "state", "data", NULL};
    static const char *const vars[] = {"XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"};
    static const char *const defaults[] = {".config", ".cache", ".local/state", ".local/share"};
    int k = luaL_checkoption(L, 1, NULL, kinds);
    const char *v = getenv(vars[k]);
    if (v && v[0] == '/') {
        lua_pushfstring(L, "%s/mpctl", v);
        return 1;
    }
    const char *h = home_dir();
    if (h == NULL)
        return mpctl_raise(L, "not_found", NULL, "fs.xdg(\"%s\"): neither %s nor HOME is set", kinds[k], vars[k]);
    lua_pushfstring(L, "%s/%s/mpctl", h, defaults[k]);
    return 1;
}

int luaopen_mpctl_fs(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"read", f_read},
        {"write", f_write},
        {"append", f_append},
        {"exists", f_exists},
        {"stat", f_stat},
        {"list", f_list},
        {"mkdir", f_mkdir},
        {"remove", f_remove},
        {"rename", f_rename},
        {"tmpdir", f_tmpdir},
        {"realpath", f_realpath},
        {"join", f_join},
        {"dirname", f_dirname},
        {"basename", f_basename},
        {"home", f_home},
        {"xdg", f_xdg},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
