/* The generic part of mpctl.serial ports: the input buffer, reads with poll() deadlines (through
 * the backend's decode hook), complete writes (through its encode hook), counters, the trace
 * hook, and releasing a port. Backend specifics are reached only through p->ops. */
#include "serial_port.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The raw backend (socket://, fd://, pty masters): bytes as they are; every hook default. */
const struct port_ops port_raw_ops = {0};

void port_init(struct port *p, int fd, const struct port_ops *ops, const char *name, const char *label)
{
    memset(p, 0, sizeof *p);
    p->fd = fd;
    p->ops = ops;
    p->name = strdup(name);
    p->label = label;
    p->baud = 115200;
    p->dtr = p->rts = -1;
    p->trace_ref = LUA_NOREF;
}

void port_set_backend(struct port *p, const struct port_ops *ops, void *priv, const char *label)
{
    p->ops = ops;
    p->priv = priv;
    p->label = label;
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

/* ---- trace and counters ------------------------------------------------------------------ */

void port_trace(lua_State *L, struct port *p, const char *dir, const char *data, size_t n)
{
    if (p->trace_ref == LUA_NOREF || n == 0)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->trace_ref);
    lua_pushstring(L, dir);
    lua_pushlstring(L, data, n);
    lua_call(L, 2, 0);
}

/* ---- reading ----------------------------------------------------------------------------- */

size_t port_write_quiet(struct port *p, const char *data, size_t n, double deadline)
{
    size_t off = 0;
    while (off < n && p->fd >= 0) {
        ssize_t w = write(p->fd, data + off, n - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(p->fd, POLLOUT, deadline) != 0)
            continue;
        else
            break;
    }
    return off;
}

/* Bytes from the fd into the input buffer; returns data bytes added (0 if only telnet commands
 * came), -1 at end of stream, -2 if nothing was there. */
static ssize_t read_some(lua_State *L, struct port *p, double deadline)
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
    if (p->ops->decode == NULL) {
        port_buf_append(&p->in, raw, (size_t)r);
        p->rx += (unsigned long long)r;
        port_trace(L, p, "rx", raw, (size_t)r);
        return r;
    }
    char out[sizeof raw];
    size_t n = p->ops->decode(p, raw, (size_t)r, out);
    port_buf_append(&p->in, out, n);
    if (p->ops->after_read)
        p->ops->after_read(L, p, deadline);
    p->rx += n;
    port_trace(L, p, "rx", out, n);
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
        ssize_t n = read_some(L, p, deadline);
        if (n == -1 || (n == -2 && (rev & (POLLHUP | POLLERR)) && !(rev & POLLIN))) {
            p->eof = 1;
            if (p->ops->on_eof)
                p->ops->on_eof(p);
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
    if (p->ops->push_eof_reason)
        p->ops->push_eof_reason(L, p);
    else
        lua_pushfstring(L, "%s: the other end closed the port", p->name);
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
            if (p->ops->on_eof)
                p->ops->on_eof(p);
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
    port_trace(L, p, "tx", data, n);
    if (p->ops->encode == NULL) {
        port_write_raw(L, p, data, n, deadline);
        p->tx += n;
        return;
    }
    /* Encode in chunks on the Lua stack, so an error mid-write leaks nothing. */
    const size_t chunk = 4096;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        p->ops->encode(L, p, data + off, k);
        size_t m;
        const char *wire = lua_tolstring(L, -1, &m);
        port_write_raw(L, p, wire, m, deadline);
        lua_pop(L, 1);
        p->tx += k;
    }
}

/* ---- release ----------------------------------------------------------------------------- */

void port_release(struct port *p)
{
    /* The backend first: it may own the fd (libserialport) or need it closed before the rest
     * (a simulator exits once its socket closes); whatever fd it leaves is closed here. */
    if (p->ops->release)
        p->ops->release(p);
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    port_buf_free(&p->in);
    if (p->trace_L && p->trace_ref != LUA_NOREF)
        luaL_unref(p->trace_L, LUA_REGISTRYINDEX, p->trace_ref);
    p->trace_ref = LUA_NOREF;
}
