/* Keras's value forms for the layer kinds' get_config ops. */
#include "layers/config_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool graft_config_add_pair(cJSON *o, const char *key, int a, int b)
{
    const int v[2] = {a, b};
    cJSON *arr = cJSON_CreateIntArray(v, 2);
    if (arr && cJSON_AddItemToObject(o, key, arr)) return true;
    cJSON_Delete(arr);
    return false;
}

bool graft_config_add_sides(cJSON *o, const char *key, const int v[4])
{
    cJSON *p = cJSON_AddArrayToObject(o, key);
    return p && cJSON_AddItemToArray(p, cJSON_CreateIntArray(v, 2)) &&
           cJSON_AddItemToArray(p, cJSON_CreateIntArray(v + 2, 2)) &&
           cJSON_AddStringToObject(o, "data_format", "channels_last");
}

bool graft_config_add_float(cJSON *o, const char *key, float v)
{
    /* cJSON prints a double with the fewest of 15 or 17 digits that give it
     * back, so the double must be the short decimal, not (double)v. */
    double d = v;
    for (int digits = 1; digits <= 9; digits++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        double shorter = strtod(buf, NULL);
        if ((float)shorter == v) {
            d = shorter;
            break;
        }
    }
    return cJSON_AddNumberToObject(o, key, d) != NULL;
}

bool graft_config_add_initializer(cJSON *o, const char *key, const char *cls)
{
    cJSON *init = cJSON_AddObjectToObject(o, key), *cfg;
    return init && cJSON_AddStringToObject(init, "class_name", cls) &&
           (cfg = cJSON_AddObjectToObject(init, "config")) &&
           (strcmp(cls, "GlorotUniform") != 0 || cJSON_AddNullToObject(cfg, "seed"));
}

bool graft_config_add_nulls(cJSON *o, const char *const *keys)
{
    for (; *keys; keys++)
        if (!cJSON_AddNullToObject(o, *keys)) return false;
    return true;
}

bool graft_config_add_conv_common(cJSON *o, const int kernel[2], const int strides[2],
                                  graft_padding padding, const int dilation[2], int groups,
                                  graft_activation activation, int no_bias)
{
    return graft_config_add_pair(o, "kernel_size", kernel[0], kernel[1]) &&
           graft_config_add_pair(o, "strides", strides[0], strides[1]) &&
           graft_config_add_padding(o, padding) &&
           cJSON_AddStringToObject(o, "data_format", "channels_last") &&
           graft_config_add_pair(o, "dilation_rate", dilation[0], dilation[1]) &&
           cJSON_AddNumberToObject(o, "groups", groups) &&
           cJSON_AddStringToObject(o, "activation", graft_activation_name(activation)) &&
           cJSON_AddBoolToObject(o, "use_bias", !no_bias);
}

bool graft_config_add_padding(cJSON *o, graft_padding p)
{
    return cJSON_AddStringToObject(o, "padding", p == GRAFT_SAME ? "same" : "valid") != NULL;
}

graft_status graft_config_done(const graft_layer *l, bool ok)
{
    if (ok) return GRAFT_OK;
    return graft_fail(GRAFT_ENOMEM, "layer '%s' (%s): out of memory writing its Keras config",
                      l->name, l->ops->class_name);
}

/* ------------------------------------------------------------- reading */

graft_status graft_config_refuse(const graft_config_in *c, graft_status s, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return graft_fail(s, "%s: layer '%s' (%s): %s", c->path, c->name, c->cls, msg);
}

const char *graft_config_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool graft_config_present(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v);
}

bool graft_config_small_int(const cJSON *v, int lo, int *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > 1 << 24)
        return false;
    *out = (int)v->valuedouble;
    return true;
}

graft_status graft_config_bool(const graft_config_in *c, const cJSON *cfg, const char *key,
                               bool dflt, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = dflt;
    if (!v || cJSON_IsNull(v)) return GRAFT_OK;
    if (!cJSON_IsBool(v)) return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' is not true/false", key);
    *out = cJSON_IsTrue(v);
    return GRAFT_OK;
}

graft_status graft_config_num(const graft_config_in *c, const cJSON *cfg, const char *key,
                              double dflt, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = dflt;
    if (!v || cJSON_IsNull(v)) return GRAFT_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' is not a number", key);
    *out = v->valuedouble;
    return GRAFT_OK;
}

graft_status graft_config_float(const graft_config_in *c, const cJSON *cfg, const char *key,
                                float dflt, float *out)
{
    double d;
    graft_status s = graft_config_num(c, cfg, key, dflt, &d);
    if (s != GRAFT_OK) return s;
    if (!isfinite((float)d))
        return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' = %g does not fit a float", key, d);
    *out = (float)d;
    return GRAFT_OK;
}

graft_status graft_config_int(const graft_config_in *c, const cJSON *cfg, const char *key,
                              int dflt, int lo, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = dflt;
    if (!v || cJSON_IsNull(v)) return GRAFT_OK;
    if (!graft_config_small_int(v, lo, out))
        return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' is not an integer >= %d", key, lo);
    return GRAFT_OK;
}

