/* mpctl.proc: child processes for simulators, peers in tests (MicroPython WebAssembly under a
 * pty, esptool-js, dfu-util) and `sim://` ports. Trusted library code only: recipes in the
 * sandbox do not get this module.
 *
 *   proc.spawn{argv = {...}, pty = bool, cwd = dir, env = {K = V | false}, stderr = "inherit"|"stdout"|"null"}
 *   p:pid()  p:fd()  p:stdin_fd()  p:stdout_fd()  p:wait([timeout]) -> code|nil, signal
 *   p:kill([sig])  p:close()  __gc / __close
 *   p:rusage() -> {user=, system=, maxrss=} once reaped (wait4: the child and the children it
 *                 waited for), else nil: the CPU a supervisor's children used
 *
 * env adds to (or, with false, removes from) the current environment.
 *   proc.setenv(name, value | nil)   sets (nil: removes) a variable of this process's environment,
 *                                    which every later child inherits (the test runner points
 *                                    TMPDIR at a folder of its own, removed after each test file)
 * Ownership of descriptors: p:fd(), p:stdin_fd() and p:stdout_fd() hand the descriptor to the
 * caller (normally straight into serial.wrap_fd, which then closes it); from that call on the
 * process object no longer closes it. Descriptors never asked for are closed by close()/__gc. */
#include "mpctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PROC_MT "mpctl.proc"

extern char **environ;

enum { FD_MASTER, FD_STDIN, FD_STDOUT, NFDS };

struct proc {
    pid_t pid;
    int fds[NFDS];   /* parent's ends, -1 if none */
    int given[NFDS]; /* handed to the caller: not ours to close */
    int reaped;
    int status; /* waitpid status once reaped */
    int pidfd;  /* -1 if the kernel has no pidfd_open */
    int have_ru;
    struct rusage ru; /* from wait4 once reaped */
};

/* What the child reports through the status pipe when it cannot exec. */
struct child_error {
    int stage; /* 0 = exec, 1 = chdir, 2 = pty/stdio setup */
    int err;
};

/* ---- child side (between fork and exec: async-signal-safe calls only) -------------------- */

static void child_fail(int status_fd, int stage, int err)
{
    struct child_error ce = {stage, err};
    ssize_t w = write(status_fd, &ce, sizeof ce);
    (void)w;
    _exit(127);
}

static void close_other_fds(int keep)
{
    /* close_range is Linux 5.9+; fall back to a bounded loop. */
    if ((keep == 3 || close_range(3, (unsigned)keep - 1, 0) == 0) && close_range((unsigned)keep + 1, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = 3; fd < max; fd++)
        if (fd != keep)
            close(fd);
}

struct spawn_args {
    const char *const *argv;
    char *const *envp;
    const char *cwd;
    int use_pty;
    int slave;         /* pty slave, or -1 */
    int in_r, out_w;   /* pipe ends for the child, or -1 */
    int stderr_mode;   /* 0 inherit, 1 stdout, 2 null */
    int status_w;
};

static void child_main(const struct spawn_args *a)
{
    /* main.c ignores SIGPIPE; an ignored disposition would survive exec. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    setsid();
    if (a->use_pty) {
        if (ioctl(a->slave, TIOCSCTTY, 0) < 0)
            child_fail(a->status_w, 2, errno);
        for (int fd = 0; fd < 3; fd++)
            if (dup2(a->slave, fd) < 0)
                child_fail(a->status_w, 2, errno);
    } else {
        if (dup2(a->in_r, 0) < 0 || dup2(a->out_w, 1) < 0)
            child_fail(a->status_w, 2, errno);
        if (a->stderr_mode == 1 && dup2(1, 2) < 0)
            child_fail(a->status_w, 2, errno);
        if (a->stderr_mode == 2) {
            int null = open("/dev/null", O_WRONLY);
            if (null < 0 || dup2(null, 2) < 0)
                child_fail(a->status_w, 2, errno);
        }
    }
    close_other_fds(a->status_w);
    if (a->cwd && chdir(a->cwd) < 0)
        child_fail(a->status_w, 1, errno);
    execvpe(a->argv[0], (char *const *)a->argv, a->envp);
    child_fail(a->status_w, 0, errno);
}

/* ---- parent side --------------------------------------------------------------------------- */

static struct proc *check_proc(lua_State *L)
{
    return luaL_checkudata(L, 1, PROC_MT);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0)
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/* argv strings into an array of pointers (a userdata on the stack; the strings stay alive
 * in the table at `tbl`). */
static const char **collect_argv(lua_State *L, int tbl)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, tbl);
    if (n < 1)
        luaL_error(L, "proc.spawn: argv must list the program and its arguments");
    const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        /* strings only: a converted number would be a temporary that the GC may free */
        if (lua_rawgeti(L, tbl, i) != LUA_TSTRING)
            luaL_error(L, "proc.spawn: argv[%d] is a %s, not a string", (int)i, luaL_typename(L, -1));
        argv[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1); /* still referenced by the table */
    }
    argv[n] = NULL;
    return argv;
}

