/*
 * TensorFlow.js layers-model export: model.json holds the Keras model config
 * (io_model_to_config, as graft's Keras files) under modelTopology and one
 * weight group in the weightsManifest; its bytes, every weight in layer
 * order, are cut into shards of at most shard_bytes. Quantization follows
 * tensorflowjs_converter: uint8 codes with a per-tensor scale and a min
 * nudged so that 0 is exact (value = code * scale + min), or float16; only
 * kernels (rank >= 2) are quantized, the 1-D weights stay float32.
 */
#include "export/export_meta.h"
#include "export/tfjs.h"
#include "io/io.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_SHARD_BYTES ((size_t)4 << 20)

typedef struct {
    const unsigned char *data;
    size_t n;
    const char *path;
} bytes_job;

static graft_status write_bytes_fn(FILE *f, void *ctx)
{
    const bytes_job *j = ctx;
    if (j->n && fwrite(j->data, 1, j->n, f) != j->n)
        return graft_fail(GRAFT_EIO, "%s: write failed", j->path);
    return GRAFT_OK;
}

graft_status export_write_bytes(const char *path, const void *data, size_t n)
{
    bytes_job j = {data, n, path};
    return graft_file_write_atomic(path, write_bytes_fn, &j);
}

graft_status export_write_json(const char *path, const cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    if (!text) return graft_fail(GRAFT_ENOMEM, "%s: out of memory", path);
    graft_status s = export_write_bytes(path, text, strlen(text));
    free(text);
    return s;
}

graft_status export_make_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return GRAFT_OK;
        return graft_fail(GRAFT_EIO, "%s exists and is not a folder", dir);
    }
    if (mkdir(dir, 0777) != 0) return graft_fail(GRAFT_EIO, "%s: cannot make the folder: %s", dir, strerror(errno));
    return GRAFT_OK;
}

static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (e == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    int ex = (int)e - 127 + 15;
    if (ex >= 31) return (uint16_t)(sign | 0x7c00);
    if (ex <= 0) { /* subnormal half (or zero): round to nearest even */
        if (ex < -10) return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - ex;
        uint32_t h = mant >> shift, rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)ex << 10) | (mant >> 13), rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* may carry into the exponent: right */
    return (uint16_t)(sign | h);
}

/* Appends one weight's bytes (quantized as asked) to buf at *n; fills its manifest entry. */
static bool add_weight(cJSON *specs, const graft_layer *l, const graft_weight *w,
                       graft_quantization q, unsigned char *buf, size_t *n)
{
    size_t count = graft_shape_size(&w->shape);
    char name[2 * GRAFT_NAME_MAX];
    snprintf(name, sizeof name, "%s/%s", l->name, w->name);
    cJSON *e = cJSON_CreateObject(), *quant = NULL;
    bool ok = e && cJSON_AddItemToArray(specs, e) && cJSON_AddStringToObject(e, "name", name) &&
              cJSON_AddItemToObject(e, "shape", cJSON_CreateIntArray(w->shape.dim, w->shape.rank)) &&
              cJSON_AddStringToObject(e, "dtype", "float32");
    if (!ok) return false;
    const float *d = w->data;
    /* Kernels only: biases and BatchNormalization's vectors are a sliver of
     * the bytes, and 8-bit codes over a variance's range wreck the smallest
     * variances (a MobileNet's validation accuracy fell by 6 points). */
    if (w->shape.rank < 2) q = GRAFT_QUANT_NONE;
    if (q == GRAFT_QUANT_NONE) {
        memcpy(buf + *n, d, count * 4);
        *n += count * 4;
        return true;
    }
    if (!(quant = cJSON_AddObjectToObject(e, "quantization"))) return false;
    if (q == GRAFT_QUANT_FLOAT16) {
        for (size_t i = 0; i < count; i++) {
            uint16_t h = float_to_half(d[i]);
            memcpy(buf + *n + 2 * i, &h, 2);
        }
        *n += count * 2;
        return cJSON_AddStringToObject(quant, "dtype", "float16") &&
               cJSON_AddStringToObject(quant, "original_dtype", "float32");
    }
    float lo = 0, hi = 0; /* the range always holds 0 */
    for (size_t i = 0; i < count; i++) {
        lo = fminf(lo, d[i]);
        hi = fmaxf(hi, d[i]);
    }
    float scale = (hi - lo) / 255.0f;
    if (!(scale > 0)) scale = 1.0f;
    float zero = roundf(-lo / scale), min = -zero * scale;
    for (size_t i = 0; i < count; i++) {
        float c = roundf((d[i] - min) / scale);
        buf[*n + i] = (unsigned char)(c < 0 ? 0 : c > 255 ? 255 : c);
    }
    *n += count;
    return cJSON_AddStringToObject(quant, "dtype", "uint8") &&
           cJSON_AddNumberToObject(quant, "scale", scale) && cJSON_AddNumberToObject(quant, "min", min) &&
           cJSON_AddStringToObject(quant, "original_dtype", "float32");
}

