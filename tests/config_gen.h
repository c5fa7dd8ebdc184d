/* Keras model configs of any length, for the loading tests and bench/bench_load.c:
 * a functional chain input -> l1 -> ... of Dense(1) or Activation layers,
 * listed in order or in reverse (each layer before its input). */
#ifndef GRAFT_CONFIG_GEN_H
#define GRAFT_CONFIG_GEN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;
    size_t len, cap;
    bool failed;
} gen_buf;

static inline void gen_add(gen_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void gen_add(gen_buf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
}

static inline void gen_layer(gen_buf *b, int i, bool dense)
{
    if (i == 0) {
        gen_add(b, "{\"class_name\": \"InputLayer\", \"name\": \"l0\", \"config\": {\"name\": \"l0\", "
                   "\"batch_input_shape\": [null, 1]}, \"inbound_nodes\": []}");
        return;
    }
    if (dense)
        gen_add(b, "{\"class_name\": \"Dense\", \"name\": \"l%d\", \"config\": {\"name\": \"l%d\", "
                   "\"units\": 1}, \"inbound_nodes\": [[[\"l%d\", 0, 0, {}]]]}",
                i, i, i - 1);
    else
        gen_add(b, "{\"class_name\": \"Activation\", \"name\": \"l%d\", \"config\": {\"name\": \"l%d\", "
                   "\"activation\": \"relu\"}, \"inbound_nodes\": [[[\"l%d\", 0, 0, {}]]]}",
                i, i, i - 1);
}

/* The JSON text (malloc'd; NULL when out of memory) of a chain of n >= 2
 * layers in all: the input l0, then l1 ... l(n-1). */
static inline char *chain_config(int n, bool dense, bool reverse)
{
    gen_buf b = {0};
    gen_add(&b, "{\"class_name\": \"Functional\", \"config\": {\"name\": \"chain\", \"layers\": [");
    for (int k = 0; k < n; k++) {
        if (k) gen_add(&b, ",\n");
        gen_layer(&b, reverse ? n - 1 - k : k, dense);
    }
    gen_add(&b, "], \"input_layers\": [[\"l0\", 0, 0]], \"output_layers\": [[\"l%d\", 0, 0]]}}", n - 1);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

#endif
