/* Interrupts: SIGINT, SIGTERM and SIGHUP become a Lua error of kind `interrupted`.
 *
 * How (contract 2 in docs/internals.md "Interrupts"):
 * - The handler records the signal and writes one byte to a self-pipe. Nothing else is safe in
 *   a handler (write(2) is async-signal-safe; no Lua, no malloc).
 * - Lua code is stopped at the next instruction boundary by a count hook (lua_sethook with
 *   LUA_MASKCOUNT, as Redis and lua.c stop long scripts). The handler arms it on the main thread
 *   with a count of 1, as lua.c's own SIGINT handler does (lua_sethook is the one Lua call safe
 *   there); it stays armed (every HOOK_COUNT instructions) while an interrupt is pending and
 *   goes away once the CLI acknowledges it. It is not armed all the time: in Lua 5.4 any hook
 *   makes the VM call out on every instruction, which doubled the time of a pure-Lua loop.
 *   Coroutines run on threads of their own, which the handler cannot name: coroutine.create and
 *   coroutine.wrap are wrapped so a coroutine arms its own thread's hook when it starts (the
 *   library uses no coroutines; recipes that do pay for the hook there).
 * - Blocking C waits poll the self-pipe next to their own fds (mpctl_poll), so a serial read,
 *   accept, sleep or process wait ends at once and raises; libcurl checks mpctl_interrupt_due
 *   in its progress callback.
 * - Delivery: the error is raised once, then the pending signal stays "sticky" but quiet for
 *   QUIET seconds so `<close>` handlers and error paths can unwind; code that swallowed the
 *   error and carried on is interrupted again after that. errors.shield (hold/release) keeps it
 *   out of short sections that must finish. The CLI acknowledges it when it reports the error.
 * - A second signal within 2 s of the first exits at once with 130, for the case where the
 *   unwinding itself hangs.
 *
 * Global state: a signal handler receives only the signal number, so what it writes must be
 * reachable without an argument: the pending signal, the pipe and the main state are
 * process-wide statics (the one unavoidable exception to "no global mutable state"). Everything
 * else (shield depth, quiet period) lives in a per-state block reached through
 * lua_getextraspace, which Lua copies into every new thread. */
#include "mpctl.h"

#include <lualib.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOOK_COUNT 1000    /* instructions between checks: microseconds of Lua */
#define QUIET 1.0          /* seconds after a delivery before a swallowed interrupt is re-raised */
#define DOUBLE_WINDOW 2.0  /* a second signal within this many seconds exits at once */

/* ---- the process-wide part (written by the signal handler) ----------------------------- */
static volatile sig_atomic_t pending_signo; /* signal waiting to be raised, 0 if none */
static int wake_rd = -1, wake_wr = -1;
static lua_State *main_state;
static double last_signal_time = -1e9; /* touched only inside the handler (all signals masked) */

struct intr_state {
    int held;           /* errors.shield depth */
    double quiet_until; /* no re-delivery before this monotonic time */
    int delivered;      /* signal number of the last delivery, 0 if none */
};

static struct intr_state *state_of(lua_State *L)
{
    return *(struct intr_state **)lua_getextraspace(L);
}

static void hook(lua_State *L, lua_Debug *ar);

static double handler_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe (POSIX.1-2008) */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int signo)
{
    int saved = errno;
    double t = handler_now();
    if (pending_signo != 0 && t - last_signal_time < DOUBLE_WINDOW) {
        static const char msg[] = "\nmpctl: interrupted again: exiting at once\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        _exit(130);
    }
    last_signal_time = t;
    pending_signo = signo;
    if (wake_wr >= 0) {
        char b = 1;
        ssize_t ignored = write(wake_wr, &b, 1);
        (void)ignored;
    }
    if (main_state)
        lua_sethook(main_state, hook, LUA_MASKCOUNT, 1);
    errno = saved;
}

static const char *signal_text(int signo)
{
    switch (signo) {
    case SIGINT: return "SIGINT (Ctrl-C)";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP (terminal closed)";
    default: return "a signal";
    }
}

