/* Byte movement for mpctl.serial ports: the input buffer, reads with poll() deadlines (through
 * the telnet codec on RFC 2217 ports), complete writes, and releasing a port's resources. */
#include "serial_port.h"

#include <errno.h>
#include <fcntl.h>
#include <libserialport.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

void port_init(struct port *p, int fd, enum port_kind kind, const char *name, const char *label)
{
    memset(p, 0, sizeof *p);
    p->fd = fd;
    p->kind = kind;
    p->name = strdup(name);
    p->label = label;
    p->baud = 115200;
    p->dtr = p->rts = -1;
    p->child = -1;
    p->child_status = -1;
    p->ack_timeout = 1.0;
    rfc_decoder_init(&p->dec);
    rfc_options_init(&p->opt);
}

int port_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- input buffer ---------------------------------------------------------------------- */

static void buf_reserve(struct port_buf *b, size_t extra)
{
    if (b->start > 0 && b->start + b->len + extra > b->cap) {
        memmove(b->data, b->data + b->start, b->len);
        b->start = 0;
    }
    if (b->len + extra > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + extra)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            abort(); /* as Lua's own allocator would: no sane recovery from OOM mid-read */
        b->data = d;
        b->cap = cap;
    }
}

void port_buf_append(struct port_buf *b, const char *data, size_t n)
{
    if (n == 0)
        return;
    buf_reserve(b, n);
    memcpy(b->data + b->start + b->len, data, n);
    b->len += n;
}

void port_buf_prepend(struct port_buf *b, const char *data, size_t n)
{
    if (n == 0)
        return;
    if (b->start >= n) {
        b->start -= n;
    } else {
        buf_reserve(b, n);
        memmove(b->data + n, b->data + b->start, b->len);
        b->start = 0;
    }
    memcpy(b->data + b->start, data, n);
    b->len += n;
}

void port_buf_consume(struct port_buf *b, size_t n)
{
    if (n >= b->len) {
        b->start = b->len = 0;
    } else {
        b->start += n;
        b->len -= n;
    }
}

const char *port_buf_ptr(const struct port_buf *b)
{
    return b->data ? b->data + b->start : "";
}

