/* libFuzzer harness for the telnet/RFC 2217 decoder (src/rfc2217.c), which parses bytes straight
 * off the network. Properties checked on every input, beyond "no crash, no sanitizer report":
 *   - fed whole or split at a point the input chooses, the decoder gives the same data and the
 *     same events (commands may straddle reads);
 *   - data never outgrows its input, a subnegotiation payload never exceeds RFC_SB_MAX;
 *   - decode(escape(x)) == x with no events;
 *   - option negotiation answers stay within the 3 bytes the contract sizes.
 * Built with clang -fsanitize=fuzzer,address,undefined (MPCTL_FUZZ=ON); without clang the same
 * function replays the committed corpus (replay_main.c). */
#include "rfc2217.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct trace {
    size_t n;
    uint64_t sum; /* order-sensitive digest of every event */
};

static void digest(void *ud, const struct rfc_event *e)
{
    struct trace *t = ud;
    if (e->len > RFC_SB_MAX)
        abort();
    uint64_t h = t->sum * 1099511628211u + (unsigned)e->kind * 7u + e->verb * 3u + e->option + e->pos;
    for (size_t i = 0; i < e->len; i++)
        h = h * 31u + e->data[i];
    t->sum = h;
    t->n++;
}

static void negotiate(void *ud, const struct rfc_event *e)
{
    struct rfc_options *o = ud;
    if (e->kind == RFC_EV_NEGOTIATE) {
        uint8_t out[3];
        if (rfc_negotiate(o, e->verb, e->option, out) > 3)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t cut = data[0] % size;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    uint8_t *a = malloc(n + 1), *b = malloc(n + 1), *esc = malloc(2 * n + 1), *back = malloc(2 * n + 1);
    if (!a || !b || !esc || !back)
        abort();

    struct rfc_decoder d;
    struct trace whole = {0, 0}, split = {0, 0};
    rfc_decoder_init(&d);
    size_t na = rfc_decode(&d, in, n, a, digest, &whole);
    rfc_decoder_init(&d);
    size_t k = cut < n ? cut : n;
    size_t nb = rfc_decode(&d, in, k, b, digest, &split);
    nb += rfc_decode(&d, in + k, n - k, b + nb, digest, &split);
    if (na > n || na != nb || memcmp(a, b, na) != 0 || whole.n != split.n || whole.sum != split.sum)
        abort();

    size_t ne = rfc_escape(in, n, esc);
    struct trace none = {0, 0};
    rfc_decoder_init(&d);
    size_t nback = rfc_decode(&d, esc, ne, back, digest, &none);
    if (nback != n || memcmp(back, in, n) != 0 || none.n != 0)
        abort();

    struct rfc_options o;
    rfc_options_init(&o);
    rfc_decoder_init(&d);
    rfc_decode(&d, in, n, a, negotiate, &o);

    free(a);
    free(b);
    free(esc);
    free(back);
    return 0;
}