int mpctl_interrupt_due(void)
{
    if (pending_signo == 0 || main_state == NULL)
        return 0;
    struct intr_state *s = state_of(main_state);
    return s && s->held == 0 && mpctl_now() >= s->quiet_until;
}

static void drain_pipe(void)
{
    char buf[64];
    while (wake_rd >= 0 && read(wake_rd, buf, sizeof buf) > 0) {
    }
}

static int interrupt_due_in(lua_State *L)
{
    if (pending_signo == 0)
        return 0;
    struct intr_state *s = state_of(L);
    return s != NULL && s->held == 0 && mpctl_now() >= s->quiet_until;
}

void mpctl_check_interrupt(lua_State *L)
{
    if (!interrupt_due_in(L))
        return;
    struct intr_state *s = state_of(L);
    int signo = pending_signo;
    s->quiet_until = mpctl_now() + QUIET;
    s->delivered = signo;
    drain_pipe();
    lua_pushfstring(L, "interrupted by %s", signal_text(signo));
    mpctl_push_error(L, "interrupted", NULL, lua_tostring(L, -1));
    lua_pushinteger(L, signo);
    lua_setfield(L, -2, "signal");
    lua_error(L);
}

static void hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (pending_signo == 0 && L == main_state) {
        lua_sethook(L, NULL, 0, 0); /* acknowledged: the main thread runs without a hook again */
        return;
    }
    if (lua_gethookcount(L) != HOOK_COUNT)
        lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
    mpctl_check_interrupt(L); /* held or quiet: no raise; checked again HOOK_COUNT later */
}

/* interrupt.arm(): give the running thread (a coroutine starting) the hook for good. */
int mpctl_interrupt_arm(lua_State *L)
{
    if (main_state != NULL)
        lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
    return 0;
}

int mpctl_interrupt_fd(void)
{
    return wake_rd;
}

/* How long the next poll may wait, and whether the self-pipe should be in the set: not while
 * an interrupt is pending but held (it would be readable all the time); during the quiet
 * period only until its end. */
static int wait_plan(lua_State *L, double deadline, int *use_pipe)
{
    int ms;
    double left = deadline - mpctl_now();
    if (left <= 0)
        ms = 0;
    else if (left > 86400.0)
        ms = 86400000;
    else
        ms = (int)ceil(left * 1000.0);
    *use_pipe = wake_rd >= 0;
    if (pending_signo != 0) {
        struct intr_state *s = state_of(L);
        *use_pipe = 0;
        if (s && s->held == 0) {
            double q = s->quiet_until - mpctl_now();
            int qms = q > 0 ? (int)ceil(q * 1000.0) : 0;
            if (qms < ms)
                ms = qms;
        }
    }
    return ms;
}

int mpctl_poll(lua_State *L, struct pollfd *fds, unsigned long nfds, double deadline)
{
    int r = mpctl_poll_nothrow(L, fds, nfds, deadline);
    if (r == MPCTL_POLL_INTERRUPTED)
        mpctl_check_interrupt(L);
    return r;
}

int mpctl_poll_nothrow(lua_State *L, struct pollfd *fds, unsigned long nfds, double deadline)
{
    struct pollfd local[17];
    struct pollfd *all = local;
    if (nfds + 1 > sizeof local / sizeof *local)
        all = lua_newuserdatauv(L, sizeof *all * (nfds + 1), 0); /* freed by the GC */
    for (;;) {
        if (interrupt_due_in(L)) {
            if (all != local)
                lua_pop(L, 1);
            return MPCTL_POLL_INTERRUPTED;
        }
        int use_pipe;
        int ms = wait_plan(L, deadline, &use_pipe);
        if (nfds)
            memcpy(all, fds, sizeof *fds * nfds);
        all[nfds] = (struct pollfd){use_pipe ? wake_rd : -1, POLLIN, 0};
        int r = poll(all, (nfds_t)(nfds + 1), ms);
        if (r < 0 && errno != EINTR) {
            if (all != local)
                lua_pop(L, 1);
            return -1;
        }
        if (r > 0 && all[nfds].revents) {
            drain_pipe();
            r--;
        }
        for (unsigned long i = 0; i < nfds; i++)
            fds[i].revents = r > 0 ? all[i].revents : 0;
        if (r > 0) {
            if (all != local)
                lua_pop(L, 1);
            return r;
        }
        if (mpctl_now() >= deadline) {
            if (all != local)
                lua_pop(L, 1);
            return interrupt_due_in(L) ? MPCTL_POLL_INTERRUPTED : 0;
        }
    }
}