graft_status graft_config_pair(const graft_config_in *c, const cJSON *cfg, const char *key,
                               int dflt, int out[2])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    out[0] = out[1] = dflt;
    if (!v || cJSON_IsNull(v)) return GRAFT_OK;
    if (graft_config_small_int(v, 1, &out[0])) {
        out[1] = out[0];
        return GRAFT_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
        graft_config_small_int(cJSON_GetArrayItem(v, 0), 1, &out[0]) &&
        graft_config_small_int(cJSON_GetArrayItem(v, 1), 1, &out[1]))
        return GRAFT_OK;
    return graft_config_refuse(c, GRAFT_EFORMAT,
                               "'%s' is not a positive integer or a pair of them", key);
}

graft_status graft_config_conv_window(const graft_config_in *c, const cJSON *cfg, int kernel[2],
                                      int strides[2], graft_padding *padding, int dilation[2])
{
    graft_status s = graft_config_pair(c, cfg, "kernel_size", 0, kernel);
    if (s == GRAFT_OK && !kernel[0]) s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'kernel_size'");
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "strides", 1, strides);
    if (s == GRAFT_OK) s = graft_config_padding(c, cfg, padding);
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "dilation_rate", 1, dilation);
    if (s == GRAFT_OK && (dilation[0] > 1 || dilation[1] > 1) && (strides[0] > 1 || strides[1] > 1))
        s = graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                "dilation_rate (%d, %d) with strides (%d, %d): Keras allows "
                                "one of them above 1, not both",
                                dilation[0], dilation[1], strides[0], strides[1]);
    return s;
}

graft_status graft_config_sides(const graft_config_in *c, const cJSON *cfg, const char *key,
                                int dflt, int v[4])
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cfg, key);
    int a, b;
    v[0] = v[1] = v[2] = v[3] = dflt;
    bool ok = !p || cJSON_IsNull(p);
    if (!ok && graft_config_small_int(p, 0, &a)) {
        v[0] = v[1] = v[2] = v[3] = a;
        ok = true;
    } else if (!ok && cJSON_IsArray(p) && cJSON_GetArraySize(p) == 2) {
        const cJSON *h = cJSON_GetArrayItem(p, 0), *w = cJSON_GetArrayItem(p, 1);
        if (graft_config_small_int(h, 0, &a) && graft_config_small_int(w, 0, &b)) {
            v[0] = v[1] = a;
            v[2] = v[3] = b;
            ok = true;
        } else if (cJSON_GetArraySize(h) == 2 && cJSON_GetArraySize(w) == 2) {
            ok = graft_config_small_int(cJSON_GetArrayItem(h, 0), 0, &v[0]) &&
                 graft_config_small_int(cJSON_GetArrayItem(h, 1), 0, &v[1]) &&
                 graft_config_small_int(cJSON_GetArrayItem(w, 0), 0, &v[2]) &&
                 graft_config_small_int(cJSON_GetArrayItem(w, 1), 0, &v[3]);
        }
    }
    return ok ? GRAFT_OK : graft_config_refuse(c, GRAFT_EFORMAT, "'%s' is not understood", key);
}

graft_status graft_config_padding(const graft_config_in *c, const cJSON *cfg, graft_padding *out)
{
    const char *p = graft_config_str(cfg, "padding");
    *out = GRAFT_VALID;
    if (!p || strcmp(p, "valid") == 0) return GRAFT_OK;
    if (strcmp(p, "same") == 0) {
        *out = GRAFT_SAME;
        return GRAFT_OK;
    }
    return graft_config_refuse(c, GRAFT_EUNSUPPORTED, "padding '%s' is not supported (valid, same)",
                               p);
}

graft_status graft_config_activation(const graft_config_in *c, const cJSON *cfg,
                                     const char *key, graft_activation *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = GRAFT_LINEAR;
    if (!v || cJSON_IsNull(v)) return GRAFT_OK;
    const char *a = cJSON_IsString(v) ? v->valuestring : graft_config_str(v, "config");
    if (!a) return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' is not an activation name", key);
    if (graft_activation_parse(a, out) != GRAFT_OK)
        return graft_config_refuse(c, GRAFT_EUNSUPPORTED, "activation '%s' is not supported", a);
    return GRAFT_OK;
}

graft_status graft_config_axis(const graft_config_in *c, const cJSON *cfg, const char *key,
                               int dflt, int rank, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    int a = dflt;
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = cJSON_GetArrayItem(v, 0);
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            fabs(v->valuedouble) > 64)
            return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' is not an integer", key);
        a = (int)v->valuedouble;
    }
    /* Keras's axis counts the batch: per-sample axis a - 1. */
    int i = a < 0 ? rank + a : a - 1;
    if (i < 0 || i >= rank)
        return graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                   "%s=%d is not an axis of a rank-%d input (batch excluded)", key,
                                   a, rank);
    *out = i;
    return GRAFT_OK;
}

graft_status graft_config_absent(const graft_config_in *c, const cJSON *cfg, const char *key)
{
    if (graft_config_present(cfg, key))
        return graft_config_refuse(c, GRAFT_EUNSUPPORTED, "%s is not supported", key);
    return GRAFT_OK;
}
