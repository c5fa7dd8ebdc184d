/* The metadata every export writes: class names, preprocessing, input shape. */
#include "export/export_meta.h"

#include <math.h>
#include <string.h>

static cJSON *classes_array(const graft_export_meta *meta)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < meta->n_classes; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateString(meta->classes[i] ? meta->classes[i] : ""))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

char *export_classes_json(const graft_export_meta *meta)
{
    cJSON *a = classes_array(meta);
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

/* How the page and other readers turn RGB 0..255 pixels into the model's input. */
static cJSON *preprocessing(const graft_export_meta *meta)
{
    const char *p = meta->preprocess ? meta->preprocess : "none";
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "name", p)) goto fail;
    float px[4][3] = {{0}};
    for (int k = 0; k < 3; k++) px[k + 1][k] = 255.0f;
    bool known = true;
    if (!strcmp(p, "rescale")) {
        for (int k = 0; k < 4; k++)
            for (int c = 0; c < 3; c++) px[k][c] /= 255.0f;
    } else if (strcmp(p, "none") != 0) {
        known = graft_preprocess_input(p, &px[0][0], 4) == GRAFT_OK;
        graft_clear_error();
    }
    if (!known) return o;
    /* y[c] = x[source[c]] * scale[c] + offset[c] */
    double source[3] = {0, 1, 2}, scale[3], offset[3];
    for (int c = 0; c < 3; c++) {
        offset[c] = px[0][c];
        for (int k = 0; k < 3; k++) {
            double a = (px[k + 1][c] - px[0][c]) / 255.0;
            if (fabs(a) > 1e-9) {
                source[c] = k;
                scale[c] = a;
            }
        }
    }
    if (!cJSON_AddItemToObject(o, "source_channel", cJSON_CreateDoubleArray(source, 3)) ||
        !cJSON_AddItemToObject(o, "scale", cJSON_CreateDoubleArray(scale, 3)) ||
        !cJSON_AddItemToObject(o, "offset", cJSON_CreateDoubleArray(offset, 3)))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

cJSON *export_metadata(const graft_model *m, const graft_export_meta *meta)
{
    const graft_shape *in = &m->layers[0]->out_shape;
    cJSON *o = cJSON_CreateObject(), *shape = NULL;
    bool ok = o && cJSON_AddStringToObject(o, "model_name", m->name) &&
              cJSON_AddStringToObject(o, "producer", "graft " GRAFT_VERSION) &&
              cJSON_AddItemToObject(o, "classes", classes_array(meta)) &&
              cJSON_AddItemToObject(o, "preprocessing", preprocessing(meta)) &&
              (shape = cJSON_CreateIntArray(in->dim, in->rank)) &&
              cJSON_AddItemToObject(o, "input_shape", shape);
    if (ok && meta->val_accuracy > 0)
        ok = cJSON_AddNumberToObject(o, "val_accuracy", round(meta->val_accuracy * 1e4) / 1e4) != NULL;
    else if (ok)
        ok = cJSON_AddNullToObject(o, "val_accuracy") != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
