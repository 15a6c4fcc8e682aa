/* mpctl.ui: JSON round trips and the documented mapping (arrays, empty tables, null, bytes that
 * are not UTF-8), errors naming the path, --json log/progress/event lines on stdout, plain and
 * coloured logs, NO_COLOR, a progress bar drawn on a pty, raw_mode on a pty. */
#include "nativetest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

static void read_all(lua_State *L, int fd)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char buf[1024];
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) <= 0)
            break;
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        luaL_addlstring(&b, buf, (size_t)n);
    }
    luaL_pushresult(&b);
}

/* capture(fn) -> stdout, stderr written while fn ran (fds 1 and 2 go to pipes) */
static int l_capture(lua_State *L)
{
    int out[2], err[2];
    if (pipe(out) < 0 || pipe(err) < 0)
        return luaL_error(L, "pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    int save1 = dup(1), save2 = dup(2);
    dup2(out[1], 1);
    dup2(err[1], 2);
    lua_pushvalue(L, 1);
    int rc = lua_pcall(L, 0, 0, 0);
    fflush(stdout);
    fflush(stderr);
    dup2(save1, 1);
    dup2(save2, 2);
    close(save1);
    close(save2);
    close(out[1]);
    close(err[1]);
    read_all(L, out[0]);
    read_all(L, err[0]);
    close(out[0]);
    close(err[0]);
    if (rc != LUA_OK) {
        lua_pushvalue(L, -3);
        return lua_error(L);
    }
    return 2;
}

/* ontty(fn) -> what fn wrote to stderr, with stderr on a pty (a terminal 100 columns wide) */
static int l_ontty(lua_State *L)
{
    int master, slave;
    struct winsize ws = {.ws_row = 24, .ws_col = 100};
    if (openpty(&master, &slave, NULL, NULL, &ws) < 0)
        return luaL_error(L, "openpty: %s", strerror(errno));
    fflush(stderr);
    int save2 = dup(2);
    dup2(slave, 2);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, slave);
    int rc = lua_pcall(L, 1, 0, 0);
    fflush(stderr);
    dup2(save2, 2);
    close(save2);
    close(slave);
    read_all(L, master);
    close(master);
    if (rc != LUA_OK) {
        lua_pushvalue(L, -2);
        return lua_error(L);
    }
    return 1;
}

static int l_icanon(lua_State *L)
{
    struct termios t;
    if (tcgetattr((int)luaL_checkinteger(L, 1), &t) < 0)
        return luaL_error(L, "tcgetattr: %s", strerror(errno));
    lua_pushboolean(L, (t.c_lflag & ICANON) != 0);
    return 1;
}

