/* TCP for mpctl.serial: connect (with a deadline on the name lookup too), listen and accept for
 * socket:// (raw backend) and rfc2217:// (RFC 2217 backends). */
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

/* ---- name lookup with a deadline ----------------------------------------------------------
 * getaddrinfo blocks for as long as the resolver likes (DNS retries: tens of seconds) and can be
 * neither bounded nor cancelled. Numeric addresses (every test, most lab setups) resolve at once
 * in-process; a name is looked up in a child process that writes the addresses to a pipe, while
 * the parent waits with the caller's deadline through mpctl_poll (so Ctrl-C ends it too) and
 * kills the child when time is up. Chosen over glibc's getaddrinfo_a: its helper thread cannot be
 * stopped either, so a lookup that timed out would keep running inside mpctl, holding memory we
 * could not free; a child is gone for good when killed, and mpctl stays single-threaded. */

#define MAX_ADDRS 16

struct addr_rec {
    int family, socktype, protocol;
    socklen_t len;
    struct sockaddr_storage addr;
};

static int copy_addrs(const struct addrinfo *res, struct addr_rec *out, int max)
{
    int n = 0;
    for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out[n].addr)
            continue;
        out[n] = (struct addr_rec){ai->ai_family, ai->ai_socktype, ai->ai_protocol, ai->ai_addrlen, {0}};
        memcpy(&out[n].addr, ai->ai_addr, ai->ai_addrlen);
        n++;
    }
    return n;
}

/* Child: look up, write {int gai; int n; n records}, exit. */
static void resolver_child(int wfd, const char *host, const char *port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    struct {
        int gai, n;
        struct addr_rec recs[MAX_ADDRS];
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.gai = gai;
    msg.n = gai == 0 ? copy_addrs(res, msg.recs, MAX_ADDRS) : 0;
    ssize_t ignored = write(wfd, &msg, sizeof msg);
    (void)ignored;
    _exit(0);
}

/* Returns the number of addresses (> 0), or raises: not_found (no such host), timeout,
 * interrupted. */
static int resolve(lua_State *L, const char *url, const char *host, const char *port, double deadline,
                   struct addr_rec *out)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai == 0) {
        int n = copy_addrs(res, out, MAX_ADDRS);
        freeaddrinfo(res);
        return n;
    }
    if (gai != EAI_NONAME)
        mpctl_raise(L, "not_found", url, "serial %s: cannot resolve %s: %s", url, host, gai_strerror(gai));
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        mpctl_raise(L, "io", url, "serial %s: pipe: %s", url, strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        resolver_child(pfd[1], host, port);
    }
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        mpctl_raise(L, "io", url, "serial %s: fork: %s", url, strerror(errno));
    }
    struct {
        int gai, n;
        struct addr_rec recs[MAX_ADDRS];
    } msg;
    size_t got = 0;
    int r = 1;
    while (got < sizeof msg) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        r = mpctl_poll_nothrow(L, &p, 1, deadline);
        if (r <= 0)
            break; /* timeout, interrupt or a failed poll */
        ssize_t k = read(pfd[0], (char *)&msg + got, sizeof msg - got);
        if (k > 0)
            got += (size_t)k;
        else if (k == 0 || (errno != EINTR && errno != EAGAIN))
            break;
    }
    close(pfd[0]);
    if (got < sizeof msg)
        kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (r == MPCTL_POLL_INTERRUPTED)
        mpctl_check_interrupt(L);
    if (got < sizeof msg)
        mpctl_raise(L, r == 0 ? "timeout" : "io", url, "serial %s: cannot resolve %s: %s", url, host,
                    r == 0 ? "no answer from the resolver in time" : "the resolver failed");
    if (msg.gai != 0 || msg.n <= 0)
        mpctl_raise(L, "not_found", url, "serial %s: cannot resolve %s: %s", url, host,
                    msg.gai ? gai_strerror(msg.gai) : "no address");
    memcpy(out, msg.recs, sizeof *out * (size_t)msg.n);
    return msg.n;
}

static int connect_one(lua_State *L, const struct addr_rec *ai, double deadline, int *err)
{
    int fd = socket(ai->family, ai->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&ai->addr, ai->len) == 0)
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
    double deadline = mpctl_now() + timeout;
    struct addr_rec addrs[MAX_ADDRS];
    int n = resolve(L, url, host, port, deadline, addrs);
    int fd = -1, err = ECONNREFUSED;
    for (int i = 0; i < n && fd < 0 && err != EINTR; i++)
        fd = connect_one(L, &addrs[i], deadline, &err);
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

