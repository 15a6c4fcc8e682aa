/* RFC 2217 on a port: the client (rfc2217:// and sim://) and the server side (ports accepted by
 * an rfc2217:// listener or given as fd://N). Wire facts: RFC 2217; pyserial serial/rfc2217.py
 * and ser2net behaviour summarised in shared/reference/anchors.md §1.12. */
#include "serial_port.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ctl_send(struct port *p, const uint8_t *bytes, size_t n)
{
    port_buf_append(&p->ctl_out, (const char *)bytes, n);
}

static void ctl_subneg(struct port *p, uint8_t cmd, const uint8_t *value, size_t n)
{
    uint8_t out[6 + 2 * 8];
    if (n > 8)
        n = 8;
    ctl_send(p, out, rfc_subneg(cmd, value, n, out));
}

const char *port_event_name(int kind)
{
    static const char *const names[] = {"baud", "dtr", "rts", "break", "purge"};
    return kind >= 0 && kind <= EV_PURGE ? names[kind] : "?";
}

static void add_event(struct port *p, int kind, long value, size_t pos)
{
    if (p->nevents == p->capevents) {
        size_t cap = p->capevents ? 2 * p->capevents : 16;
        struct port_event *e = realloc(p->events, cap * sizeof *e);
        if (e == NULL)
            abort();
        p->events = e;
        p->capevents = cap;
    }
    p->events[p->nevents++] = (struct port_event){kind, value, mpctl_now(), pos};
}

/* ---- server side ------------------------------------------------------------------------- */

/* SET-CONTROL from the client: record DTR/RTS/BREAK changes, answer queries with the current
 * level, and echo everything else (flow control settings we do not emulate) as accepted. */
static void server_control(struct port *p, uint8_t v, size_t pos)
{
    uint8_t reply = v;
    switch (v) {
    case RFC_CTL_REQ_FLOW: reply = RFC_CTL_NO_FLOW; break;
    case RFC_CTL_REQ_BREAK: reply = p->brk == 1 ? RFC_CTL_BREAK_ON : RFC_CTL_BREAK_OFF; break;
    case RFC_CTL_REQ_DTR: reply = p->dtr == 1 ? RFC_CTL_DTR_ON : RFC_CTL_DTR_OFF; break;
    case RFC_CTL_REQ_RTS: reply = p->rts == 1 ? RFC_CTL_RTS_ON : RFC_CTL_RTS_OFF; break;
    case RFC_CTL_BREAK_ON:
    case RFC_CTL_BREAK_OFF:
        p->brk = v == RFC_CTL_BREAK_ON;
        add_event(p, EV_BREAK, p->brk, pos);
        break;
    case RFC_CTL_DTR_ON:
    case RFC_CTL_DTR_OFF:
        p->dtr = v == RFC_CTL_DTR_ON;
        add_event(p, EV_DTR, p->dtr, pos);
        break;
    case RFC_CTL_RTS_ON:
    case RFC_CTL_RTS_OFF:
        p->rts = v == RFC_CTL_RTS_ON;
        add_event(p, EV_RTS, p->rts, pos);
        break;
    default: break;
    }
    ctl_subneg(p, RFC_SET_CONTROL + RFC_SERVER, &reply, 1);
}

static void server_baud(struct port *p, const uint8_t *v, size_t len, size_t pos)
{
    uint8_t reply[4];
    if (len >= 4 && rfc_get_u32(v) != 0) {
        p->baud = (long)rfc_get_u32(v);
        add_event(p, EV_BAUD, p->baud, pos);
    }
    p->got_baud = 1;
    rfc_put_u32(reply, (uint32_t)p->baud); /* value 0 asks for the current rate */
    ctl_subneg(p, RFC_SET_BAUDRATE + RFC_SERVER, reply, 4);
}