/* environ with the overrides from the table at `env` (V = false removes K). The "K=V" strings
 * live in a table pushed below the returned array. */
static char **collect_env(lua_State *L, int env)
{
    lua_newtable(L);
    int strs = lua_gettop(L);
    lua_Integer n = 0;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        if (env) {
            lua_pushlstring(L, *e, (size_t)(eq - *e));
            int overridden = lua_rawget(L, env) != LUA_TNIL;
            lua_pop(L, 1);
            if (overridden)
                continue;
        }
        lua_pushstring(L, *e);
        lua_rawseti(L, strs, ++n);
    }
    if (env) {
        lua_pushnil(L);
        while (lua_next(L, env)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "proc.spawn: env keys must be strings");
            if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
                const char *k = lua_tostring(L, -2);
                if (*k == '\0' || strchr(k, '='))
                    luaL_error(L, "proc.spawn: bad environment variable name \"%s\"", k);
                lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
                lua_rawseti(L, strs, ++n);
            } else if (lua_type(L, -1) != LUA_TBOOLEAN || lua_toboolean(L, -1)) {
                luaL_error(L, "proc.spawn: env.%s must be a string or false", lua_tostring(L, -2));
            }
            lua_pop(L, 1);
        }
    }
    char **envp = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, strs, i);
        envp[i - 1] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    envp[n] = NULL;
    return envp;
}

