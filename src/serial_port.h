/* mpctl.serial internals shared by lserial.c (Lua bindings) and the serial_*.c backends.
 * A port is one file descriptor (tty, socket, pty master, socketpair) plus an input buffer,
 * counters and a trace hook (the common part, serial_io.c), and a backend: a struct port_ops
 * and its private state (RFC 2217 ports run the telnet codec between the fd and the buffer). */
#ifndef MPCTL_SERIAL_PORT_H
#define MPCTL_SERIAL_PORT_H

#include "mpctl.h"

#include <stddef.h>
#include <sys/types.h>

#define SERIAL_PORT_MT "mpctl.port"
#define SERIAL_LISTENER_MT "mpctl.listener"

struct port_buf {
    char *data;
    size_t start, len, cap;
};

struct port;

/* One transport's hooks, in the style of libusb's usbi_os_backend: the generic layer
 * (serial_io.c and the bindings in lserial.c) calls down through these and never names a
 * backend; a backend keeps its own state behind port->priv. A NULL hook means the default
 * written next to it. Backends: port_raw_ops (serial_io.c: socket://, fd://, pty masters),
 * port_local_ops (serial_local.c: ttys), port_rfc_client_ops / port_rfc_server_ops
 * (serial_rfc.c), port_sim_ops (serial_sim.c: an RFC 2217 client on a simulator child). */
struct port_ops {
    /* Bytes read from the fd -> data bytes for the input buffer, written to out (room for n).
     * The RFC 2217 backends run the telnet codec here and queue replies. Default: copy. */
    size_t (*decode)(struct port *p, const char *raw, size_t n, char *out);
    /* After a read: send what decode queued (telnet answers), bounded by the read's deadline.
     * Default: nothing. Must not raise: a failed reply shows up as the read side's hang-up. */
    void (*after_read)(lua_State *L, struct port *p, double deadline);
    /* Data bytes -> wire bytes pushed on the Lua stack (RFC 2217 doubles 0xFF). Default: as is. */
    void (*encode)(lua_State *L, struct port *p, const char *data, size_t n);
    /* The port's rate; may raise. Default: only recorded (a socket has no wire rate). */
    void (*set_baud)(lua_State *L, struct port *p, long baud);
    /* DTR/RTS levels (1 assert, 0 release, -1 leave); may raise. Default: nothing to drive. */
    void (*set_signals)(lua_State *L, struct port *p, int dtr, int rts);
    /* Hold a break for `seconds`. Default: nothing. */
    void (*send_break)(lua_State *L, struct port *p, double seconds);
    /* Drop what the far side or the OS holds unread (tcflush, RFC 2217 PURGE-DATA). */
    void (*flush_input)(lua_State *L, struct port *p);
    /* caps(): whether set_signals/set_baud reach a wire. Default: no. */
    int (*has_signals)(const struct port *p);
    int (*has_baud)(const struct port *p);
    /* Control events received (server side of RFC 2217); push them as a list and clear. */
    size_t (*pending_events)(const struct port *p);
    void (*push_events)(lua_State *L, struct port *p);
    /* The stream ended: e.g. collect the simulator's exit status. Default: nothing. */
    void (*on_eof)(struct port *p);
    /* Push the reason the stream ended. Default: "NAME: the other end closed the port". */
    void (*push_eof_reason)(lua_State *L, struct port *p);
    /* Extra caps() fields (the simulator's pid). */
    void (*push_caps)(lua_State *L, const struct port *p);
    /* Release the backend's resources and free priv (set it NULL). It may close the fd itself
     * (set p->fd = -1) when the order matters; the caller closes what is left. Never raises;
     * safe to call twice. */
    void (*release)(struct port *p);
};

extern const struct port_ops port_raw_ops;

struct port {
    int fd;
    const struct port_ops *ops;
    void *priv;        /* the backend's own state */
    char *name;
    const char *label; /* caps().kind: "local", "pty", "socket", "rfc2217", "rfc2217-server", "sim", "fd" */
    long baud;
    int dtr, rts;      /* last levels set */
    int eof;
    struct port_buf in;
    /* counters and trace (port:counters(), port:set_trace()) */
    unsigned long long rx, tx; /* data bytes received / sent (after the telnet codec) */
    lua_State *trace_L;
    int trace_ref;             /* LUA_NOREF when off */
};