void port_buf_free(struct port_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- waiting ----------------------------------------------------------------------------- */

int port_ms_left(double deadline)
{
    double left = deadline - mpctl_now();
    if (left <= 0)
        return 0;
    if (left > 86400.0)
        return 86400000;
    return (int)ceil(left * 1000.0);
}

/* Wait for `events` on fd. Returns revents, or 0 on timeout. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        struct pollfd pfd = {fd, events, 0};
        int r = poll(&pfd, 1, port_ms_left(deadline));
        if (r > 0)
            return pfd.revents;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return POLLERR;
    }
}

/* ---- reading ----------------------------------------------------------------------------- */

static void on_telnet_event(void *ud, const struct rfc_event *ev)
{
    rfc_handle_event(ud, ev);
}

static void flush_ctl(lua_State *L, struct port *p)
{
    if (p->ctl_out.len == 0)
        return;
    (void)L;
    /* Replies are a few bytes and the peer is reading, so a short bounded wait is enough; a
     * failure here is not raised because the read side will see the hang-up and report it. */
    const char *data = port_buf_ptr(&p->ctl_out);
    size_t n = p->ctl_out.len, off = 0;
    double deadline = mpctl_now() + 5.0;
    while (off < n && p->fd >= 0) {
        ssize_t w = write(p->fd, data + off, n - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(p->fd, POLLOUT, deadline) != 0)
            continue;
        else
            break;
    }
    port_buf_consume(&p->ctl_out, n);
}

/* Bytes from the fd into the input buffer; returns data bytes added (0 if only telnet commands
 * came), -1 at end of stream, -2 if nothing was there. */
static ssize_t read_some(lua_State *L, struct port *p)
{
    char raw[16384];
    ssize_t r = read(p->fd, raw, sizeof raw);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return -2;
    if (r < 0 && (errno == EIO || errno == ECONNRESET))
        return -1; /* a pty whose other side closed, a USB adapter unplugged, a peer's RST */
    if (r < 0)
        return mpctl_raise(L, mpctl_errno_kind(errno), p->name, "serial %s: read: %s", p->name, strerror(errno));
    if (r == 0)
        return -1;
    if (p->kind != PORT_RFC_CLIENT && p->kind != PORT_RFC_SERVER) {
        port_buf_append(&p->in, raw, (size_t)r);
        return r;
    }
    char out[sizeof raw];
    size_t n = rfc_decode(&p->dec, (const uint8_t *)raw, (size_t)r, (uint8_t *)out, on_telnet_event, p);
    port_buf_append(&p->in, out, n);
    flush_ctl(L, p);
    return (ssize_t)n;
}

int port_fill_once(lua_State *L, struct port *p, double deadline)
{
    if (p->fd < 0)
        return mpctl_raise(L, "io", p->name, "serial %s: port is closed", p->name);
    for (;;) {
        if (p->eof)
            return -1;
        int rev = mpctl_wait_fd(L, p->fd, POLLIN, deadline); /* raises `interrupted` on Ctrl-C */
        if (rev == 0)
            return 0;
        ssize_t n = read_some(L, p);
        if (n == -1 || (n == -2 && (rev & (POLLHUP | POLLERR)) && !(rev & POLLIN))) {
            p->eof = 1;
            if (p->child > 0)
                sim_reap(p, 0.5);
            return -1;
        }
        if (n >= 0)
            return 1;
        if (mpctl_now() >= deadline)
            return 0;
    }
}

int port_fill(lua_State *L, struct port *p, double deadline)
{
    for (;;) {
        size_t before = p->in.len;
        int r = port_fill_once(L, p, deadline);
        if (r <= 0)
            return r;
        if (p->in.len > before)
            return 1;
        if (mpctl_now() >= deadline)
            return 0;
    }
}

void port_push_eof_reason(lua_State *L, struct port *p)
{
    if (p->child > 0 || p->child_status != -1) {
        int st = p->child_status;
        if (st == -1)
            lua_pushfstring(L, "%s: the simulator closed its end of the port", p->name);
        else if (WIFEXITED(st))
            lua_pushfstring(L, "%s: the simulator exited with status %d", p->name, WEXITSTATUS(st));
        else
            lua_pushfstring(L, "%s: the simulator was killed by signal %d", p->name, WTERMSIG(st));
    } else {
        lua_pushfstring(L, "%s: the other end closed the port", p->name);
    }
}

/* ---- writing ----------------------------------------------------------------------------- */

void port_write_raw(lua_State *L, struct port *p, const char *data, size_t n, double deadline)
{
    if (p->fd < 0)
        mpctl_raise(L, "io", p->name, "serial %s: port is closed", p->name);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(p->fd, data + off, n - off);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            if (mpctl_wait_fd(L, p->fd, POLLOUT, deadline) == 0)
                mpctl_raise(L, "timeout", p->name, "serial %s: write: timeout with %d of %d bytes written", p->name,
                           (int)off, (int)n);
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET || errno == EIO)) {
            p->eof = 1;
            if (p->child > 0)
                sim_reap(p, 0.5);
            port_push_eof_reason(L, p);
            mpctl_raise(L, "eof", p->name, "serial %s: write: %s (%s)", p->name, strerror(errno),
                        lua_tostring(L, -1));
        }
        mpctl_raise(L, w < 0 ? mpctl_errno_kind(errno) : "io", p->name, "serial %s: write: %s", p->name,
                    w < 0 ? strerror(errno) : "wrote nothing");
    }
}

void port_write_all(lua_State *L, struct port *p, const char *data, size_t n, double deadline)
{
    if (p->kind != PORT_RFC_CLIENT && p->kind != PORT_RFC_SERVER) {
        port_write_raw(L, p, data, n, deadline);
        return;
    }
    /* Escape in chunks through a Lua buffer so an error mid-write leaks nothing. */
    const size_t chunk = 4096;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        luaL_Buffer b;
        uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, 2 * k);
        size_t m = rfc_escape((const uint8_t *)data + off, k, out);
        luaL_pushresultsize(&b, m);
        port_write_raw(L, p, lua_tostring(L, -1), m, deadline);
        lua_pop(L, 1);
    }
}

/* ---- release ----------------------------------------------------------------------------- */

void port_release(struct port *p)
{
    if (p->exclusive && p->fd >= 0) {
        /* TIOCEXCL outlives this fd while anyone else holds the tty (a pty listener does) */
        ioctl(p->fd, TIOCNXCL);
        p->exclusive = 0;
    }
    if (p->sp) {
        sp_close(p->sp);
        sp_free_port(p->sp);
        p->sp = NULL;
        p->fd = -1; /* owned by libserialport */
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    if (p->child > 0)
        sim_reap(p, 1.0);
    port_buf_free(&p->in);
    port_buf_free(&p->ctl_out);
    free(p->events);
    p->events = NULL;
    p->nevents = p->capevents = 0;
}