static int open_pty(int *master, int *slave)
{
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    if (openpty(master, slave, NULL, NULL, &ws) < 0)
        return -1;
    /* Raw: MicroPython WebAssembly breaks raw-REPL entry if OPOST/ONLCR turns \n into \r\n
     * (shared/reference/micropython-targets.md). */
    struct termios t;
    if (tcgetattr(*slave, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(*slave, TCSANOW, &t);
    }
    set_cloexec(*master);
    set_cloexec(*slave);
    return 0;
}

static const char *stage_text(int stage)
{
    switch (stage) {
    case 0: return "cannot run";
    case 1: return "cannot change to the working directory for";
    default: return "cannot set up the terminal/pipes for";
    }
}

static int spawn_error(lua_State *L, const char *prog, const char *cwd, const struct child_error *ce)
{
    if (ce->stage == 0 && ce->err == ENOENT && strchr(prog, '/') == NULL) {
        const char *path = getenv("PATH");
        return mpctl_raise(L, "not_found", prog, "proc.spawn: cannot run \"%s\": program not found (searched PATH=%s)", prog,
                          path ? path : "(unset)");
    }
    if (ce->stage == 1)
        return mpctl_raise(L, mpctl_errno_kind(ce->err), prog, "proc.spawn: %s \"%s\": %s: %s", stage_text(1), prog, cwd ? cwd : "?", strerror(ce->err));
    return mpctl_raise(L, mpctl_errno_kind(ce->err), prog, "proc.spawn: %s \"%s\": %s", stage_text(ce->stage), prog, strerror(ce->err));
}

static int opt_field(lua_State *L, int opts, const char *key, int type, const char *want)
{
    int t = lua_getfield(L, opts, key);
    if (t != LUA_TNIL && t != type)
        luaL_error(L, "proc.spawn: %s must be %s, got %s", key, want, luaL_typename(L, -1));
    return t != LUA_TNIL;
}

static void terminate(struct proc *p);

/* proc.spawn{argv=, pty=, cwd=, env=, stderr=} -> p */
static int p_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    struct spawn_args a;
    memset(&a, 0, sizeof a);
    a.slave = a.in_r = a.out_w = -1;

    if (!opt_field(L, 1, "argv", LUA_TTABLE, "a table")) /* 2 */
        return luaL_error(L, "proc.spawn: argv is required");
    a.argv = collect_argv(L, 2); /* 3 */
    opt_field(L, 1, "pty", LUA_TBOOLEAN, "a boolean"); /* 4 */
    a.use_pty = lua_toboolean(L, 4);
    if (opt_field(L, 1, "cwd", LUA_TSTRING, "a string")) /* 5 */
        a.cwd = lua_tostring(L, 5);
    int has_env = opt_field(L, 1, "env", LUA_TTABLE, "a table"); /* 6 */
    a.envp = collect_env(L, has_env ? 6 : 0);                   /* 7, 8 */
    static const char *const stderr_modes[] = {"inherit", "stdout", "null", NULL};
    lua_getfield(L, 1, "stderr"); /* 9 */
    a.stderr_mode = luaL_checkoption(L, 9, "inherit", stderr_modes);

    struct proc *p = lua_newuserdatauv(L, sizeof *p, 1); /* 10 */
    p->pid = -1;
    for (int i = 0; i < NFDS; i++) {
        p->fds[i] = -1;
        p->given[i] = 0;
    }
    p->reaped = 1; /* nothing to reap until fork succeeds */
    p->pidfd = -1;
    p->have_ru = 0;
    luaL_setmetatable(L, PROC_MT);
    lua_pushstring(L, a.argv[0]);
    lua_setiuservalue(L, -2, 1);

    int status[2];
    if (pipe2(status, O_CLOEXEC) < 0)
        return mpctl_raise(L, "io", a.argv[0], "proc.spawn %s: pipe: %s", a.argv[0], strerror(errno));
    a.status_w = status[1];
    if (a.use_pty) {
        if (open_pty(&p->fds[FD_MASTER], &a.slave) < 0) {
            int e = errno;
            close(status[0]);
            close(status[1]);
            return mpctl_raise(L, "io", a.argv[0], "proc.spawn %s: openpty: %s", a.argv[0], strerror(e));
        }
    } else {
        int in[2] = {-1, -1}, out[2] = {-1, -1};
        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
            int e = errno;
            close(status[0]);
            close(status[1]);
            if (in[0] >= 0) { /* the first pipe was made: do not leak it */
                close(in[0]);
                close(in[1]);
            }
            return mpctl_raise(L, "io", a.argv[0], "proc.spawn %s: pipe: %s", a.argv[0], strerror(e));
        }
        a.in_r = in[0];
        p->fds[FD_STDIN] = in[1];
        p->fds[FD_STDOUT] = out[0];
        a.out_w = out[1];
    }

    pid_t pid = fork();
    if (pid == 0)
        child_main(&a);
    int fork_errno = errno;
    close(status[1]);
    if (a.slave >= 0)
        close(a.slave);
    if (a.in_r >= 0)
        close(a.in_r);
    if (a.out_w >= 0)
        close(a.out_w);
    if (pid < 0) {
        close(status[0]);
        terminate(p);
        return mpctl_raise(L, "io", a.argv[0], "proc.spawn %s: fork: %s", a.argv[0], strerror(fork_errno));
    }
    p->pid = pid;
    p->reaped = 0;

    /* The status pipe closes on a successful exec (CLOEXEC), or carries the child's errno. */
    struct child_error ce;
    ssize_t got;
    do {
        got = read(status[0], &ce, sizeof ce);
    } while (got < 0 && errno == EINTR);
    close(status[0]);
    if (got == (ssize_t)sizeof ce) {
        while (waitpid(pid, &p->status, 0) < 0 && errno == EINTR) {
        }
        p->reaped = 1;
        terminate(p); /* the pipes or pty master now, not at garbage collection */
        return spawn_error(L, a.argv[0], a.cwd, &ce);
    }