/* Answer one client command with cmd+100, as RFC 2217 requires for all but flow suspend/resume. */
static void server_command(struct port *p, const uint8_t *d, size_t len, size_t pos)
{
    uint8_t cmd = d[0], v = len > 1 ? d[1] : 0;
    uint8_t reply;
    switch (cmd) {
    case RFC_SET_BAUDRATE: server_baud(p, d + 1, len - 1, pos); break;
    case RFC_SET_CONTROL: server_control(p, v, pos); break;
    case RFC_SET_DATASIZE: /* 0 = query; we are always 8 data bits, no parity, 1 stop bit */
    case RFC_SET_PARITY:
    case RFC_SET_STOPSIZE:
        reply = v ? v : (cmd == RFC_SET_DATASIZE ? 8 : 1);
        ctl_subneg(p, (uint8_t)(cmd + RFC_SERVER), &reply, 1);
        break;
    case RFC_PURGE_DATA:
        add_event(p, EV_PURGE, v, pos);
        ctl_subneg(p, RFC_PURGE_DATA + RFC_SERVER, &v, 1);
        break;
    case RFC_NOTIFY_LINESTATE:
    case RFC_NOTIFY_MODEMSTATE:
        reply = 0; /* no line errors, no modem inputs: a simulated wire has neither */
        ctl_subneg(p, (uint8_t)(cmd + RFC_SERVER), &reply, 1);
        break;
    case RFC_SET_LINESTATE_MASK:
    case RFC_SET_MODEMSTATE_MASK:
        ctl_subneg(p, (uint8_t)(cmd + RFC_SERVER), &v, 1);
        break;
    default: break; /* FLOWCONTROL-SUSPEND/RESUME and signatures need no answer */
    }
}

/* ---- client side ------------------------------------------------------------------------- */

static void client_answer(struct port *p, const uint8_t *d, size_t len)
{
    if (d[0] < RFC_SERVER || d[0] - RFC_SERVER >= RFC_NCMD)
        return; /* NOTIFY-MODEMSTATE (107) etc. also land here and count as answers */
    int cmd = d[0] - RFC_SERVER;
    p->acks[cmd]++;
    memset(p->ack_value[cmd], 0, 4);
    memcpy(p->ack_value[cmd], d + 1, len - 1 > 4 ? 4 : len - 1);
}

void rfc_handle_event(struct port *p, const struct rfc_event *ev)
{
    uint8_t out[3];
    if (ev->kind == RFC_EV_NEGOTIATE) {
        size_t n = rfc_negotiate(&p->opt, ev->verb, ev->option, out);
        ctl_send(p, out, n);
    } else if (ev->kind == RFC_EV_SUBNEG && ev->option == TN_OPT_COMPORT && ev->len > 0) {
        if (p->kind == PORT_RFC_SERVER)
            server_command(p, ev->data, ev->len, ev->pos);
        else
            client_answer(p, ev->data, ev->len);
    }
}

static void send_requests(lua_State *L, struct port *p, const uint8_t (*req)[2], size_t n)
{
    uint8_t out[64];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += rfc_request(&p->opt, req[i][0], req[i][1], out + k);
    port_write_raw(L, p, (const char *)out, k, mpctl_now() + 5.0);
}

static void raise_eof(lua_State *L, struct port *p, const char *while_doing)
{
    port_push_eof_reason(L, p);
    mpctl_raise(L, "eof", p->name, "serial %s: %s: %s", p->name, while_doing, lua_tostring(L, -1));
}

void rfc_client_start(lua_State *L, struct port *p, double timeout)
{
    static const uint8_t req[][2] = {
        {TN_WILL, TN_OPT_COMPORT}, {TN_WILL, TN_OPT_BINARY}, {TN_DO, TN_OPT_BINARY},
        {TN_WILL, TN_OPT_SGA},     {TN_DO, TN_OPT_SGA},
    };
    send_requests(L, p, req, sizeof req / sizeof *req);
    double deadline = mpctl_now() + timeout;
    while (p->opt.us[TN_OPT_COMPORT] == RFC_WANT) {
        int r = port_fill_once(L, p, deadline);
        if (r < 0)
            raise_eof(L, p, "RFC 2217 negotiation");
        if (r == 0) {
            char secs[32];
            snprintf(secs, sizeof secs, "%.1f", timeout);
            mpctl_raise(L, "timeout", p->name,
                        "serial %s: no RFC 2217 answer within %s s (is it a telnet/RFC 2217 server?)",
                       p->name, secs);
        }
    }
    if (p->opt.us[TN_OPT_COMPORT] != RFC_ON)
        mpctl_raise(L, "protocol", p->name, "serial %s: the server refused RFC 2217 (COM-PORT-OPTION)",
                    p->name);
}

