/* sim:// ports: mpctl itself runs the simulator (`<exe> sim NAME --listen fd://3 k=v ...`) on a
 * socketpair, and the port speaks RFC 2217 to it, so baud, DTR and RTS reach the simulator. The
 * backend is the RFC 2217 client's plus the child: its exit status explains an end of stream,
 * and closing the port stops it. */
#include "serial_rfc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The backend's private state: the RFC 2217 client's first (its hooks cast priv to it). */
struct sim_port {
    struct rfc_port rfc;
    pid_t child;
    int child_status; /* -1 until reaped */
};

static struct sim_port *sim(const struct port *p)
{
    return p->priv;
}

/* argv for `<exe> sim NAME --listen fd://3 k=v ...` from "NAME?k=v&k=v", built in a Lua table
 * so that nothing leaks if it raises. */
static int push_sim_argv(lua_State *L, const char *exe, const char *spec)
{
    size_t nl = strcspn(spec, "?");
    if (nl == 0 || strspn(spec, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != nl)
        mpctl_raise(L, "usage", NULL, "serial sim://%s: simulator names are letters, digits, '_' and '-'", spec);
    lua_newtable(L);
    int n = 0;
    lua_pushstring(L, exe);
    lua_rawseti(L, -2, ++n);
    lua_pushliteral(L, "sim");
    lua_rawseti(L, -2, ++n);
    lua_pushlstring(L, spec, nl);
    lua_rawseti(L, -2, ++n);
    lua_pushliteral(L, "--listen");
    lua_rawseti(L, -2, ++n);
    lua_pushliteral(L, "fd://3");
    lua_rawseti(L, -2, ++n);
    for (const char *q = spec[nl] ? spec + nl + 1 : spec + nl; *q;) {
        size_t kl = strcspn(q, "&");
        if (kl > 0) {
            lua_pushlstring(L, q, kl);
            lua_rawseti(L, -2, ++n);
        }
        q += kl + (q[kl] == '&');
    }
    return n;
}

static void child_exec(int sock, char **argv)
{
    if (sock == 3) {
        fcntl(3, F_SETFD, 0);
    } else if (dup2(sock, 3) < 0) {
        _exit(127);
    }
    /* Only stdio and the port go to the simulator (close_range: glibc 2.34+, Linux 5.9+). */
    if (close_range(4, ~0U, 0) != 0) {
        long maxfd = sysconf(_SC_OPEN_MAX);
        for (long fd = 4; fd < (maxfd > 0 && maxfd < 65536 ? maxfd : 65536); fd++)
            close((int)fd);
    }
    signal(SIGPIPE, SIG_DFL);
    /* A terminal's Ctrl-C reaches the whole process group. The simulator is stopped by its
     * parent (end of stream, then SIGTERM when the port closes), not by the key, so it must not
     * report the interrupt a second time: ignored here, and mpctl keeps a signal ignored at
     * start ignored (interrupt.c), as shells do for background jobs. */
    signal(SIGINT, SIG_IGN);
    execv(argv[0], argv);
    _exit(127);
}

static int sim_spawn(lua_State *L, const char *spec, pid_t *child)
{
    lua_getfield(L, LUA_REGISTRYINDEX, MPCTL_REG_EXE);
    const char *exe = lua_tostring(L, -1);
    if (exe == NULL)
        luaL_error(L, "serial sim://%s: the mpctl executable is unknown (registry %s unset)", spec,
                   MPCTL_REG_EXE);
    int n = push_sim_argv(L, exe, spec);
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        argv[i] = (char *)lua_tostring(L, -1); /* kept alive by the table below it */
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        mpctl_raise(L, "io", NULL, "serial sim://%s: socketpair: %s", spec, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(sv[0]);
        close(sv[1]);
        mpctl_raise(L, "io", NULL, "serial sim://%s: fork: %s", spec, strerror(err));
    }
    if (pid == 0)
        child_exec(sv[1], argv);
    close(sv[1]);
    lua_pop(L, 3);
    port_set_nonblock(sv[0]);
    *child = pid;
    return sv[0];
}

/* 1 once the child is gone: reaped here, or (ECHILD) already reaped elsewhere, when its pid
 * may belong to another process by now and must never be signalled. 0 while it runs. */
static int wait_child(pid_t pid, int *status, double seconds)
{
    double deadline = mpctl_now() + seconds;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno == ECHILD) {
            *status = -1; /* exit status unknown */
            return 1;
        }
        if (mpctl_now() >= deadline)
            return 0;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Reap the simulator: give it a moment to exit on its own, then (only when the port is closed)
 * SIGTERM, then SIGKILL. Not interruptible: it runs while an interrupt unwinds, and is bounded. */
static void sim_reap(struct port *p, double grace)
{
    struct sim_port *sp = sim(p);
    if (sp == NULL || sp->child <= 0)
        return;
    int st = 0;
    if (wait_child(sp->child, &st, grace)) {
        sp->child_status = st;
    } else if (p->fd < 0) {
        /* Port closed and the simulator still runs: ask, then insist. Only when closing: a
         * stream that merely ended (the child closed fd 3) leaves the child to exit. */
        kill(sp->child, SIGTERM);
        if (!wait_child(sp->child, &st, 1.0)) {
            kill(sp->child, SIGKILL);
            while (waitpid(sp->child, &st, 0) < 0 && errno == EINTR) {
            }
        }
        sp->child_status = st;
    } else {
        return;
    }
    sp->child = -1;
}

static void sim_on_eof(struct port *p)
{
    sim_reap(p, 0.5);
}

static void sim_push_eof_reason(lua_State *L, struct port *p)
{
    int st = sim(p)->child_status;
    if (st == -1)
        lua_pushfstring(L, "%s: the simulator closed its end of the port", p->name);
    else if (WIFEXITED(st))
        lua_pushfstring(L, "%s: the simulator exited with status %d", p->name, WEXITSTATUS(st));
    else
        lua_pushfstring(L, "%s: the simulator was killed by signal %d", p->name, WTERMSIG(st));
}

static void sim_push_caps(lua_State *L, const struct port *p)
{
    if (sim(p)->child > 0) { /* the simulator process, so tests can check it is gone */
        lua_pushinteger(L, sim(p)->child);
        lua_setfield(L, -2, "pid");
    }
}

static void sim_release(struct port *p)
{
    struct sim_port *sp = sim(p);
    if (sp == NULL)
        return;
    if (p->fd >= 0) { /* the child sees end of stream and can exit by itself */
        close(p->fd);
        p->fd = -1;
    }
    sim_reap(p, 1.0);
    rfc_port_clear(&sp->rfc);
    free(sp);
    p->priv = NULL;
}

static int sim_has_line(const struct port *p)
{
    (void)p;
    return 1;
}

const struct port_ops port_sim_ops = {
    .decode = rfc_decode_hook,
    .after_read = rfc_after_read_hook,
    .encode = rfc_encode_hook,
    .set_baud = rfc_client_set_baud,
    .set_signals = rfc_client_set_signals,
    .send_break = rfc_client_send_break,
    .flush_input = rfc_client_flush_input,
    .has_signals = sim_has_line,
    .has_baud = sim_has_line,
    .on_eof = sim_on_eof,
    .push_eof_reason = sim_push_eof_reason,
    .push_caps = sim_push_caps,
    .release = sim_release,
};

void sim_open(lua_State *L, struct port *p, const char *spec, double timeout)
{
    pid_t child = -1;
    int fd = sim_spawn(L, spec, &child);
    struct sim_port *sp = malloc(sizeof *sp);
    if (sp == NULL)
        abort();
    rfc_port_init(&sp->rfc, 0);
    sp->child = child;
    sp->child_status = -1;
    p->fd = fd;
    port_set_backend(p, &port_sim_ops, sp, "sim");
    rfc_client_start(L, p, timeout); /* on failure the caller's release stops the child */
}

