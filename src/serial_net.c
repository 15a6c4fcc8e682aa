/* Network and process transports for mpctl.serial: TCP connect/listen/accept for socket:// and
 * rfc2217://, and the sim:// child (mpctl itself running a simulator on a socketpair). */
#include "serial_port.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* "HOST:PORT" or "[V6]:PORT" into host and port strings (pushed nowhere: caller's buffers). */
static void split_hostport(lua_State *L, const char *url, const char *hp, char *host, size_t hostsz,
                           char *port, size_t portsz)
{
    const char *colon;
    const char *h = hp;
    size_t hl;
    if (*hp == '[') {
        const char *close = strchr(hp, ']');
        if (close == NULL || close[1] != ':')
            mpctl_raise(L, "usage", url, "serial %s: expected [ADDRESS]:PORT", url);
        h = hp + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL)
            mpctl_raise(L, "usage", url, "serial %s: expected HOST:PORT", url);
        hl = (size_t)(colon - hp);
    }
    size_t pl = strcspn(colon + 1, "?/");
    if (hl == 0 || hl >= hostsz || pl == 0 || pl >= portsz)
        mpctl_raise(L, "usage", url, "serial %s: expected HOST:PORT", url);
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl);
    port[pl] = '\0';
}

static void nodelay(int fd)
{
    /* Small request/response exchanges (SLIP commands, REPL lines) must not wait for Nagle. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int connect_one(lua_State *L, const struct addrinfo *ai, double deadline, int *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno == EINPROGRESS) {
        /* a signal (SIGCHLD of a simulator) must not end the connect early; Ctrl-C does, and the
         * socket must not leak when it does */
        struct pollfd pfd = {fd, POLLOUT, 0};
        int r = mpctl_poll_nothrow(L, &pfd, 1, deadline);
        socklen_t len = sizeof *err;
        if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) == 0 && *err == 0)
            return fd;
        if (r == 0)
            *err = ETIMEDOUT;
        else if (r == MPCTL_POLL_INTERRUPTED)
            *err = EINTR;
        else if (r < 0)
            *err = errno;
    } else {
        *err = errno;
    }
    close(fd);
    return -1;
}

int net_connect(lua_State *L, const char *url, const char *hostport, double timeout)
{
    char host[256], port[16];
    split_hostport(L, url, hostport, host, sizeof host, port, sizeof port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        mpctl_raise(L, "not_found", url, "serial %s: cannot resolve %s: %s", url, host, gai_strerror(gai));
    double deadline = mpctl_now() + timeout;
    int fd = -1, err = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && fd < 0 && err != EINTR; ai = ai->ai_next)
        fd = connect_one(L, ai, deadline, &err);
    freeaddrinfo(res);
    if (err == EINTR)
        mpctl_check_interrupt(L);
    if (fd < 0)
        mpctl_raise(L, err == ETIMEDOUT ? "timeout" : "io", url, "serial %s: connect: %s", url, strerror(err));
    nodelay(fd);
    return fd;
}

int net_listen(lua_State *L, const char *url, const char *hostport, int *port_out)
{
    char host[256], port[16];
    split_hostport(L, url, hostport, host, sizeof host, port, sizeof port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        mpctl_raise(L, "not_found", url, "serial %s: cannot resolve %s: %s", url, host, gai_strerror(gai));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 8) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        mpctl_raise(L, err == EADDRINUSE ? "busy" : mpctl_errno_kind(err), url, "serial %s: listen: %s", url,
                    strerror(err));
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    *port_out = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int net_accept(lua_State *L, int lfd, const char *url, double timeout)
{
    double deadline = mpctl_now() + timeout;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            nodelay(fd);
            return fd;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            mpctl_raise(L, mpctl_errno_kind(errno), url, "serial %s: accept: %s", url, strerror(errno));
        if (mpctl_now() >= deadline)
            return -1;
        if (mpctl_wait_fd(L, lfd, POLLIN, deadline) == 0 && mpctl_now() >= deadline)
            return -1;
    }
}

/* ---- sim:// ------------------------------------------------------------------------------- */

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
    execv(argv[0], argv);
    _exit(127);
}

int sim_spawn(lua_State *L, const char *spec, pid_t *child)
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

void sim_reap(struct port *p, double grace)
{
    if (p->child <= 0)
        return;
    int st = 0;
    if (wait_child(p->child, &st, grace)) {
        p->child_status = st;
    } else if (p->fd < 0) {
        /* Port closed and the simulator still runs: ask, then insist. Only when closing: a
         * stream that merely ended (the child closed fd 3) leaves the child to exit. */
        kill(p->child, SIGTERM);
        if (!wait_child(p->child, &st, 1.0)) {
            kill(p->child, SIGKILL);
            while (waitpid(p->child, &st, 0) < 0 && errno == EINTR) {
            }
        }
        p->child_status = st;
    } else {
        return;
    }
    p->child = -1;
}