void rfc_server_start(lua_State *L, struct port *p, double settle)
{
    static const uint8_t req[][2] = {
        {TN_DO, TN_OPT_COMPORT}, {TN_WILL, TN_OPT_BINARY}, {TN_DO, TN_OPT_BINARY},
        {TN_WILL, TN_OPT_SGA},   {TN_DO, TN_OPT_SGA},
    };
    send_requests(L, p, req, sizeof req / sizeof *req);
    /* RFC 2217 clients (ours, pyserial, ser2net users) set the baud rate right after the
     * negotiation. Waiting for it means a simulator starts out knowing the client's rate, so
     * what it prints at power-on is not garbled by a race with that first SET-BAUDRATE. Data
     * arriving meanwhile stays buffered, and the baud event stays in events(). */
    double deadline = mpctl_now() + settle;
    while (!p->got_baud && !p->eof && port_fill_once(L, p, deadline) > 0) {
    }
}

static const char *command_name(int cmd)
{
    switch (cmd) {
    case RFC_SET_BAUDRATE: return "SET-BAUDRATE";
    case RFC_SET_CONTROL: return "SET-CONTROL";
    case RFC_PURGE_DATA: return "PURGE-DATA";
    default: return "command";
    }
}

static void wait_acks(lua_State *L, struct port *p, int cmd, unsigned want)
{
    double deadline = mpctl_now() + p->ack_timeout;
    while ((int)(p->acks[cmd] - want) < 0) {
        int r = port_fill_once(L, p, deadline);
        if (r < 0)
            raise_eof(L, p, command_name(cmd));
        if (r == 0) {
            char secs[32];
            snprintf(secs, sizeof secs, "%.1f", p->ack_timeout);
            mpctl_raise(L, "timeout", p->name,
                       "serial %s: no answer to %s within %s s (a server that does not answer "
                       "control changes needs ?ign_set_control in the URL)",
                       p->name, command_name(cmd), secs);
        }
    }
}

void rfc_set_control(lua_State *L, struct port *p, const uint8_t *values, int n)
{
    uint8_t out[2 * (6 + 2)];
    size_t k = 0;
    for (int i = 0; i < n; i++)
        k += rfc_subneg(RFC_SET_CONTROL, values + i, 1, out + k);
    unsigned want = p->acks[RFC_SET_CONTROL] + (unsigned)n;
    /* Both changes in one write: one round trip for the pair is what keeps ESP auto-reset
     * timing intact over a network (esptool#383, anchors.md §1.12). */
    port_write_raw(L, p, (const char *)out, k, mpctl_now() + 5.0);
    if (!p->ign_set_control)
        wait_acks(L, p, RFC_SET_CONTROL, want);
}

void rfc_set_baud(lua_State *L, struct port *p, long baud)
{
    uint8_t v[4], out[6 + 8];
    rfc_put_u32(v, (uint32_t)baud);
    unsigned want = p->acks[RFC_SET_BAUDRATE] + 1;
    port_write_raw(L, p, (const char *)out, rfc_subneg(RFC_SET_BAUDRATE, v, 4, out), mpctl_now() + 5.0);
    wait_acks(L, p, RFC_SET_BAUDRATE, want);
    p->baud = baud;
}

void rfc_purge(lua_State *L, struct port *p, uint8_t what)
{
    uint8_t out[6 + 2];
    unsigned want = p->acks[RFC_PURGE_DATA] + 1;
    port_write_raw(L, p, (const char *)out, rfc_subneg(RFC_PURGE_DATA, &what, 1, out), mpctl_now() + 5.0);
    if (!p->ign_set_control)
        wait_acks(L, p, RFC_PURGE_DATA, want);
}