static const char *const json =
    "local ui = require('mpctl.ui')\n"
    "local e, d = ui.json_encode, ui.json_decode\n"
    "assert(e({}) == '{}' and e(ui.array()) == '[]' and e(ui.array({})) == '[]')\n"
    "assert(e({1, 2, 3}) == '[1,2,3]')\n"
    "assert(e({b = {true, false, ui.null}, a = 1}) == '{\"a\":1,\"b\":[true,false,null]}')\n"
    "assert(e({[1] = 'x', [3] = 'y'}) == '{\"1\":\"x\",\"3\":\"y\"}')\n"
    "assert(e({[1] = 'x', k = 'y'}) == '{\"1\":\"x\",\"k\":\"y\"}')\n"
    "assert(e(nil) == 'null' and e(ui.null) == 'null' and e('x') == '\"x\"')\n"
    "assert(e(9007199254740993) == '9007199254740993')\n"
    "assert(e(0.1) == '0.1' and e(-2.5e-7) == '-2.5e-07' and e(1/3) == '0.33333333333333331')\n"
    "assert(e('q\"\\\\\\n\\t\\1') == '\"q\\\\\"\\\\\\\\\\\\n\\\\t\\\\u0001\"')\n"
    "assert(e('h\\195\\169\\0') == '\"h\\195\\169\\\\u0000\"')\n"
    "assert(e('\\255\\192\\128') == '\"\\\\u00ff\\\\u00c0\\\\u0080\"')\n"
    "assert(e({a = {1}}, true) == '{\\n\\t\"a\":\\t[1]\\n}', e({a = {1}}, true))\n"
    "assert(e({a = {1}}, {pretty = true}) == e({a = {1}}, true))\n"
    "local ok, err = pcall(e, {a = {b = {print}}})\n"
    "assert(not ok and err:find('cannot encode a function at .a.b[1]', 1, true), err)\n"
    "local cyc = {}; cyc.self = cyc\n"
    "ok, err = pcall(e, cyc)\n"
    "assert(not ok and err:find('nested too deeply', 1, true), err)\n"
    "ok, err = pcall(e, {x = 0/0})\n"
    "assert(not ok and err:find('NaN or infinity at .x', 1, true), err)\n"
    "ok, err = pcall(e, {[true] = 1})\n"
    "assert(not ok and err:find('cannot encode a boolean key', 1, true), err)\n"
    /* decoding */
    "local v = d(' {\"a\": [1, 2.5, \"x\\\\u00e9\", null, true, {}], \"b\": {\"c\": -3e2}} ')\n"
    "assert(v.a[1] == 1 and math.type(v.a[1]) == 'integer' and v.a[2] == 2.5 and v.a[3] == 'x\\195\\169')\n"
    "assert(v.a[4] == ui.null and v.a[5] == true and next(v.a[6]) == nil)\n"
    "assert(v.b.c == -300 and #v.a == 6)\n"
    "assert(e(d('[]')) == '[]' and e(d('{}')) == '{}' and e(d('[[],{}]')) == '[[],{}]')\n"
    "local doc = {name = 'esp32', sizes = {4096, 65536}, ok = true, note = ui.null, nested = {{x = 1}}}\n"
    "assert(e(d(e(doc))) == e(doc))\n"
    "ok, err = pcall(d, '{\"a\": nul}')\n"
    "assert(not ok and err:find('syntax error at offset 6 near \"nul}\"', 1, true), err)\n"
    "ok, err = pcall(d, '{} x')\n"
    "assert(not ok and err:find('syntax error at offset', 1, true), err)\n"
    "ok, err = pcall(d, '')\n"
    "assert(not ok and err:find('empty input', 1, true), err)\n"
    "ok, err = pcall(d, '[1]\\0')\n"
    "assert(not ok and err:find('NUL byte at offset 3', 1, true), err)\n";

static const char *const logs =
    "local ui = require('mpctl.ui')\n"
    "ui.configure{json = false, color = false, level = 'info'}\n"
    "local out, err = capture(function()\n"
    "  ui.log('info', 'hello %d', 42); ui.log('warn', '100%% sure'); ui.log('error', 'bad')\n"
    "  ui.log('verbose', 'hidden'); ui.log('debug', 'hidden')\n"
    "  ui.event({event = 'x'})\n"
    "end)\n"
    "assert(out == '' and err == 'hello 42\\nwarning: 100%% sure\\nerror: bad\\n', err)\n"
    "ui.configure{level = 'quiet'}\n"
    "out, err = capture(function() ui.log('info', 'x'); ui.log('warn', 'w') end)\n"
    "assert(err == 'warning: w\\n', err)\n"
    "ui.configure{level = 'debug', color = true}\n"
    "out, err = capture(function() ui.log('error', 'e'); ui.log('debug', 'd') end)\n"
    "assert(err == '\\27[1;31merror:\\27[0m e\\n\\27[2mdebug: d\\27[0m\\n', err)\n"
    "ui.configure{color = 'auto'}\n"
    "out, err = capture(function() ui.log('error', 'e') end)\n"
    "assert(err == 'error: e\\n', 'no colour when stderr is not a terminal')\n"
    "ui.configure{json = true, level = 'info'}\n"
    "out, err = capture(function()\n"
    "  ui.log('info', 'a \"quoted\" %s', 'word'); ui.log('debug', 'no')\n"
    "  ui.event({event = 'flash', offset = 4096, ok = true})\n"
    "  local p = ui.progress('write', 1000); p:update(500); p:finish('done')\n"
    "end)\n"
    "assert(err == '', err)\n"
    "local lines = {}\n"
    "for l in out:gmatch('[^\\n]+') do lines[#lines + 1] = ui.json_decode(l) end\n"
    "assert(#lines == 5, out)\n"
    "assert(lines[1].event == 'log' and lines[1].level == 'info' and lines[1].msg == 'a \"quoted\" word')\n"
    "assert(lines[2].event == 'flash' and lines[2].offset == 4096)\n"
    "assert(lines[3].event == 'progress' and lines[3].label == 'write' and lines[3].done == 0 and lines[3].total == 1000)\n"
    "assert(lines[4].done == 500 and lines[4].finished == nil)\n"
    "assert(lines[5].finished == true and lines[5].summary == 'done' and lines[5].done == 500)\n"
    "local c = ui.config(); assert(c.json == true and c.level == 'info')\n"
    "ui.configure{json = false}\n"
    /* not a terminal: no bar, one summary line at the end */
    "out, err = capture(function() local p = ui.progress('read', 2048); p:update(1024); p:add(1024); p:finish() end)\n"
    "assert(out == '' and err:match('^read: 2%.0 KiB in %d+%.%d s'), err)\n"
    /* counts that JSON cannot carry as integers are refused where they come in */
    "local p = ui.progress('n', 10)\n"
    "for _, bad in ipairs{0/0, math.huge, -math.huge, 2^60} do\n"
    "  local ok, e = pcall(p.update, p, bad)\n"
    "  assert(not ok and e:find('byte count must be a finite number', 1, true), e)\n"
    "end\n"
    "assert(not pcall(p.add, p, 0/0) and not pcall(ui.progress, 'n', math.huge))\n"
    "capture(function() p:finish('-') end)\n";