#ifdef SYS_pidfd_open
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (p->pidfd >= 0)
        set_cloexec(p->pidfd);
#endif
    return 1;
}

static int try_reap(struct proc *p)
{
    if (p->reaped)
        return 1;
    pid_t r;
    do {
        r = wait4(p->pid, &p->status, WNOHANG, &p->ru);
    } while (r < 0 && errno == EINTR);
    if (r == p->pid)
        p->have_ru = 1;
    if (r == p->pid || (r < 0 && errno == ECHILD)) {
        if (r < 0)
            p->status = 0; /* reaped elsewhere: exit status unknown */
        p->reaped = 1;
        close_fd(&p->pidfd);
    }
    return p->reaped;
}

/* Wait up to `timeout` seconds for the child to exit; pidfd poll when available, else short
 * sleeps (the kernel has no other way to wait for one child with a timeout). With a Lua state
 * the wait is interruptible (p:wait raises `interrupted` on Ctrl-C); without one (closing,
 * garbage collection) it is not, and is bounded by its timeout. */
static int wait_for(lua_State *L, struct proc *p, double timeout)
{
    double deadline = mpctl_now() + timeout;
    for (;;) {
        if (try_reap(p))
            return 1;
        double left = deadline - mpctl_now();
        if (left <= 0)
            return 0;
        if (p->pidfd >= 0) {
            struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
            if (L) {
                mpctl_wait_fd(L, p->pidfd, POLLIN, deadline);
                continue;
            }
            int ms = left > 86400 ? 86400000 : (int)(left * 1000) + 1; /* wait(math.huge) */
            poll(&pfd, 1, ms);
        } else {
            double step = left < 0.005 ? left : 0.005;
            struct timespec ts = {0, (long)(step * 1e9)};
            if (L)
                mpctl_sleep_l(L, step);
            else
                nanosleep(&ts, NULL);
        }
    }
}

static int push_status(lua_State *L, const struct proc *p)
{
    if (WIFEXITED(p->status)) {
        lua_pushinteger(L, WEXITSTATUS(p->status));
        return 1;
    }
    if (WIFSIGNALED(p->status)) {
        lua_pushinteger(L, 128 + WTERMSIG(p->status));
        lua_pushinteger(L, WTERMSIG(p->status));
        return 2;
    }
    lua_pushinteger(L, -1);
    return 1;
}

/* p:wait([timeout = 0]) -> exit code (128+N when killed by signal N, which is the 2nd result),
 * or nil while it is still running */
static int pm_wait(lua_State *L)
{
    struct proc *p = check_proc(L);
    double timeout = luaL_optnumber(L, 2, 0);
    if (!wait_for(L, p, timeout > 0 ? timeout : 0)) {
        lua_pushnil(L);
        return 1;
    }
    return push_status(L, p);
}

static int signal_arg(lua_State *L, int idx)
{
    static const char *const names[] = {"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT", NULL};
    static const int nums[] = {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGSTOP, SIGCONT};
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Integer s = luaL_checkinteger(L, idx);
        luaL_argcheck(L, s > 0 && s < NSIG, idx, "no such signal");
        return (int)s;
    }
    const char *s = luaL_optstring(L, idx, "TERM");
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0)
            return nums[i];
    return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal \"%s\"", s));
}

/* The child leads its own session, so signalling the group also reaches what it started
 * (e.g. `sh -c 'node ...'`). */
static void signal_child(struct proc *p, int sig)
{
    if (kill(-p->pid, sig) < 0)
        kill(p->pid, sig);
}

