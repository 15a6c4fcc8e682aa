/* Random-input test of the telnet/RFC 2217 decoder, which parses bytes straight off the network:
 * seeded streams full of IAC sequences must decode the same whether fed whole or split at random
 * points, never write past the output the contract sizes, and escape() then decode() must give
 * the data back. Run under ASan+UBSan by the test command. */
#include "rfc2217.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 4096

struct trace {
    size_t n;
    unsigned long sum; /* order-sensitive digest of every event */
};

static void digest(void *ud, const struct rfc_event *e)
{
    struct trace *t = ud;
    unsigned long h = t->sum * 131u + (unsigned)e->kind * 7u + e->verb * 3u + e->option + e->pos;
    for (size_t i = 0; i < e->len; i++)
        h = h * 31u + e->data[i];
    if (e->len > RFC_SB_MAX)
        h ^= 0xdeadu; /* impossible by contract: makes the comparison fail */
    t->sum = h;
    t->n++;
}

static uint32_t next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Bytes biased towards telnet syntax so the state machine's corners are reached. */
static size_t make_stream(uint32_t *seed, uint8_t *buf)
{
    static const uint8_t hot[] = {TN_IAC, TN_SB, TN_SE, TN_WILL, TN_WONT, TN_DO, TN_DONT, TN_OPT_COMPORT, 0, 1, 5, 8, 101};
    size_t n = next(seed) % MAXN;
    for (size_t i = 0; i < n; i++) {
        uint32_t r = next(seed);
        buf[i] = (r % 3 == 0) ? hot[(r >> 8) % sizeof hot] : (uint8_t)(r >> 16);
    }
    return n;
}

int main(void)
{
    static uint8_t in[MAXN], whole[MAXN], split[MAXN], esc[2 * MAXN], back[2 * MAXN];
    int failures = 0;
    uint32_t seed = 0x2217u;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = make_stream(&seed, in);

        struct rfc_decoder d1, d2;
        struct trace t1 = {0, 0}, t2 = {0, 0};
        rfc_decoder_init(&d1);
        size_t n1 = rfc_decode(&d1, in, n, whole, digest, &t1);

        rfc_decoder_init(&d2);
        size_t n2 = 0, at = 0;
        while (at < n) {
            size_t k = 1 + next(&seed) % 17;
            if (k > n - at)
                k = n - at;
            n2 += rfc_decode(&d2, in + at, k, split + n2, digest, &t2);
            at += k;
        }
        if (n1 > n || n1 != n2 || memcmp(whole, split, n1) != 0 || t1.n != t2.n || t1.sum != t2.sum) {
            fprintf(stderr, "iteration %d: whole vs split decode differ (data %zu/%zu, events %zu/%zu)\n",
                    iter, n1, n2, t1.n, t2.n);
            failures++;
        }

        /* plain data survives escape + decode whatever bytes it holds */
        size_t ne = rfc_escape(in, n, esc);
        struct rfc_decoder d3;
        struct trace t3 = {0, 0};
        rfc_decoder_init(&d3);
        size_t nb = rfc_decode(&d3, esc, ne, back, digest, &t3);
        if (nb != n || memcmp(back, in, n) != 0 || t3.n != 0) {
            fprintf(stderr, "iteration %d: escape/decode round trip lost data (%zu of %zu bytes, %zu events)\n",
                    iter, nb, n, t3.n);
            failures++;
        }
    }
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    else
        printf("rfc2217 fuzz: 3000 streams, whole = split, escape round trip ok\n");
    return failures ? 1 : 0;
}
