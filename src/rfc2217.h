/* Telnet + RFC 2217 (COM-PORT-OPTION) codec: no I/O, no Lua, so it can be unit-tested alone.
 *
 * Wire facts (RFC 854 telnet, RFC 1143 option negotiation, RFC 2217 com port control; summarised
 * in shared/reference/anchors.md §1.12): IAC=255 introduces commands, a data byte 255 is sent
 * doubled; options are negotiated with IAC WILL/WONT/DO/DONT <opt>; RFC 2217 commands travel as
 * IAC SB 44 <cmd> <value> IAC SE, the server answers each client command with cmd+100. */
#ifndef MPCTL_RFC2217_H
#define MPCTL_RFC2217_H

#include <stddef.h>
#include <stdint.h>

enum {
    TN_SE = 240,
    TN_SB = 250,
    TN_WILL = 251,
    TN_WONT = 252,
    TN_DO = 253,
    TN_DONT = 254,
    TN_IAC = 255,
};

enum {
    TN_OPT_BINARY = 0,
    TN_OPT_ECHO = 1,
    TN_OPT_SGA = 3,
    TN_OPT_COMPORT = 44,
};

/* RFC 2217 client-to-server commands; the server's answer is the same number + RFC_SERVER. */
enum {
    RFC_SIGNATURE = 0,
    RFC_SET_BAUDRATE = 1,
    RFC_SET_DATASIZE = 2,
    RFC_SET_PARITY = 3,
    RFC_SET_STOPSIZE = 4,
    RFC_SET_CONTROL = 5,
    RFC_NOTIFY_LINESTATE = 6,
    RFC_NOTIFY_MODEMSTATE = 7,
    RFC_FLOWCONTROL_SUSPEND = 8,
    RFC_FLOWCONTROL_RESUME = 9,
    RFC_SET_LINESTATE_MASK = 10,
    RFC_SET_MODEMSTATE_MASK = 11,
    RFC_PURGE_DATA = 12,
    RFC_NCMD = 13,
    RFC_SERVER = 100,
};

/* SET-CONTROL values (RFC 2217 section 3). */
enum {
    RFC_CTL_REQ_FLOW = 0,
    RFC_CTL_NO_FLOW = 1,
    RFC_CTL_REQ_BREAK = 4,
    RFC_CTL_BREAK_ON = 5,
    RFC_CTL_BREAK_OFF = 6,
    RFC_CTL_REQ_DTR = 7,
    RFC_CTL_DTR_ON = 8,
    RFC_CTL_DTR_OFF = 9,
    RFC_CTL_REQ_RTS = 10,
    RFC_CTL_RTS_ON = 11,
    RFC_CTL_RTS_OFF = 12,
};

/* PURGE-DATA values. */
enum { RFC_PURGE_RX = 1, RFC_PURGE_TX = 2, RFC_PURGE_BOTH = 3 };

/* Longest subnegotiation payload kept; longer ones (never valid RFC 2217) are truncated. */
#define RFC_SB_MAX 64

enum rfc_event_kind {
    RFC_EV_NEGOTIATE, /* verb = WILL/WONT/DO/DONT, option */
    RFC_EV_SUBNEG,    /* option, data/len = payload after the option byte, unescaped */
    RFC_EV_COMMAND,   /* any other IAC <verb> (NOP, AYT, ...): verb */
};

struct rfc_event {
    enum rfc_event_kind kind;
    uint8_t verb;
    uint8_t option;
    const uint8_t *data;
    size_t len;
    size_t pos; /* data bytes the decoder had output before this event (stream offset) */
};

typedef void (*rfc_event_fn)(void *ud, const struct rfc_event *ev);

struct rfc_decoder {
    int state;
    uint8_t verb;
    uint8_t sb[RFC_SB_MAX];
    size_t sblen;
    size_t total; /* data bytes output so far */
};

void rfc_decoder_init(struct rfc_decoder *d);

/* Split a received telnet stream: data bytes are copied to out (which must hold n bytes) and the
 * count returned; commands are reported through fn as they complete. State carries over between
 * calls, so commands may be split across reads. */
size_t rfc_decode(struct rfc_decoder *d, const uint8_t *in, size_t n, uint8_t *out, rfc_event_fn fn,
                  void *ud);

/* Double every 0xFF; out must hold 2*n bytes. Returns the encoded length. */
size_t rfc_escape(const uint8_t *in, size_t n, uint8_t *out);

/* IAC <verb> <option> into out[3]; returns 3. */
size_t rfc_option(uint8_t verb, uint8_t option, uint8_t *out);

/* IAC SB 44 <cmd> <value, escaped> IAC SE; out must hold 6 + 2*n bytes. Returns the length. */
size_t rfc_subneg(uint8_t cmd, const uint8_t *value, size_t n, uint8_t *out);

/* Telnet option state for the options we care about, RFC 1143 style without the queue bits:
 * each side of each option is off, requested (we asked, no answer yet) or on. */
enum { RFC_OFF = 0, RFC_WANT = 1, RFC_ON = 2 };
struct rfc_options {
    uint8_t us[256];   /* options we perform (WILL) */
    uint8_t them[256]; /* options the peer performs (DO) */
};

void rfc_options_init(struct rfc_options *o);

/* Record that we sent a request (WILL or DO) for option; returns the 3 bytes to send in out. */
size_t rfc_request(struct rfc_options *o, uint8_t verb, uint8_t option, uint8_t *out);

/* Process a received WILL/WONT/DO/DONT: updates state and writes the reply (0 or 3 bytes) to out.
 * We agree to BINARY, SGA and COM-PORT-OPTION in both directions and refuse everything else. */
size_t rfc_negotiate(struct rfc_options *o, uint8_t verb, uint8_t option, uint8_t *out);

/* Big-endian 32-bit baud rate value for SET-BAUDRATE, and back. */
void rfc_put_u32(uint8_t *out, uint32_t v);
uint32_t rfc_get_u32(const uint8_t *in);

#endif
