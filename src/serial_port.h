/* mpctl.serial internals shared by lserial.c (Lua bindings) and the serial_*.c backends.
 * A port is one file descriptor (tty, socket, pty master, socketpair) plus an input buffer;
 * RFC 2217 ports run the telnet codec between the fd and that buffer. */
#ifndef MPCTL_SERIAL_PORT_H
#define MPCTL_SERIAL_PORT_H

#include "mpctl.h"
#include "rfc2217.h"

#include <stddef.h>
#include <sys/types.h>

#define SERIAL_PORT_MT "mpctl.port"
#define SERIAL_LISTENER_MT "mpctl.listener"

enum port_kind {
    PORT_LOCAL, /* a tty opened through libserialport or, for ptys, plain termios */
    PORT_RAW,   /* socket://, fd://, pty master, wrap_fd: bytes as they are */
    PORT_RFC_CLIENT,
    PORT_RFC_SERVER,
};

struct port_buf {
    char *data;
    size_t start, len, cap;
};

struct port_event {
    int kind;   /* enum port_event_kind */
    long value; /* baud / purge mask, or 0/1 for dtr, rts, break */
    double t;
    size_t pos; /* data bytes received before the event */
};

enum port_event_kind { EV_BAUD, EV_DTR, EV_RTS, EV_BREAK, EV_PURGE };

struct port {
    int fd;
    enum port_kind kind;
    char *name;
    const char *label; /* "local", "pty", "socket", "rfc2217", "rfc2217-server", "sim", "fd" */
    struct sp_port *sp; /* libserialport handle for real serial devices */
    int exclusive;      /* TIOCEXCL + flock taken: cleared again on close */
    long baud;
    int signals;        /* 1 while DTR/RTS can be carried; cleared at the first refusal */
    int dtr, rts, brk;  /* last levels set (server side: last levels the client asked for) */
    int eof;
    struct port_buf in;

    /* RFC 2217 */
    struct rfc_decoder dec;
    struct rfc_options opt;
    int ign_set_control;
    int got_baud;               /* server side: the client has sent SET-BAUDRATE */
    double ack_timeout;
    unsigned acks[RFC_NCMD];    /* answers (cmd+100) received, per command */
    uint8_t ack_value[RFC_NCMD][4];
    struct port_buf ctl_out;    /* telnet replies waiting to be written */
    struct port_event *events;
    size_t nevents, capevents;

    /* sim:// child */
    pid_t child;
    int child_status; /* -1 until reaped */
};

/* serial_io.c */
void port_init(struct port *p, int fd, enum port_kind kind, const char *name, const char *label);
void port_buf_append(struct port_buf *b, const char *data, size_t n);
void port_buf_prepend(struct port_buf *b, const char *data, size_t n);
void port_buf_consume(struct port_buf *b, size_t n);
const char *port_buf_ptr(const struct port_buf *b);
void port_buf_free(struct port_buf *b);
/* Read once (waiting until deadline, a monotonic time) and buffer the data. Returns 1 when new
 * data bytes were buffered, 0 on timeout, -1 at end of stream. Raises on I/O errors. */
int port_fill(lua_State *L, struct port *p, double deadline);
/* As port_fill, but returns 1 after anything arrived, telnet commands included. */
int port_fill_once(lua_State *L, struct port *p, double deadline);
/* Write all bytes (telnet-escaped on RFC 2217 ports) or raise. */
void port_write_all(lua_State *L, struct port *p, const char *data, size_t n, double deadline);
/* Write bytes exactly as given (telnet commands). */
void port_write_raw(lua_State *L, struct port *p, const char *data, size_t n, double deadline);
/* Push "sim://x: simulator exited with status N" style text saying why the stream ended. */
void port_push_eof_reason(lua_State *L, struct port *p);
/* Release the fd, libserialport handle, buffers and child process (the name stays); safe to
 * call twice, never raises. */
void port_release(struct port *p);
int port_set_nonblock(int fd);
/* Milliseconds left until deadline, for poll(): never negative, rounded up so that a wait for
 * 0.0005 s still polls once rather than spinning, and capped at a day so that an infinite
 * timeout (math.huge) is a long wait rather than an overflowing conversion. */
int port_ms_left(double deadline);

/* serial_rfc.c: RFC 2217 on top of a port */
void rfc_client_start(lua_State *L, struct port *p, double timeout);
/* Server side: request the options, then wait up to `settle` seconds for the client's first
 * SET-BAUDRATE so that port:baud() is the client's rate from the start. */
void rfc_server_start(lua_State *L, struct port *p, double settle);
void rfc_handle_event(struct port *p, const struct rfc_event *ev);
/* Send SET-CONTROL values (1 or 2) back to back, then wait for their answers unless the port
 * was opened with ?ign_set_control. */
void rfc_set_control(lua_State *L, struct port *p, const uint8_t *values, int n);
void rfc_set_baud(lua_State *L, struct port *p, long baud);
void rfc_purge(lua_State *L, struct port *p, uint8_t what);
const char *port_event_name(int kind);

/* serial_local.c: ttys */
void local_open(lua_State *L, struct port *p, const char *path, int exclusive);
void local_set_baud(lua_State *L, struct port *p, long baud);
/* Set DTR and/or RTS (-1 = leave) with one TIOCMGET/TIOCMSET; a tty that cannot carry modem
 * lines (a pty) turns p->signals off instead of failing. */
void local_set_signals(lua_State *L, struct port *p, int dtr, int rts);
void local_send_break(lua_State *L, struct port *p, double seconds);
void local_flush_input(struct port *p);
int local_list(lua_State *L);
/* Push "ports present: a, b" (or "none found"). */
void local_push_present(lua_State *L);

/* serial_net.c: sockets and the simulator child */
int net_connect(lua_State *L, const char *url, const char *hostport, double timeout);
int net_listen(lua_State *L, const char *url, const char *hostport, int *port_out);
int net_accept(lua_State *L, int lfd, const char *url, double timeout);
int sim_spawn(lua_State *L, const char *name_and_query, pid_t *child);
/* Reap the simulator: give it a moment to exit on its own, then SIGTERM, then SIGKILL. */
void sim_reap(struct port *p, double grace);

#endif
