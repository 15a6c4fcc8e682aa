/* RFC 2217 backends for a port: the client (rfc2217://, and sim:// builds on it) and the server
 * side (ports accepted by an rfc2217:// listener or given as fd://N). Wire facts: RFC 2217;
 * pyserial serial/rfc2217.py and ser2net behaviour summarised in shared/reference/anchors.md
 * §1.12. Every wait here ends at a deadline the caller gave (an open's timeout, the port's
 * ?timeout= answer time, a read's deadline): no fixed waits of our own. */
#include "serial_rfc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct rfc_port *rfc(const struct port *p)
{
    return p->priv;
}

void rfc_port_init(struct rfc_port *r, int server)
{
    memset(r, 0, sizeof *r);
    rfc_decoder_init(&r->dec);
    rfc_options_init(&r->opt);
    r->server = server;
    r->ack_timeout = 1.0;
}

struct rfc_port *rfc_port_new(int server)
{
    struct rfc_port *r = malloc(sizeof *r);
    if (r == NULL)
        abort(); /* as Lua's allocator would */
    rfc_port_init(r, server);
    return r;
}

void rfc_port_clear(struct rfc_port *r)
{
    port_buf_free(&r->ctl_out);
    free(r->events);
    r->events = NULL;
    r->nevents = r->capevents = 0;
}

void rfc_attach_client(struct port *p)
{
    port_set_backend(p, &port_rfc_client_ops, rfc_port_new(0), "rfc2217");
}

void rfc_attach_server(struct port *p)
{
    port_set_backend(p, &port_rfc_server_ops, rfc_port_new(1), "rfc2217-server");
}

static void rfc_release(struct port *p)
{
    if (p->priv == NULL)
        return;
    rfc_port_clear(rfc(p));
    free(p->priv);
    p->priv = NULL;
}

static void ctl_send(struct port *p, const uint8_t *bytes, size_t n)
{
    port_buf_append(&rfc(p)->ctl_out, (const char *)bytes, n);
}

static void ctl_subneg(struct port *p, uint8_t cmd, const uint8_t *value, size_t n)
{
    uint8_t out[6 + 2 * 8];
    if (n > 8)
        n = 8;
    ctl_send(p, out, rfc_subneg(cmd, value, n, out));
}

static void add_event(struct port *p, int kind, long value, size_t pos)
{
    struct rfc_port *r = rfc(p);
    if (r->nevents == r->capevents) {
        size_t cap = r->capevents ? 2 * r->capevents : 16;
        struct port_event *e = realloc(r->events, cap * sizeof *e);
        if (e == NULL)
            abort();
        r->events = e;
        r->capevents = cap;
    }
    r->events[r->nevents++] = (struct port_event){kind, value, mpctl_now(), pos};
}

/* ---- server side ------------------------------------------------------------------------- */

/* SET-CONTROL from the client: record DTR/RTS/BREAK changes, answer queries with the current
 * level, and echo everything else (flow control settings we do not emulate) as accepted. */
static void server_control(struct port *p, uint8_t v, size_t pos)
{
    uint8_t reply = v;
    switch (v) {
    case RFC_CTL_REQ_FLOW: reply = RFC_CTL_NO_FLOW; break;
    case RFC_CTL_REQ_BREAK: reply = rfc(p)->brk == 1 ? RFC_CTL_BREAK_ON : RFC_CTL_BREAK_OFF; break;
    case RFC_CTL_REQ_DTR: reply = p->dtr == 1 ? RFC_CTL_DTR_ON : RFC_CTL_DTR_OFF; break;
    case RFC_CTL_REQ_RTS: reply = p->rts == 1 ? RFC_CTL_RTS_ON : RFC_CTL_RTS_OFF; break;
    case RFC_CTL_BREAK_ON:
    case RFC_CTL_BREAK_OFF:
        rfc(p)->brk = v == RFC_CTL_BREAK_ON;
        add_event(p, EV_BREAK, rfc(p)->brk, pos);
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
    rfc(p)->got_baud = 1;
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
    struct rfc_port *r = rfc(p);
    r->acks[cmd]++;
    memset(r->ack_value[cmd], 0, 4);
    memcpy(r->ack_value[cmd], d + 1, len - 1 > 4 ? 4 : len - 1);
}

static void handle_event(void *ud, const struct rfc_event *ev)
{
    struct port *p = ud;
    uint8_t out[3];
    if (ev->kind == RFC_EV_NEGOTIATE) {
        size_t n = rfc_negotiate(&rfc(p)->opt, ev->verb, ev->option, out);
        ctl_send(p, out, n);
    } else if (ev->kind == RFC_EV_SUBNEG && ev->option == TN_OPT_COMPORT && ev->len > 0) {
        if (rfc(p)->server)
            server_command(p, ev->data, ev->len, ev->pos);
        else
            client_answer(p, ev->data, ev->len);
    }
}

/* ---- hooks shared by both sides --------------------------------------------------------- */

size_t rfc_decode_hook(struct port *p, const char *raw, size_t n, char *out)
{
    return rfc_decode(&rfc(p)->dec, (const uint8_t *)raw, n, (uint8_t *)out, handle_event, p);
}

/* Telnet answers queued while decoding. A few bytes to a peer that is reading: written within
 * the read's own deadline (a moment more if that has passed, so a read with timeout 0 still
 * answers); not raised, because a peer that hung up shows up on the read side. */
void rfc_after_read_hook(lua_State *L, struct port *p, double deadline)
{
    (void)L;
    struct rfc_port *r = rfc(p);
    if (r->ctl_out.len == 0)
        return;
    double now = mpctl_now();
    port_write_quiet(p, port_buf_ptr(&r->ctl_out), r->ctl_out.len, deadline > now ? deadline : now + 0.1);
    port_buf_consume(&r->ctl_out, r->ctl_out.len);
}

void rfc_encode_hook(lua_State *L, struct port *p, const char *data, size_t n)
{
    (void)p;
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, 2 * n);
    luaL_pushresultsize(&b, rfc_escape((const uint8_t *)data, n, out));
}