graft_status export_tfjs_parts(const graft_model *m, const graft_tfjs_opts *o, cJSON **topology,
                               cJSON **specs, unsigned char **data, size_t *n_data)
{
    *topology = *specs = NULL;
    *data = NULL;
    *n_data = 0;
    size_t floats = 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i]->n_weights; k++)
            floats += graft_shape_size(&m->layers[i]->weights[k].shape);
    graft_status s = io_model_to_config(m, topology);
    if (s != GRAFT_OK) return s;
    *specs = cJSON_CreateArray();
    *data = malloc(floats ? floats * 4 : 1);
    bool ok = *specs && *data && cJSON_AddStringToObject(*topology, "keras_version", "2.13.1") &&
              cJSON_AddStringToObject(*topology, "backend", "tensorflow");
    for (int i = 0; ok && i < m->n_layers; i++)
        for (int k = 0; ok && k < m->layers[i]->n_weights; k++)
            ok = add_weight(*specs, m->layers[i], &m->layers[i]->weights[k], o->quantize, *data, n_data);
    if (ok) return GRAFT_OK;
    cJSON_Delete(*topology);
    cJSON_Delete(*specs);
    free(*data);
    *topology = *specs = NULL;
    *data = NULL;
    return graft_fail(GRAFT_ENOMEM, "out of memory exporting model '%s' to TF.js", m->name);
}

graft_status graft_export_tfjs(const graft_model *m, const char *dir, const graft_tfjs_opts *o)
{
    static const graft_tfjs_opts defaults = {0};
    if (!o) o = &defaults;
    if (!m || !dir) return graft_fail(GRAFT_EINVAL, "graft_export_tfjs: model and folder are required");
    if (m->status != GRAFT_OK) return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    if (o->quantize != GRAFT_QUANT_NONE && o->quantize != GRAFT_QUANT_UINT8 && o->quantize != GRAFT_QUANT_FLOAT16)
        return graft_fail(GRAFT_EINVAL, "TF.js export: unknown quantization %d", (int)o->quantize);
    size_t shard = o->shard_bytes ? o->shard_bytes : DEFAULT_SHARD_BYTES;
    cJSON *topology = NULL, *specs = NULL, *root = NULL, *meta = NULL;
    unsigned char *data = NULL;
    size_t n = 0;
    char path[4096];
    graft_status s = export_make_dir(dir);
    if (s == GRAFT_OK) s = export_tfjs_parts(m, o, &topology, &specs, &data, &n);
    if (s != GRAFT_OK) goto fail;

    size_t n_shards = n ? (n + shard - 1) / shard : 1;
    cJSON *manifest = NULL, *group = NULL, *paths = NULL;
    root = cJSON_CreateObject();
    bool ok = root && cJSON_AddStringToObject(root, "format", "layers-model") &&
              cJSON_AddStringToObject(root, "generatedBy", "graft " GRAFT_VERSION) &&
              cJSON_AddStringToObject(root, "convertedBy", "graft " GRAFT_VERSION) &&
              cJSON_AddItemToObject(root, "modelTopology", topology) &&
              (manifest = cJSON_AddArrayToObject(root, "weightsManifest")) &&
              (group = cJSON_CreateObject()) && cJSON_AddItemToArray(manifest, group) &&
              (paths = cJSON_AddArrayToObject(group, "paths")) && cJSON_AddItemToObject(group, "weights", specs);
    if (ok) topology = specs = NULL; /* root owns them */
    for (size_t i = 0; ok && i < n_shards; i++) {
        char name[64];
        snprintf(name, sizeof name, "group1-shard%zuof%zu.bin", i + 1, n_shards);
        ok = cJSON_AddItemToArray(paths, cJSON_CreateString(name));
        if (!ok) break;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        size_t off = i * shard, len = n - off < shard ? n - off : shard;
        if (n == 0) len = 0;
        s = export_write_bytes(path, data + off, len);
        if (s != GRAFT_OK) goto fail;
    }
    if (!ok || !(meta = export_metadata(m, &o->meta))) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory exporting model '%s' to TF.js", m->name);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/model.json", dir);
    s = export_write_json(path, root);
    if (s != GRAFT_OK) goto fail;
    /* Teachable Machine's keys too, so its tools read the folder. */
    cJSON *labels = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(meta, "classes"), 1);
    if (labels && !cJSON_AddItemToObject(meta, "labels", labels)) {
        cJSON_Delete(labels);
        labels = NULL;
    }
    if (!labels || !cJSON_AddNumberToObject(meta, "imageSize", m->layers[0]->out_shape.dim[0])) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory exporting model '%s' to TF.js", m->name);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/metadata.json", dir);
    s = export_write_json(path, meta);
fail:
    cJSON_Delete(topology);
    cJSON_Delete(specs);
    cJSON_Delete(root);
    cJSON_Delete(meta);
    free(data);
    return s;
}
