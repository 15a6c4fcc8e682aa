/* mpctl.archive: listing, streaming reads and safe extraction of archives written here with
 * libarchive's writer, including hostile ones (zip-slip, absolute names, escaping symlinks,
 * hardlinks, device files) and truncated ones. */
#include "nativetest.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR; 'h' = hardlink */
    const char *data_or_target;
} item;

static int write_archive(const char *path, int zip, const item *items, size_t n)
{
    struct archive *a = archive_write_new();
    if (zip) {
        archive_write_set_format_zip(a);
    } else {
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_gzip(a);
    }
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
        fprintf(stderr, "cannot write %s: %s\n", path, archive_error_string(a));
        archive_write_free(a);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, items[i].name);
        size_t len = 0;
        if (items[i].type == 'h') {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, items[i].data_or_target);
        } else {
            archive_entry_set_filetype(e, (unsigned)items[i].type);
            if (items[i].type == AE_IFLNK)
                archive_entry_set_symlink(e, items[i].data_or_target);
            if (items[i].type == AE_IFREG)
                len = strlen(items[i].data_or_target);
            if (items[i].type == AE_IFCHR)
                archive_entry_set_rdev(e, 0x0103);
        }
        archive_entry_set_perm(e, items[i].type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_size(e, (la_int64_t)len);
        archive_write_header(a, e);
        if (len)
            archive_write_data(a, items[i].data_or_target, len);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return 0;
}

static void truncate_copy(const char *src, const char *dst, double keep)
{
    FILE *f = fopen(src, "rb");
    FILE *g = fopen(dst, "wb");
    char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (g) {
        fwrite(buf, 1, (size_t)((double)n * keep), g);
        fclose(g);
    }
    if (f)
        fclose(f);
}

/* A payload big enough that truncation lands inside compressed data, not in a header. */
static char *big_payload(void)
{
    size_t n = 40000;
    char *p = malloc(n + 1);
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (char)('a' + (x >> 16) % 26);
    }
    p[n] = '\0';
    return p;
}