static void send_requests(lua_State *L, struct port *p, const uint8_t (*req)[2], size_t n, double deadline)
{
    uint8_t out[64];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += rfc_request(&rfc(p)->opt, req[i][0], req[i][1], out + k);
    port_write_raw(L, p, (const char *)out, k, deadline);
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
    double deadline = mpctl_now() + timeout;
    send_requests(L, p, req, sizeof req / sizeof *req, deadline);
    while (rfc(p)->opt.us[TN_OPT_COMPORT] == RFC_WANT) {
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
    if (rfc(p)->opt.us[TN_OPT_COMPORT] != RFC_ON)
        mpctl_raise(L, "protocol", p->name, "serial %s: the server refused RFC 2217 (COM-PORT-OPTION)",
                    p->name);
}

void rfc_server_start(lua_State *L, struct port *p, double settle)
{
    static const uint8_t req[][2] = {
        {TN_DO, TN_OPT_COMPORT}, {TN_WILL, TN_OPT_BINARY}, {TN_DO, TN_OPT_BINARY},
        {TN_WILL, TN_OPT_SGA},   {TN_DO, TN_OPT_SGA},
    };
    double deadline = mpctl_now() + settle;
    send_requests(L, p, req, sizeof req / sizeof *req, deadline);
    /* RFC 2217 clients (ours, pyserial, ser2net users) set the baud rate right after the
     * negotiation. Waiting for it means a simulator starts out knowing the client's rate, so
     * what it prints at power-on is not garbled by a race with that first SET-BAUDRATE. Data
     * arriving meanwhile stays buffered, and the baud event stays in events(). */
    while (!rfc(p)->got_baud && !p->eof && port_fill_once(L, p, deadline) > 0) {
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

/* Wait for the answers up to `deadline`: the exchange (request written, answer read) gets the
 * port's answer time (?timeout=) as one budget. */
static void wait_acks(lua_State *L, struct port *p, int cmd, unsigned want, double deadline)
{
    while ((int)(rfc(p)->acks[cmd] - want) < 0) {
        int r = port_fill_once(L, p, deadline);
        if (r < 0)
            raise_eof(L, p, command_name(cmd));
        if (r == 0) {
            char secs[32];
            snprintf(secs, sizeof secs, "%.1f", rfc(p)->ack_timeout);
            mpctl_raise(L, "timeout", p->name,
                       "serial %s: no answer to %s within %s s (a server that does not answer "
                       "control changes needs ?ign_set_control in the URL)",
                       p->name, command_name(cmd), secs);
        }
    }
}

/* Send SET-CONTROL values (1 or 2) back to back, then wait for their answers unless the port
 * was opened with ?ign_set_control. */
static void set_control(lua_State *L, struct port *p, const uint8_t *values, int n)
{
    struct rfc_port *r = rfc(p);
    uint8_t out[2 * (6 + 2)];
    size_t k = 0;
    for (int i = 0; i < n; i++)
        k += rfc_subneg(RFC_SET_CONTROL, values + i, 1, out + k);
    unsigned want = r->acks[RFC_SET_CONTROL] + (unsigned)n;
    double deadline = mpctl_now() + r->ack_timeout;
    /* Both changes in one write: one round trip for the pair is what keeps ESP auto-reset
     * timing intact over a network (esptool#383, anchors.md §1.12). */
    port_write_raw(L, p, (const char *)out, k, deadline);
    if (!r->ign_set_control)
        wait_acks(L, p, RFC_SET_CONTROL, want, deadline);
}

void rfc_client_set_baud(lua_State *L, struct port *p, long baud)
{
    struct rfc_port *r = rfc(p);
    uint8_t v[4], out[6 + 8];
    rfc_put_u32(v, (uint32_t)baud);
    unsigned want = r->acks[RFC_SET_BAUDRATE] + 1;
    double deadline = mpctl_now() + r->ack_timeout;
    port_write_raw(L, p, (const char *)out, rfc_subneg(RFC_SET_BAUDRATE, v, 4, out), deadline);
    wait_acks(L, p, RFC_SET_BAUDRATE, want, deadline);
    p->baud = baud;
}

void rfc_client_set_signals(lua_State *L, struct port *p, int dtr, int rts)
{
    uint8_t v[2];
    int n = 0;
    if (dtr >= 0)
        v[n++] = dtr ? RFC_CTL_DTR_ON : RFC_CTL_DTR_OFF;
    if (rts >= 0)
        v[n++] = rts ? RFC_CTL_RTS_ON : RFC_CTL_RTS_OFF;
    if (n)
        set_control(L, p, v, n);
    if (dtr >= 0)
        p->dtr = dtr;
    if (rts >= 0)
        p->rts = rts;
}

void rfc_client_send_break(lua_State *L, struct port *p, double seconds)
{
    uint8_t on = RFC_CTL_BREAK_ON, off = RFC_CTL_BREAK_OFF;
    set_control(L, p, &on, 1);
    mpctl_sleep(seconds); /* not interruptible: a break left on would hold the device */
    set_control(L, p, &off, 1);
}

void rfc_client_flush_input(lua_State *L, struct port *p)
{
    struct rfc_port *r = rfc(p);
    uint8_t what = RFC_PURGE_RX;
    uint8_t out[6 + 2];
    unsigned want = r->acks[RFC_PURGE_DATA] + 1;
    double deadline = mpctl_now() + r->ack_timeout;
    port_write_raw(L, p, (const char *)out, rfc_subneg(RFC_PURGE_DATA, &what, 1, out), deadline);
    if (!r->ign_set_control)
        wait_acks(L, p, RFC_PURGE_DATA, want, deadline);
}

void rfc_parse_query(lua_State *L, struct port *p, const char *url)
{
    struct rfc_port *r = rfc(p);
    const char *q = strchr(url, '?');
    while (q && *q) {
        q++;
        size_t kl = strcspn(q, "&");
        if (kl == 15 && strncmp(q, "ign_set_control", kl) == 0) {
            r->ign_set_control = 1;
        } else if (kl > 8 && strncmp(q, "timeout=", 8) == 0) {
            r->ack_timeout = atof(q + 8);
            if (!(r->ack_timeout > 0))
                mpctl_raise(L, "usage", url, "serial %s: timeout= wants seconds > 0", url);
        } else if (kl > 0) {
            mpctl_raise(L, "usage", url, "serial %s: unknown option \"%s\" (known: ign_set_control, timeout=SECONDS)",
                        url, lua_pushlstring(L, q, kl));
        }
        q += kl;
    }
}

static int client_has_line(const struct port *p)
{
    (void)p;
    return 1;
}

/* ---- server side events ------------------------------------------------------------------ */

static const char *event_name(int kind)
{
    static const char *const names[] = {"baud", "dtr", "rts", "break", "purge"};
    return kind >= 0 && kind <= EV_PURGE ? names[kind] : "?";
}

static size_t server_pending_events(const struct port *p)
{
    return rfc(p)->nevents;
}

static void server_push_events(lua_State *L, struct port *p)
{
    struct rfc_port *r = rfc(p);
    lua_createtable(L, (int)r->nevents, 0);
    for (size_t i = 0; i < r->nevents; i++) {
        const struct port_event *e = &r->events[i];
        lua_createtable(L, 0, 4);
        lua_pushstring(L, event_name(e->kind));
        lua_setfield(L, -2, "kind");
        if (e->kind == EV_DTR || e->kind == EV_RTS || e->kind == EV_BREAK)
            lua_pushboolean(L, e->value != 0);
        else
            lua_pushinteger(L, e->value);
        lua_setfield(L, -2, "value");
        lua_pushnumber(L, e->t);
        lua_setfield(L, -2, "t");
        lua_pushinteger(L, (lua_Integer)e->pos);
        lua_setfield(L, -2, "pos");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    r->nevents = 0;
}

/* rfc2217:// client: telnet codec, baud/DTR/RTS/break/purge by COM-PORT-OPTION commands. */
const struct port_ops port_rfc_client_ops = {
    .decode = rfc_decode_hook,
    .after_read = rfc_after_read_hook,
    .encode = rfc_encode_hook,
    .set_baud = rfc_client_set_baud,
    .set_signals = rfc_client_set_signals,
    .send_break = rfc_client_send_break,
    .flush_input = rfc_client_flush_input,
    .has_signals = client_has_line,
    .has_baud = client_has_line,
    .release = rfc_release,
};

/* Server side (a simulator's end): the client's settings arrive as events; the baud it asked
 * for is recorded; modem lines and breaks are the client's to drive. */
const struct port_ops port_rfc_server_ops = {
    .decode = rfc_decode_hook,
    .after_read = rfc_after_read_hook,
    .encode = rfc_encode_hook,
    .pending_events = server_pending_events,
    .push_events = server_push_events,
    .release = rfc_release,
};
