/* The RFC 2217 backends' private state, shared by serial_rfc.c and serial_sim.c (a sim:// port
 * is an RFC 2217 client whose state begins with this struct). Nothing else looks inside. */
#ifndef MPCTL_SERIAL_RFC_H
#define MPCTL_SERIAL_RFC_H

#include "rfc2217.h"
#include "serial_port.h"

/* A control change the client made (server side), kept until port:events() collects it. */
struct port_event {
    int kind;   /* enum port_event_kind */
    long value; /* baud / purge mask, or 0/1 for dtr, rts, break */
    double t;
    size_t pos; /* data bytes received before the event */
};

enum port_event_kind { EV_BAUD, EV_DTR, EV_RTS, EV_BREAK, EV_PURGE };

struct rfc_port {
    struct rfc_decoder dec;
    struct rfc_options opt;
    int server;
    int ign_set_control;
    int got_baud;            /* server side: the client has sent SET-BAUDRATE */
    int brk;                 /* server side: last break level the client asked for */
    double ack_timeout;      /* client: how long an answer may take (?timeout=, default 1 s) */
    unsigned acks[RFC_NCMD]; /* answers (cmd+100) received, per command */
    uint8_t ack_value[RFC_NCMD][4];
    struct port_buf ctl_out; /* telnet replies waiting to be written */
    struct port_event *events;
    size_t nevents, capevents;
};

void rfc_port_init(struct rfc_port *r, int server);
/* A new state (client: server = 0) for port_set_backend; the ops' release frees it. */
struct rfc_port *rfc_port_new(int server);
/* Free the buffers inside r (not r itself). */
void rfc_port_clear(struct rfc_port *r);

#endif