int mpctl_wait_fd(lua_State *L, int fd, short events, double deadline)
{
    struct pollfd pfd = {fd, events, 0};
    int r = mpctl_poll(L, &pfd, 1, deadline);
    if (r < 0)
        return POLLERR;
    return r > 0 ? pfd.revents : 0;
}

void mpctl_sleep_l(lua_State *L, double seconds)
{
    if (!(seconds > 0))
        return;
    if (seconds > 1e9)
        seconds = 1e9;
    mpctl_poll(L, NULL, 0, mpctl_now() + seconds);
}

/* ---- Lua side: mpctl.interrupt is opened from src/linterrupt.c -------------------------- */

void mpctl_interrupt_hold(lua_State *L, int delta)
{
    struct intr_state *s = state_of(L);
    if (s && (delta > 0 || s->held > 0))
        s->held += delta;
    if (s && s->held == 0 && pending_signo != 0 && main_state != NULL)
        lua_sethook(L, hook, LUA_MASKCOUNT, 1); /* a signal came meanwhile: raise it right after */
}

int mpctl_interrupt_pending(void)
{
    return pending_signo;
}

void mpctl_interrupt_acknowledge(lua_State *L)
{
    struct intr_state *s = state_of(L);
    pending_signo = 0;
    drain_pipe();
    if (s)
        s->quiet_until = 0;
}

int mpctl_interrupt_delivered(lua_State *L)
{
    struct intr_state *s = state_of(L);
    return s ? s->delivered : 0;
}

void mpctl_interrupt_install(lua_State *L)
{
    struct intr_state *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    lua_setfield(L, LUA_REGISTRYINDEX, "mpctl.interrupt.state"); /* keeps it alive */
    *(struct intr_state **)lua_getextraspace(L) = s;
    if (wake_rd < 0) {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
            wake_rd = fds[0];
            wake_wr = fds[1];
        }
    }
    main_state = L;
    /* coroutines arm their own thread's hook when they start (see the top of this file) */
    static const char patch[] =
        "local arm, co = ...\n"
        "local create, wrap = co.create, co.wrap\n"
        "co.create = function(f)\n"
        "  if type(f) ~= 'function' then return create(f) end\n"
        "  return create(function(...) arm() return f(...) end)\n"
        "end\n"
        "co.wrap = function(f)\n"
        "  if type(f) ~= 'function' then return wrap(f) end\n"
        "  return wrap(function(...) arm() return f(...) end)\n"
        "end\n";
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_COLIBNAME);
    if (lua_istable(L, -1) && luaL_loadstring(L, patch) == LUA_OK) {
        lua_pushcfunction(L, mpctl_interrupt_arm);
        lua_pushvalue(L, -3);
        lua_pcall(L, 2, 0, 0);
    }
    lua_settop(L, top);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* one handler at a time: last_signal_time has one writer */
    sa.sa_flags = SA_RESTART;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        /* A signal ignored when mpctl started stays ignored (nohup, a parent that handles the
         * key itself: sim:// children), as shells do. */
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

void mpctl_interrupt_uninstall(lua_State *L)
{
    if (main_state != L)
        return;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction cur;
        if (sigaction(sigs[i], NULL, &cur) == 0 && cur.sa_handler == on_signal)
            signal(sigs[i], SIG_DFL); /* ours: back to the default; an ignored one stays */
    }
    main_state = NULL;
}
