/* Keras's value forms for the layer kinds' get_config ops. */
#include "layers/config_json.h"

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
                                  graft_padding padding, graft_activation activation, int no_bias)
{
    return graft_config_add_pair(o, "kernel_size", kernel[0], kernel[1]) &&
           graft_config_add_pair(o, "strides", strides[0], strides[1]) &&
           graft_config_add_padding(o, padding) &&
           cJSON_AddStringToObject(o, "data_format", "channels_last") &&
           graft_config_add_pair(o, "dilation_rate", 1, 1) && cJSON_AddNumberToObject(o, "groups", 1) &&
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
