/* Unit tests of the telnet/RFC 2217 codec (src/rfc2217.c): escaping, decoding split at every
 * byte boundary, subnegotiation payloads, and option negotiation without loops. */
#include "rfc2217.h"

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

struct log {
    int n;
    struct {
        enum rfc_event_kind kind;
        uint8_t verb, option;
        uint8_t data[RFC_SB_MAX];
        size_t len, pos;
    } ev[16];
};

static void record(void *ud, const struct rfc_event *e)
{
    struct log *lg = ud;
    if (lg->n >= 16)
        return;
    lg->ev[lg->n].kind = e->kind;
    lg->ev[lg->n].verb = e->verb;
    lg->ev[lg->n].option = e->option;
    lg->ev[lg->n].len = e->len;
    lg->ev[lg->n].pos = e->pos;
    if (e->len)
        memcpy(lg->ev[lg->n].data, e->data, e->len);
    lg->n++;
}

static void test_escape(void)
{
    uint8_t in[256], enc[512], dec[512];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)i;
    size_t n = rfc_escape(in, 256, enc);
    CHECK(n == 257);
    CHECK(enc[255] == 255 && enc[256] == 255);
    struct rfc_decoder d;
    rfc_decoder_init(&d);
    struct log lg = {0};
    size_t m = rfc_decode(&d, enc, n, dec, record, &lg);
    CHECK(m == 256);
    CHECK(memcmp(dec, in, 256) == 0);
    CHECK(lg.n == 0);
}

/* A baud subnegotiation whose value contains 0xFF, between data bytes, fed in every split. */
static void test_subneg_split(void)
{
    uint8_t stream[64], val[4];
    size_t k = 0;
    stream[k++] = 'a';
    rfc_put_u32(val, 0x00FF1234u);
    k += rfc_subneg(RFC_SET_BAUDRATE + RFC_SERVER, val, 4, stream + k);
    stream[k++] = 0xFF;
    stream[k++] = 0xFF;
    k += rfc_option(TN_DO, TN_OPT_COMPORT, stream + k);
    stream[k++] = 'b';
    for (size_t cut = 0; cut <= k; cut++) {
        struct rfc_decoder d;
        rfc_decoder_init(&d);
        struct log lg = {0};
        uint8_t out[64];
        size_t m = rfc_decode(&d, stream, cut, out, record, &lg);
        m += rfc_decode(&d, stream + cut, k - cut, out + m, record, &lg);
        CHECK(m == 3);
        CHECK(out[0] == 'a' && out[1] == 0xFF && out[2] == 'b');
        CHECK(lg.n == 2);
        CHECK(lg.ev[0].kind == RFC_EV_SUBNEG && lg.ev[0].option == TN_OPT_COMPORT);
        CHECK(lg.ev[0].len == 5 && lg.ev[0].data[0] == RFC_SET_BAUDRATE + RFC_SERVER);
        CHECK(rfc_get_u32(lg.ev[0].data + 1) == 0x00FF1234u);
        CHECK(lg.ev[0].pos == 1);
        CHECK(lg.ev[1].kind == RFC_EV_NEGOTIATE && lg.ev[1].verb == TN_DO);
        CHECK(lg.ev[1].option == TN_OPT_COMPORT && lg.ev[1].pos == 2);
    }
}

static void test_other_commands(void)
{
    const uint8_t in[] = {'x', TN_IAC, 241 /* NOP */, 'y'};
    uint8_t out[8];
    struct rfc_decoder d;
    rfc_decoder_init(&d);
    struct log lg = {0};
    CHECK(rfc_decode(&d, in, sizeof in, out, record, &lg) == 2);
    CHECK(lg.n == 1 && lg.ev[0].kind == RFC_EV_COMMAND && lg.ev[0].verb == 241);
}

static void test_subneg_bytes(void)
{
    uint8_t out[16];
    const uint8_t v = RFC_CTL_DTR_ON;
    size_t n = rfc_subneg(RFC_SET_CONTROL, &v, 1, out);
    const uint8_t want[] = {255, 250, 44, 5, 8, 255, 240};
    CHECK(n == sizeof want && memcmp(out, want, n) == 0);
}

/* Two of our own option engines talking: both sides request, both agree, and the exchange
 * settles with no further replies (no negotiation loop). */
static size_t deliver(struct rfc_options *to, const uint8_t *msgs, size_t n, uint8_t *replies)
{
    size_t k = 0;
    for (size_t i = 0; i + 3 <= n; i += 3)
        k += rfc_negotiate(to, msgs[i + 1], msgs[i + 2], replies + k);
    return k;
}

static void test_negotiation(void)
{
    struct rfc_options client, server;
    rfc_options_init(&client);
    rfc_options_init(&server);
    uint8_t c2s[64], s2c[64], r1[64], r2[64];
    size_t nc = 0, ns = 0;
    nc += rfc_request(&client, TN_WILL, TN_OPT_COMPORT, c2s + nc);
    nc += rfc_request(&client, TN_DO, TN_OPT_BINARY, c2s + nc);
    nc += rfc_request(&client, TN_WILL, TN_OPT_BINARY, c2s + nc);
    ns += rfc_request(&server, TN_DO, TN_OPT_COMPORT, s2c + ns);
    ns += rfc_request(&server, TN_WILL, TN_OPT_SGA, s2c + ns);
    size_t a = deliver(&server, c2s, nc, r1); /* server answers client's requests */
    size_t b = deliver(&client, s2c, ns, r2); /* client answers server's requests */
    size_t c = deliver(&client, r1, a, s2c);
    size_t e = deliver(&server, r2, b, c2s);
    CHECK(c == 0 && e == 0);
    CHECK(client.us[TN_OPT_COMPORT] == RFC_ON && server.them[TN_OPT_COMPORT] == RFC_ON);
    CHECK(client.us[TN_OPT_BINARY] == RFC_ON && client.them[TN_OPT_BINARY] == RFC_ON);
    CHECK(client.them[TN_OPT_SGA] == RFC_ON && server.us[TN_OPT_SGA] == RFC_ON);

    /* Unknown options are refused, and refusing twice does not flip state. */
    uint8_t out[3];
    CHECK(rfc_negotiate(&client, TN_DO, TN_OPT_ECHO, out) == 3 && out[1] == TN_WONT);
    CHECK(rfc_negotiate(&client, TN_WILL, TN_OPT_ECHO, out) == 3 && out[1] == TN_DONT);
    CHECK(rfc_negotiate(&client, TN_WONT, TN_OPT_ECHO, out) == 0);
    /* Peer turns BINARY off: we confirm once, then stay quiet. */
    CHECK(rfc_negotiate(&client, TN_WONT, TN_OPT_BINARY, out) == 3 && out[1] == TN_DONT);
    CHECK(rfc_negotiate(&client, TN_WONT, TN_OPT_BINARY, out) == 0);
}

int main(void)
{
    test_escape();
    test_subneg_split();
    test_other_commands();
    test_subneg_bytes();
    test_negotiation();
    if (failures) {
        fprintf(stderr, "test_rfc2217: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_rfc2217: ok\n");
    return 0;
}
