/* Interrupts in C (src/interrupt.c): a SIGINT sent by a child process ends a sleep, a serial
 * read and a Lua busy loop with an `interrupted` error object; errors.shield's hold keeps it
 * out until released; acknowledge forgets it. */
#include "nativetest.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A child that sends `sig` to us after `ms` milliseconds. */
static pid_t signal_later(int sig, int ms)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        kill(parent, sig);
        _exit(0);
    }
    return pid;
}

static void reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) {
    }
}

static void interrupted_case(lua_State *L, const char *what, const char *code)
{
    pid_t child = signal_later(SIGINT, 200);
    nt_lua(L, what, code);
    reap(child);
    mpctl_interrupt_acknowledge(L);
}

int main(void)
{
    lua_State *L = nt_state();
    mpctl_interrupt_install(L);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    lua_pushinteger(L, sv[0]);
    lua_setglobal(L, "FD");

    interrupted_case(L, "sleep",
                     "local ok, e = pcall(require('mpctl.time').sleep, 30)\n"
                     "assert(not ok, 'sleep ended by itself')\n"
                     "assert(e.kind == 'interrupted', tostring(e))\n"
                     "assert(e.signal == 2 and tostring(e):find('SIGINT'), tostring(e))\n"
                     "assert(getmetatable(e) == require('mpctl.interrupt').Error)\n");
    interrupted_case(L, "serial read",
                     "local p = require('mpctl.serial').wrap_fd(FD, 'socketpair')\n"
                     "local ok, e = pcall(p.read, p, 10, 30)\n"
                     "assert(not ok and e.kind == 'interrupted', tostring(e))\n");
    interrupted_case(L, "busy loop",
                     "local ok, e = pcall(function() local n = 0 while true do n = n + 1 end end)\n"
                     "assert(not ok and e.kind == 'interrupted', tostring(e))\n");
    interrupted_case(L, "held, then released",
                     "local intr = require('mpctl.interrupt')\n"
                     "intr.hold()\n"
                     "require('mpctl.time').sleep(0.5) -- the signal lands meanwhile and waits\n"
                     "assert(intr.pending() == 2, 'a signal is pending')\n"
                     "local ok, e = pcall(function() intr.release() while true do end end)\n"
                     "assert(not ok and e.kind == 'interrupted', tostring(e))\n");
    nt_lua(L, "acknowledged",
           "assert(require('mpctl.interrupt').pending() == nil)\n"
           "require('mpctl.time').sleep(0.01)\n");
    close(sv[1]);
    mpctl_interrupt_uninstall(L);
    return nt_finish(L, "test_interrupt");
}
