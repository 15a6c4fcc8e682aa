/* Telnet + RFC 2217 codec; see rfc2217.h for the wire facts and their sources. */
#include "rfc2217.h"

#include <string.h>

enum { ST_DATA, ST_IAC, ST_VERB, ST_SB, ST_SB_IAC };

void rfc_decoder_init(struct rfc_decoder *d)
{
    memset(d, 0, sizeof *d);
    d->state = ST_DATA;
}

static void emit(struct rfc_decoder *d, enum rfc_event_kind kind, uint8_t verb, uint8_t option,
                 rfc_event_fn fn, void *ud)
{
    struct rfc_event ev = {kind, verb, option, NULL, 0, d->total};
    if (kind == RFC_EV_SUBNEG && d->sblen > 0) {
        ev.option = d->sb[0];
        ev.data = d->sb + 1;
        ev.len = d->sblen - 1;
    }
    if (fn)
        fn(ud, &ev);
}

static void sb_add(struct rfc_decoder *d, uint8_t c)
{
    if (d->sblen < RFC_SB_MAX)
        d->sb[d->sblen++] = c;
}

/* One byte after IAC outside a subnegotiation. */
static void after_iac(struct rfc_decoder *d, uint8_t c, uint8_t *out, size_t *nout, rfc_event_fn fn,
                      void *ud)
{
    switch (c) {
    case TN_IAC:
        out[(*nout)++] = c;
        d->total++;
        d->state = ST_DATA;
        break;
    case TN_SB:
        d->sblen = 0;
        d->state = ST_SB;
        break;
    case TN_WILL:
    case TN_WONT:
    case TN_DO:
    case TN_DONT:
        d->verb = c;
        d->state = ST_VERB;
        break;
    default:
        emit(d, RFC_EV_COMMAND, c, 0, fn, ud);
        d->state = ST_DATA;
    }
}

size_t rfc_decode(struct rfc_decoder *d, const uint8_t *in, size_t n, uint8_t *out, rfc_event_fn fn,
                  void *ud)
{
    size_t nout = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        switch (d->state) {
        case ST_DATA:
            if (c == TN_IAC) {
                d->state = ST_IAC;
            } else {
                out[nout++] = c;
                d->total++;
            }
            break;
        case ST_IAC:
            after_iac(d, c, out, &nout, fn, ud);
            break;
        case ST_VERB:
            emit(d, RFC_EV_NEGOTIATE, d->verb, c, fn, ud);
            d->state = ST_DATA;
            break;
        case ST_SB:
            if (c == TN_IAC)
                d->state = ST_SB_IAC;
            else
                sb_add(d, c);
            break;
        case ST_SB_IAC:
            if (c == TN_SE) {
                emit(d, RFC_EV_SUBNEG, 0, 0, fn, ud);
                d->state = ST_DATA;
            } else {
                /* IAC IAC is an escaped 255; anything else is a protocol slip that we tolerate
                 * by keeping the byte, as the subnegotiation still ends at IAC SE. */
                sb_add(d, c);
                d->state = ST_SB;
            }
            break;
        }
    }
    return nout;
}

size_t rfc_escape(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        out[k++] = in[i];
        if (in[i] == TN_IAC)
            out[k++] = TN_IAC;
    }
    return k;
}

size_t rfc_option(uint8_t verb, uint8_t option, uint8_t *out)
{
    out[0] = TN_IAC;
    out[1] = verb;
    out[2] = option;
    return 3;
}

size_t rfc_subneg(uint8_t cmd, const uint8_t *value, size_t n, uint8_t *out)
{
    size_t k = 0;
    out[k++] = TN_IAC;
    out[k++] = TN_SB;
    out[k++] = TN_OPT_COMPORT;
    out[k++] = cmd;
    k += rfc_escape(value, n, out + k);
    out[k++] = TN_IAC;
    out[k++] = TN_SE;
    return k;
}

void rfc_options_init(struct rfc_options *o)
{
    memset(o, 0, sizeof *o);
}

static int agreeable(uint8_t option)
{
    return option == TN_OPT_BINARY || option == TN_OPT_SGA || option == TN_OPT_COMPORT;
}

size_t rfc_request(struct rfc_options *o, uint8_t verb, uint8_t option, uint8_t *out)
{
    uint8_t *side = verb == TN_WILL ? o->us : o->them;
    if (side[option] == RFC_OFF)
        side[option] = RFC_WANT;
    return rfc_option(verb, option, out);
}

/* The peer offers (WILL) or asks (DO) to turn an option on. Reply only when the state changes and
 * the change was not our own request: that is what stops negotiation loops (RFC 1143). */
static size_t enable(uint8_t *state, uint8_t option, uint8_t yes, uint8_t no, uint8_t *out)
{
    if (!agreeable(option))
        return rfc_option(no, option, out);
    if (state[option] == RFC_ON)
        return 0;
    int asked = state[option] == RFC_WANT;
    state[option] = RFC_ON;
    return asked ? 0 : rfc_option(yes, option, out);
}

static size_t disable(uint8_t *state, uint8_t option, uint8_t no, uint8_t *out)
{
    int was_on = state[option] == RFC_ON;
    state[option] = RFC_OFF;
    return was_on ? rfc_option(no, option, out) : 0;
}

size_t rfc_negotiate(struct rfc_options *o, uint8_t verb, uint8_t option, uint8_t *out)
{
    switch (verb) {
    case TN_WILL: return enable(o->them, option, TN_DO, TN_DONT, out);
    case TN_WONT: return disable(o->them, option, TN_DONT, out);
    case TN_DO: return enable(o->us, option, TN_WILL, TN_WONT, out);
    case TN_DONT: return disable(o->us, option, TN_WONT, out);
    default: return 0;
    }
}

void rfc_put_u32(uint8_t *out, uint32_t v)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

uint32_t rfc_get_u32(const uint8_t *in)
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}
