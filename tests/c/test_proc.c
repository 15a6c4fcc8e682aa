/* mpctl.proc: pipes and pty children, exit codes and signals, cwd/env, a missing program and a
 * bad cwd reported by name, termination by close() and __gc. The test reads descriptors with
 * small C helpers so it does not depend on mpctl.serial. */
#include "nativetest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

/* readfd(fd, timeout) -> everything until EOF/EIO or the timeout (a bounded wait). */
static int l_readfd(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    double deadline = mpctl_now() + luaL_checknumber(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        double left = deadline - mpctl_now();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        char buf[512];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF, or EIO on a pty master once the child side is gone */
        luaL_addlstring(&b, buf, (size_t)n);
    }
    luaL_pushresult(&b);
    return 1;
}

static int l_writefd(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_pushinteger(L, write((int)luaL_checkinteger(L, 1), s, n));
    return 1;
}

static int l_closefd(lua_State *L)
{
    lua_pushinteger(L, close((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_fdvalid(lua_State *L)
{
    lua_pushboolean(L, fcntl((int)luaL_checkinteger(L, 1), F_GETFD) >= 0);
    return 1;
}

static const char *const pipes =
    "local proc = require('mpctl.proc')\n"
    "local p = proc.spawn{argv = {'/bin/sh', '-c', 'echo hi'}}\n"
    "assert(p:pid() > 0)\n"
    "local out = p:stdout_fd()\n"
    "assert(readfd(out, 10) == 'hi\\n')\n"
    "closefd(out)\n"
    "assert(p:wait(10) == 0)\n"
    "assert(p:wait() == 0, 'status is kept')\n"
    "assert(p:kill() == false, 'no signal to a reaped pid')\n"
    "assert(tostring(p):find('/bin/sh (pid', 1, true))\n"
    /* stdin -> stdout through cat, PATH lookup, exit code */
    "p = proc.spawn{argv = {'sh', '-c', 'cat; exit 3'}}\n"
    "local i, o = p:stdin_fd(), p:stdout_fd()\n"
    "writefd(i, 'ping'); closefd(i)\n"
    "assert(readfd(o, 10) == 'ping'); closefd(o)\n"
    "assert(p:wait(10) == 3)\n"
    /* cwd, env added and removed, stderr merged */
    "p = proc.spawn{argv = {'sh', '-c', 'pwd; echo \"$MPCTL_X-${HOME:-none}\" >&2'}, cwd = '/tmp',\n"
    "               env = {MPCTL_X = 'x1', HOME = false}, stderr = 'stdout'}\n"
    "o = p:stdout_fd()\n"
    "assert(readfd(o, 10) == '/tmp\\nx1-none\\n'); closefd(o)\n"
    "assert(p:wait(10) == 0)\n"
    "local ok, err = pcall(p.fd, p)\n"
    "assert(not ok and err:find('no pty master (spawned with pty=false)', 1, true), err)\n";

static const char *const errors =
    "local proc = require('mpctl.proc')\n"
    "local ok, err = pcall(proc.spawn, {argv = {'mpctl-no-such-program', 'x'}})\n"
    "assert(not ok and err:find('cannot run \"mpctl-no-such-program\": program not found (searched PATH=', 1, true), err)\n"
    "ok, err = pcall(proc.spawn, {argv = {'/nonexistent/prog'}})\n"
    "assert(not ok and err:find('cannot run \"/nonexistent/prog\": No such file or directory', 1, true), err)\n"
    "ok, err = pcall(proc.spawn, {argv = {'/etc/passwd'}})\n"
    "assert(not ok and err:find('Permission denied', 1, true), err)\n"
    "ok, err = pcall(proc.spawn, {argv = {'/bin/true'}, cwd = '/nonexistent-dir'})\n"
    "assert(not ok and err:find('working directory for \"/bin/true\": /nonexistent-dir: No such file', 1, true), err)\n"
    "ok, err = pcall(proc.spawn, {argv = {}})\n"
    "assert(not ok and err:find('argv must list', 1, true), err)\n"
    "ok, err = pcall(proc.spawn, {argv = {'true', 1}})\n"
    "assert(not ok and err:find('argv[2] is a number', 1, true), err)\n"
    "ok, err = pcall(proc.spawn, {argv = {'true'}, env = {X = {}}})\n"
    "assert(not ok and err:find('env.X must be', 1, true), err)\n"
    /* a failed spawn gives its pipes and pty back at once, not at garbage collection */
    "collectgarbage('stop')\n"
    "local before = nfds()\n"
    "for _, pty in ipairs{false, true} do\n"
    "  assert(not pcall(proc.spawn, {argv = {'/nonexistent/prog'}, pty = pty}))\n"
    "end\n"
    "local after = nfds()\n"
    "collectgarbage('restart')\n"
    "assert(after == before, ('descriptors open: %d before, %d after'):format(before, after))\n";

static const char *const pty =
    "local proc = require('mpctl.proc')\n"
    /* raw mode: no \\n -> \\r\\n translation, no echo; stdin is a tty */
    "local p = proc.spawn{argv = {'sh', '-c', 'test -t 0 && echo tty; read x; echo \"got $x\"'}, pty = true}\n"
    "local m = p:fd()\n"
    "writefd(m, 'abc\\n')\n"
    "local out = readfd(m, 10)\n"
    "assert(out == 'tty\\ngot abc\\n', out)\n"
    "closefd(m)\n"
    "assert(p:wait(10) == 0)\n"
    /* termination: close() sends SIGTERM and reaps */
    "p = proc.spawn{argv = {'sleep', '30'}, pty = true}\n"
    "local fd = p:fd()\n"
    "assert(p:wait(0) == nil, 'still running')\n"
    "local code, sig = p:close()\n"
    "assert(code == 128 + 15 and sig == 15, tostring(code))\n"
    "assert(fdvalid(fd), 'fd() handed the master over: close() must not close it')\n"
    "closefd(fd)\n"
    /* a child that ignores SIGTERM gets SIGKILL */
    "p = proc.spawn{argv = {'sh', '-c', 'trap \"\" TERM; echo ready; while :; do sleep 0.05; done'}}\n"
    "local o = p:stdout_fd()\n"
    "local ready = ''\n"
    "for _ = 1, 100 do ready = ready .. readfd(o, 0.1); if ready:find('ready') then break end end\n"
    "assert(ready == 'ready\\n', ready)\n"
    "code, sig = p:close()\n"
    "assert(sig == 9, tostring(sig))\n"
    "closefd(o)\n"
    /* kill with a named signal, then wait */
    "p = proc.spawn{argv = {'sleep', '30'}}\n"
    "assert(p:kill('INT') == true)\n"
    "code, sig = p:wait(10)\n"
    "assert(code == 130 and sig == 2)\n"
    "assert(not pcall(p.kill, p, 'NOPE'))\n"
    /* __gc of an unreferenced process reaps it and closes descriptors never handed over */
    "p = proc.spawn{argv = {'sleep', '30'}}\n"
    "local pid = p:pid(); p = nil; collectgarbage(); collectgarbage()\n"
    "PID = pid\n";

int main(void)
{
    lua_State *L = nt_state();
    lua_register(L, "readfd", l_readfd);
    lua_register(L, "writefd", l_writefd);
    lua_register(L, "closefd", l_closefd);
    lua_register(L, "fdvalid", l_fdvalid);
    nt_lua(L, "pipes", pipes);
    nt_lua(L, "errors", errors);
    nt_lua(L, "pty", pty);
    lua_getglobal(L, "PID");
    pid_t pid = (pid_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    CHECK(pid > 0 && kill(pid, 0) < 0 && errno == ESRCH);
    return nt_finish(L, "test_proc");
}