int main(void)
{
    char tmpl[] = "/tmp/mpctl-archive-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (dir == NULL)
        return 1;
    char path[512];
    char *big = big_payload();
    const item good[] = {
        {"flasher_args.json", AE_IFREG, "{\"flash_files\": {\"0x1000\": \"bootloader/bootloader.bin\"}}"},
        {"bootloader/", AE_IFDIR, ""},
        {"bootloader/bootloader.bin", AE_IFREG, "BOOT"},
        {"micropython.bin", AE_IFREG, big},
        {"latest", AE_IFLNK, "bootloader/bootloader.bin"},
        {"bootloader/up", AE_IFLNK, "../micropython.bin"},
    };
    struct {
        const char *file;
        int zip;
        item it[3];
        size_t n;
        const char *why;
    } bad[] = {
        {"slip.zip", 1, {{"ok.txt", AE_IFREG, "fine"}, {"../evil.txt", AE_IFREG, "pwned"}}, 2, "'..' in the path"},
        {"slip2.tar.gz", 0, {{"a/../../evil.txt", AE_IFREG, "pwned"}}, 1, "'..' in the path"},
        {"abs.tar.gz", 0, {{"/tmp/mpctl-evil.txt", AE_IFREG, "pwned"}}, 1, "absolute path"},
        {"esc.tar.gz", 0, {{"ok.txt", AE_IFREG, "x"}, {"esc", AE_IFLNK, "../../etc"}}, 2, "symlink leaving the folder"},
        {"abslink.tar.gz", 0, {{"etc", AE_IFLNK, "/etc"}}, 1, "symlink to an absolute path"},
        {"chain.tar.gz", 0, {{"d1/d2/c", AE_IFLNK, ".."}, {"a", AE_IFLNK, "d1/d2/c/../../.."}}, 2,
         "symlink through another symlink"},
        {"under.tar.gz", 0, {{"lnk", AE_IFLNK, "sub"}, {"lnk/x", AE_IFREG, "x"}}, 2, "inside a symlinked folder"},
        {"hard.tar.gz", 0, {{"a", AE_IFREG, "x"}, {"b", 'h', "a"}}, 2, "hardlink"},
        {"dev.tar.gz", 0, {{"null", AE_IFCHR, ""}}, 1, "device file"},
    };

    lua_State *L = nt_state();
    lua_pushstring(L, dir);
    lua_setglobal(L, "DIR");

    snprintf(path, sizeof path, "%s/good.zip", dir);
    CHECK(write_archive(path, 1, good, sizeof good / sizeof *good) == 0);
    snprintf(path, sizeof path, "%s/good.tar.gz", dir);
    CHECK(write_archive(path, 0, good, sizeof good / sizeof *good) == 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bad[i].file);
        CHECK(write_archive(path, bad[i].zip, bad[i].it, bad[i].n) == 0);
    }
    char src[512];
    snprintf(src, sizeof src, "%s/good.tar.gz", dir);
    snprintf(path, sizeof path, "%s/cut.tar.gz", dir);
    truncate_copy(src, path, 0.5);
    snprintf(src, sizeof src, "%s/good.zip", dir);
    snprintf(path, sizeof path, "%s/cut.zip", dir);
    truncate_copy(src, path, 0.5);
    snprintf(path, sizeof path, "%s/plain.bin", dir);
    truncate_copy("/proc/self/exe", path, 0.01);
    lua_pushstring(L, big);
    lua_setglobal(L, "BIG");

    for (int zip = 0; zip <= 1; zip++) {
        lua_pushstring(L, zip ? "good.zip" : "good.tar.gz");
        lua_setglobal(L, "GOOD");
        nt_lua(L, "list", "local ar = require('mpctl.archive')\n"
                          "local l = ar.list(DIR .. '/' .. GOOD)\n"
                          "assert(#l == 6, #l)\n"
                          "local by = {} for _, e in ipairs(l) do by[e.name] = e end\n"
                          "assert(by['bootloader/bootloader.bin'].type == 'file')\n"
                          "assert(by['bootloader/bootloader.bin'].size == 4)\n"
                          "assert(by['latest'].type == 'symlink' and by['latest'].link == 'bootloader/bootloader.bin')\n");
        nt_lua(L, "read", "local ar = require('mpctl.archive')\n"
                          "assert(ar.read(DIR .. '/' .. GOOD, 'bootloader/bootloader.bin') == 'BOOT')\n"
                          "assert(ar.read(DIR .. '/' .. GOOD, 'micropython.bin') == BIG)\n"
                          "assert(ar.read(DIR .. '/' .. GOOD, 'micropython.bin', 10) == BIG:sub(1, 10))\n"
                          "local ok, e = pcall(ar.read, DIR .. '/' .. GOOD, 'nope')\n"
                          "assert(not ok and e:find('no file entry named nope'), e)\n"
                          "ok, e = pcall(ar.read, DIR .. '/' .. GOOD, 'micropython.bin', -1)\n"
                          "assert(not ok and e:find('negative size'), e)\n"
                          /* failed calls close the archive at once, not at garbage collection */
                          "collectgarbage('stop')\n"
                          "local before = nfds()\n"
                          "pcall(ar.read, DIR .. '/' .. GOOD, 'nope')\n"
                          "pcall(ar.verify, DIR .. '/cut.zip')\n"
                          "local after = nfds()\n"
                          "collectgarbage('restart')\n"
                          "assert(after == before, before .. ' descriptors before, ' .. after .. ' after')\n");
        nt_lua(L, "each", "local ar = require('mpctl.archive')\n"
                          "local names, got = {}, nil\n"
                          "for info, a in ar.each(DIR .. '/' .. GOOD) do\n"
                          "  names[#names + 1] = info.name\n"
                          "  if info.name == 'micropython.bin' then\n"
                          "    local parts = {} repeat local c = a:read(1000) parts[#parts+1] = c until c == ''\n"
                          "    got = table.concat(parts)\n"
                          "  end\n"
                          "end\n"
                          "assert(#names == 6 and got == BIG)\n"
                          "for info, a in ar.each(DIR .. '/' .. GOOD) do break end\n"
                          "local h = ar.open(DIR .. '/' .. GOOD) local first = h:next() h:close()\n"
                          "assert(first.name == 'flasher_args.json')\n"
                          "assert(not pcall(h.next, h))\n");
        nt_lua(L, "extract", "local ar = require('mpctl.archive')\n"
                             "local out = DIR .. '/out-' .. GOOD\n"
                             "local names = ar.extract(DIR .. '/' .. GOOD, out)\n"
                             "assert(#names == 6, #names)\n"
                             "local f = assert(io.open(out .. '/micropython.bin', 'rb'))\n"
                             "assert(f:read('a') == BIG) f:close()\n"
                             "f = assert(io.open(out .. '/latest', 'rb')) assert(f:read('a') == 'BOOT') f:close()\n"
                             "local ok, e = pcall(ar.extract, DIR .. '/' .. GOOD, out)\n"
                             "assert(not ok and e:find('must be new or empty'), e)\n"
                             "ok, e = pcall(ar.extract, DIR .. '/' .. GOOD, out .. '-capped', {max_bytes = 1000})\n"
                             "assert(not ok and e:find('more than 1000 bytes unpacked', 1, true), e)\n");
    }

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lua_pushstring(L, bad[i].file);
        lua_setglobal(L, "BAD");
        lua_pushstring(L, bad[i].why);
        lua_setglobal(L, "WHY");
        nt_lua(L, bad[i].file,
               "local ar = require('mpctl.archive')\n"
               "local out = DIR .. '/x-' .. BAD\n"
               "local ok, e = pcall(ar.extract, DIR .. '/' .. BAD, out)\n"
               "assert(not ok, 'extract of ' .. BAD .. ' succeeded')\n"
               "assert(e:find(WHY, 1, true), e)\n"
               "assert(e:find('nothing extracted', 1, true), e)\n"
               "assert(not io.open(out .. '/ok.txt'), 'a file was written before the refusal')\n"
               "assert(not io.open(DIR .. '/evil.txt') and not io.open('/tmp/evil.txt'))\n"
               "assert(#ar.list(DIR .. '/' .. BAD) >= 1)\n");
    }

    nt_lua(L, "truncated", "local ar = require('mpctl.archive')\n"
                           "for _, n in ipairs({'cut.tar.gz', 'cut.zip'}) do\n"
                           "  local ok, e = pcall(ar.verify, DIR .. '/' .. n)\n"
                           "  assert(not ok, n .. ' verified')\n"
                           "  assert(e:find(n, 1, true), e)\n"
                           "  ok, e = pcall(ar.extract, DIR .. '/' .. n, DIR .. '/x-' .. n)\n"
                           "  assert(not ok, n .. ' extracted')\n"
                           "end\n"
                           "assert(#ar.verify(DIR .. '/good.zip') == 6)\n"
                           "local ok, e = pcall(ar.list, DIR .. '/plain.bin')\n"
                           "assert(not ok and e:find('plain.bin', 1, true), e)\n"
                           "ok, e = pcall(ar.list, DIR .. '/missing.zip')\n"
                           "assert(not ok and e:find('missing.zip', 1, true), e)\n");
    free(big);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return nt_finish(L, "test_archive");
}