static const char *const tty =
    "local ui = require('mpctl.ui')\n"
    "ui.configure{json = false, color = 'auto', level = 'info'}\n"
    "local screen = ontty(function(fd)\n"
    "  assert(ui.isatty(2) and ui.isatty(fd) and not ui.isatty(99))\n"
    "  local p = ui.progress('flash', 4 * 1048576)\n"
    "  p:update(2 * 1048576)\n"
    "  ui.log('warn', 'in between')\n"
    "  p:finish('4.0 MiB written')\n"
    "end)\n"
    "assert(screen:find('\\rflash [', 1, true), screen)\n"
    "assert(screen:find('  50%    2.0 MiB / 4.0 MiB', 1, true), screen)\n"
    "assert(screen:find('\\27[1;33mwarning:\\27[0m in between', 1, true), 'colour on a tty')\n"
    "assert(screen:find('\\r\\27[Kflash: 4.0 MiB written', 1, true), screen)\n"
    "for line in screen:gmatch('[^\\r\\n]+') do assert(#line <= 99 + 10, 'fits the terminal') end\n"
    "ui.configure{level = 'quiet'}\n"
    "screen = ontty(function() local p = ui.progress('x', 10); p:update(5); p:finish() end)\n"
    "assert(screen == '', 'quiet: no bar, no summary')\n";

static const char *const raw =
    "local ui = require('mpctl.ui')\n"
    "ontty(function(fd)\n"
    "  assert(icanon(fd))\n"
    "  assert(ui.raw_mode(fd, true) == true and not icanon(fd))\n"
    "  assert(ui.raw_mode(fd, true) == true, 'twice is fine')\n"
    "  assert(ui.raw_mode(fd, false) == true and icanon(fd))\n"
    "  assert(ui.raw_mode(fd, false) == false)\n"
    "end)\n"
    "local ok, err = pcall(ui.raw_mode, 0 + 99, true)\n"
    "assert(not ok and err:find('ui.raw_mode(99)', 1, true), err)\n";

int main(void)
{
    lua_State *L = nt_state();
    lua_register(L, "capture", l_capture);
    lua_register(L, "ontty", l_ontty);
    lua_register(L, "icanon", l_icanon);
    unsetenv("NO_COLOR");
    setenv("TERM", "xterm", 1);
    nt_lua(L, "json", json);
    nt_lua(L, "logs", logs);
    nt_lua(L, "tty", tty);
    setenv("NO_COLOR", "1", 1);
    nt_lua(L, "no_color", "local ui = require('mpctl.ui')\n"
                          "ui.configure{level = 'info', color = 'auto'}\n"
                          "local s = ontty(function() ui.log('error', 'plain') end)\n"
                          "assert(s == 'error: plain\\r\\n', s)\n");
    nt_lua(L, "raw", raw);
    return nt_finish(L, "test_ui");
}