/* serial_io.c: the buffered port over any backend */
void port_init(struct port *p, int fd, const struct port_ops *ops, const char *name, const char *label);
/* Switch a port to a backend (e.g. once serial.open knows the URL's scheme). */
void port_set_backend(struct port *p, const struct port_ops *ops, void *priv, const char *label);
void port_buf_append(struct port_buf *b, const char *data, size_t n);
void port_buf_prepend(struct port_buf *b, const char *data, size_t n);
void port_buf_consume(struct port_buf *b, size_t n);
const char *port_buf_ptr(const struct port_buf *b);
void port_buf_free(struct port_buf *b);
/* Read once (waiting until deadline, a monotonic time) and buffer the data. Returns 1 when new
 * data bytes were buffered, 0 on timeout, -1 at end of stream. Raises on I/O errors and on
 * Ctrl-C (`interrupted`). */
int port_fill(lua_State *L, struct port *p, double deadline);
/* As port_fill, but returns 1 after anything arrived, telnet commands included. */
int port_fill_once(lua_State *L, struct port *p, double deadline);
/* Write all bytes (encoded by the backend, e.g. telnet-escaped) or raise. */
void port_write_all(lua_State *L, struct port *p, const char *data, size_t n, double deadline);
/* Write bytes exactly as given (telnet commands). */
void port_write_raw(lua_State *L, struct port *p, const char *data, size_t n, double deadline);
/* Write what fits before deadline without raising (telnet replies); returns bytes written. */
size_t port_write_quiet(struct port *p, const char *data, size_t n, double deadline);
/* Push "sim://x: simulator exited with status N" style text saying why the stream ended. */
void port_push_eof_reason(lua_State *L, struct port *p);
/* Release the fd, backend state and buffers (the name stays); safe to call twice, never raises. */
void port_release(struct port *p);
int port_set_nonblock(int fd);
/* Milliseconds left until deadline, for poll(): never negative, rounded up so that a wait for
 * 0.0005 s still polls once rather than spinning, and capped at a day so that an infinite
 * timeout (math.huge) is a long wait rather than an overflowing conversion. */
int port_ms_left(double deadline);
/* Call the trace hook (port:set_trace) with direction "rx"/"tx" and the bytes. */
void port_trace(lua_State *L, struct port *p, const char *dir, const char *data, size_t n);

/* serial_rfc.c: RFC 2217 on top of a port (client and server backends) */
extern const struct port_ops port_rfc_client_ops;
extern const struct port_ops port_rfc_server_ops;
/* Make p an RFC 2217 client / server port (backend state allocated, freed on release). */
void rfc_attach_client(struct port *p);
void rfc_attach_server(struct port *p);
/* ?ign_set_control and ?timeout=SECONDS (answer wait, default 1 s) from an rfc2217:// URL. */
void rfc_parse_query(lua_State *L, struct port *p, const char *url);
/* Negotiate COM-PORT-OPTION within `timeout` seconds (raises timeout / eof / protocol). */
void rfc_client_start(lua_State *L, struct port *p, double timeout);
/* Server side: request the options, then wait up to `settle` seconds for the client's first
 * SET-BAUDRATE so that port:baud() is the client's rate from the start. */
void rfc_server_start(lua_State *L, struct port *p, double settle);
/* For backends built on the client (sim, serial_rfc.h): the client's hooks. */
size_t rfc_decode_hook(struct port *p, const char *raw, size_t n, char *out);
void rfc_after_read_hook(lua_State *L, struct port *p, double deadline);
void rfc_encode_hook(lua_State *L, struct port *p, const char *data, size_t n);
void rfc_client_set_baud(lua_State *L, struct port *p, long baud);
void rfc_client_set_signals(lua_State *L, struct port *p, int dtr, int rts);
void rfc_client_send_break(lua_State *L, struct port *p, double seconds);
void rfc_client_flush_input(lua_State *L, struct port *p);

/* serial_local.c: ttys */
extern const struct port_ops port_local_ops;
void local_open(lua_State *L, struct port *p, const char *path, int exclusive);
int local_list(lua_State *L);
/* Push "ports present: a, b" (or "none found"). */
void local_push_present(lua_State *L);

/* serial_net.c: sockets (raw bytes: port_raw_ops) */
/* Resolve and connect within `timeout` seconds (the name lookup included). */
int net_connect(lua_State *L, const char *url, const char *hostport, double timeout);
int net_listen(lua_State *L, const char *url, const char *hostport, int *port_out);
int net_accept(lua_State *L, int lfd, const char *url, double timeout);

/* serial_sim.c: sim:// (an RFC 2217 client on a socketpair to `mpctl sim NAME`) */
extern const struct port_ops port_sim_ops;
/* Start the simulator child, attach it to p as its backend and negotiate within timeout. */
void sim_open(lua_State *L, struct port *p, const char *spec, double timeout);

#endif