/* p:kill([sig = "TERM"]) -> true, or false when the process has already been reaped */
static int pm_kill(lua_State *L)
{
    struct proc *p = check_proc(L);
    int sig = signal_arg(L, 2);
    if (try_reap(p)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    signal_child(p, sig);
    lua_pushboolean(L, 1);
    return 1;
}

/* Stop and reap: SIGTERM, up to 1 s grace, SIGKILL, up to 2 s more. A child stuck in an
 * uninterruptible sleep after that is left as a zombie rather than hanging mpctl. */
static void terminate(struct proc *p)
{
    if (p->pid > 0 && !try_reap(p)) {
        signal_child(p, SIGTERM);
        if (!wait_for(NULL, p, 1.0)) {
            signal_child(p, SIGKILL);
            wait_for(NULL, p, 2.0);
        }
    }
    for (int i = 0; i < NFDS; i++)
        if (!p->given[i])
            close_fd(&p->fds[i]);
    close_fd(&p->pidfd);
}

static int pm_close(lua_State *L)
{
    struct proc *p = check_proc(L);
    terminate(p);
    if (p->reaped && p->pid > 0)
        return push_status(L, p);
    return 0;
}

static int pm_gc(lua_State *L)
{
    terminate(check_proc(L));
    return 0;
}

static double tv_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* p:rusage() -> {user=, system= (seconds), maxrss= (KiB)} once reaped, else nil */
static int pm_rusage(lua_State *L)
{
    struct proc *p = check_proc(L);
    if (!try_reap(p) || !p->have_ru) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, tv_seconds(p->ru.ru_utime));
    lua_setfield(L, -2, "user");
    lua_pushnumber(L, tv_seconds(p->ru.ru_stime));
    lua_setfield(L, -2, "system");
    lua_pushinteger(L, p->ru.ru_maxrss);
    lua_setfield(L, -2, "maxrss");
    return 1;
}

static int pm_pid(lua_State *L)
{
    struct proc *p = check_proc(L);
    lua_pushinteger(L, p->pid);
    return 1;
}

static int give_fd(lua_State *L, int which, const char *what)
{
    struct proc *p = check_proc(L);
    if (p->fds[which] < 0) {
        lua_getiuservalue(L, 1, 1);
        return luaL_error(L, "proc %s: no %s (spawned with pty=%s)", lua_tostring(L, -1), what,
                          which == FD_MASTER ? "false" : "true");
    }
    p->given[which] = 1;
    lua_pushinteger(L, p->fds[which]);
    return 1;
}

static int pm_fd(lua_State *L)
{
    return give_fd(L, FD_MASTER, "pty master");
}

static int pm_stdin_fd(lua_State *L)
{
    return give_fd(L, FD_STDIN, "stdin pipe");
}

static int pm_stdout_fd(lua_State *L)
{
    return give_fd(L, FD_STDOUT, "stdout pipe");
}

static int pm_tostring(lua_State *L)
{
    struct proc *p = check_proc(L);
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "mpctl.proc %s (pid %d%s)", lua_tostring(L, -1), (int)p->pid,
                    p->reaped ? ", exited" : "");
    return 1;
}

static int p_setenv(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (*name == '\0' || strchr(name, '=') != NULL)
        return luaL_error(L, "proc.setenv: bad environment variable name \"%s\"", name);
    int rc = lua_isnoneornil(L, 2) ? unsetenv(name) : setenv(name, luaL_checkstring(L, 2), 1);
    if (rc != 0)
        return mpctl_raise(L, mpctl_errno_kind(errno), name, "proc.setenv %s: %s", name, strerror(errno));
    return 0;
}

int luaopen_mpctl_proc(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"pid", pm_pid},
        {"fd", pm_fd},
        {"stdin_fd", pm_stdin_fd},
        {"stdout_fd", pm_stdout_fd},
        {"wait", pm_wait},
        {"kill", pm_kill},
        {"close", pm_close},
        {"rusage", pm_rusage},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", pm_gc},
        {"__close", pm_gc},
        {"__tostring", pm_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"spawn", p_spawn},
        {"setenv", p_setenv},
        {NULL, NULL},
    };
    mpctl_new_class(L, PROC_MT, meta, methods);
    luaL_newlib(L, fns);
    return 1;
}
