/* mpctl.fs: atomic write (no temp files left, replaces), append with and without fsync, list
 * sorted, mkdir with parents, recursive remove, stat, path helpers, XDG folders from the
 * environment and the spec's defaults, private tmpdir, error messages naming the path. */
#include "nativetest.h"

#include <stdlib.h>

static const char *const files =
    "local fs = require('mpctl.fs')\n"
    "local dir = fs.tmpdir()\n"
    "local st = fs.stat(dir)\n"
    "assert(st.type == 'dir' and st.mode == tonumber('700', 8), 'private tmpdir')\n"
    "assert(dir:find('^/tmp/mpctl%-'), dir)\n"
    "local f = fs.join(dir, 'a.bin')\n"
    "local data = string.rep('\\0\\1\\2\\255', 50000)\n"
    "fs.write(f, data)\n"
    "assert(fs.read(f) == data and fs.stat(f).size == #data and fs.stat(f).type == 'file')\n"
    "fs.write(f, 'short')\n"
    "assert(fs.read(f) == 'short')\n"
    "local names = fs.list(dir)\n"
    "assert(#names == 1 and names[1] == 'a.bin', 'no temp file left: ' .. table.concat(names, ','))\n"
    "fs.write(fs.join(dir, 'x'), '', {mode = tonumber('600', 8)})\n"
    "assert(fs.stat(fs.join(dir, 'x')).mode == tonumber('600', 8) and fs.read(fs.join(dir, 'x')) == '')\n"
    "local h = fs.join(dir, 'history.jsonl')\n"
    "fs.append(h, '{\"n\":1}'); fs.append(h, '{\"n\":2}\\n', {fsync = false})\n"
    "assert(fs.read(h) == '{\"n\":1}\\n{\"n\":2}\\n')\n"
    "fs.mkdir(fs.join(dir, 'p/q/r'), {parents = true})\n"
    "fs.mkdir(fs.join(dir, 'p/q/r'), {parents = true})\n"
    "fs.write(fs.join(dir, 'p/q/r/file'), 'z')\n"
    "local ok, err = pcall(fs.mkdir, fs.join(dir, 'p'))\n"
    "assert(not ok and err:find('fs.mkdir ' .. dir .. '/p: File exists', 1, true), err)\n"
    "ok, err = pcall(fs.mkdir, fs.join(dir, 'a.bin/sub'), {parents = true})\n"
    "assert(not ok and err:find('a.bin: Not a directory', 1, true), err)\n"
    "names = fs.list(dir)\n"
    "assert(table.concat(names, ',') == 'a.bin,history.jsonl,p,x', table.concat(names, ','))\n"
    "fs.rename(fs.join(dir, 'x'), fs.join(dir, 'y'))\n"
    "assert(not fs.exists(fs.join(dir, 'x')) and fs.exists(fs.join(dir, 'y')))\n"
    "assert(fs.remove(fs.join(dir, 'y')) == true and fs.remove(fs.join(dir, 'y')) == false)\n"
    "ok, err = pcall(fs.remove, fs.join(dir, 'p'))\n"
    "assert(not ok and err:find('not empty', 1, true), err)\n"
    "assert(fs.remove(fs.join(dir, 'p'), {recursive = true}) == true and not fs.exists(fs.join(dir, 'p')))\n"
    "assert(fs.realpath(dir .. '/./a.bin') == fs.realpath(dir) .. '/a.bin')\n"
    "local missing = fs.join(dir, 'missing')\n"
    "local s, msg = fs.stat(missing)\n"
    "assert(s == nil and msg:find('No such file', 1, true))\n"
    "ok, err = pcall(fs.read, missing)\n"
    "assert(not ok and err:find('fs.read ' .. missing .. ': No such file or directory', 1, true), err)\n"
    "ok, err = pcall(fs.read, dir)\n"
    "assert(not ok and err:find('Is a directory', 1, true), err)\n"
    "ok, err = pcall(fs.write, fs.join(dir, 'nodir/f'), 'x')\n"
    "assert(not ok and err:find('cannot create a temporary file in ' .. dir .. '/nodir', 1, true), err)\n"
    "ok, err = pcall(fs.list, missing)\n"
    "assert(not ok and err:find('fs.list', 1, true), err)\n"
    "assert(#fs.read('/proc/self/status') > 0, 'files that report size 0')\n"
    "assert(fs.remove(dir, {recursive = true}) and not fs.exists(dir))\n";

static const char *const paths =
    "local fs = require('mpctl.fs')\n"
    "assert(fs.join('a', 'b', 'c') == 'a/b/c' and fs.join('a/', 'b') == 'a/b' and fs.join('a', '/abs') == '/abs')\n"
    "assert(fs.join('', 'b') == 'b' and fs.join('/', 'b') == '/b')\n"
    "assert(fs.dirname('a/b/c') == 'a/b' and fs.dirname('c') == '.' and fs.dirname('/c') == '/')\n"
    "assert(fs.dirname('a/b/') == 'a' and fs.dirname('/') == '/' and fs.dirname('a//b') == 'a')\n"
    "assert(fs.basename('a/b/c') == 'c' and fs.basename('a/b/') == 'b' and fs.basename('/') == '/')\n"
    "assert(fs.basename('c') == 'c')\n";

int main(void)
{
    lua_State *L = nt_state();
    setenv("TMPDIR", "/tmp", 1);
    nt_lua(L, "files", files);
    nt_lua(L, "paths", paths);
    setenv("HOME", "/home/u", 1);
    setenv("XDG_CONFIG_HOME", "/cfg", 1);
    setenv("XDG_CACHE_HOME", "relative/ignored", 1);
    unsetenv("XDG_STATE_HOME");
    setenv("XDG_DATA_HOME", "", 1);
    nt_lua(L, "xdg", "local fs = require('mpctl.fs')\n"
                     "assert(fs.home() == '/home/u')\n"
                     "assert(fs.xdg('config') == '/cfg/mpctl')\n"
                     "assert(fs.xdg('cache') == '/home/u/.cache/mpctl')\n"
                     "assert(fs.xdg('state') == '/home/u/.local/state/mpctl')\n"
                     "assert(fs.xdg('data') == '/home/u/.local/share/mpctl')\n"
                     "assert(not pcall(fs.xdg, 'runtime'))\n");
    return nt_finish(L, "test_fs");
}
