/* `graft export` on real runs of the lesson: a fine-tuned MobileNet (a tiny
 * training run and fine-tuning) and the CNN from scratch. ONNX Runtime on the
 * ONNX export (preprocessing included) and the web page in headless Chromium
 * classify the lesson's validation images as `graft predict` does. The images
 * are first written at the model's input size as BMP files, so graft, ORT
 * and the browser see the same pixels (no resampling differences). The
 * page's screenshot is kept in build/test-artifacts/export_web.png.
 * Skipped without the lesson's data, node modules or Chromium. */
#include "check.h"
#include "test_util.h"

#include "graft.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define DATA "../shared/data/cats_and_dogs_filtered"
#define MOBILENET_WEIGHTS "../shared/models/mobilenet_2_5_224_tf_no_top.h5"
#define N_IMAGES 12

static char tmp[64];
static const char *bin;
static bool have_ort, have_chromium;

typedef struct {
    char bmp[512];
    char cls[64];   /* graft predict's top class */
    double prob;
} image;

static int run(const char *cmd, char *out, size_t cap)
{
    static char err[8192];
    int rc = run_captured(cmd, path_in(tmp, "stdout"), path_in(tmp, "stderr"), out, cap, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  (%s) exited %d: %s\n", cmd, rc, err);
    return rc;
}

/* 24-bit BMP, bottom-up rows padded to 4 bytes. */
static int write_bmp(const char *path, const uint8_t *rgb, int h, int w)
{
    int row = (3 * w + 3) & ~3;
    size_t size = 54 + (size_t)row * h;
    uint8_t *b = calloc(1, size);
    if (!b) return -1;
    uint32_t v[] = {(uint32_t)size, 0, 54, 40, (uint32_t)w, (uint32_t)h};
    b[0] = 'B';
    b[1] = 'M';
    memcpy(b + 2, &v[0], 4);
    memcpy(b + 10, &v[2], 4);
    memcpy(b + 14, &v[3], 4);
    memcpy(b + 18, &v[4], 4);
    memcpy(b + 22, &v[5], 4);
    b[26] = 1;
    b[28] = 24;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                b[54 + (size_t)(h - 1 - y) * row + 3 * x + (2 - c)] = rgb[((size_t)y * w + x) * 3 + c];
    int rc = write_bytes(path, b, size);
    free(b);
    return rc;
}

/* Validation images (half cats, half dogs) at size x size as BMP files, and
 * their pixels as floats 0..255 in x (N_IMAGES * size * size * 3). */
static bool make_images(int size, image *im, float *x)
{
    const char *cls[2] = {"cats", "dogs"};
    size_t px = (size_t)size * size * 3;
    uint8_t *rgb = malloc(px);
    float *f = malloc(px * sizeof *f);
    bool ok = rgb && f;
    for (int i = 0; ok && i < N_IMAGES; i++) {
        char src[512];
        snprintf(src, sizeof src, DATA "/validation/%s/%s.%d.jpg", cls[i % 2], i % 2 ? "dog" : "cat", 2000 + i);
        ok = graft_image_load(src, size, size, GRAFT_INTERP_BILINEAR, 0, f) == GRAFT_OK;
        for (size_t k = 0; ok && k < px; k++) {
            float v = roundf(f[k]);
            rgb[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            x[(size_t)i * px + k] = rgb[k];
        }
        snprintf(im[i].bmp, sizeof im[i].bmp, "%s/img%d_%d.bmp", tmp, size, i);
        ok = ok && write_bmp(im[i].bmp, rgb, size, size) == 0;
    }
    free(rgb);
    free(f);
    CHECK_MSG(ok, "could not write the validation images as BMP");
    return ok;
}

/* graft predict --json --top 1 on the images: their top class and probability. */
static bool graft_predict(const char *run_dir, image *im)
{
    char cmd[16384], out[65536];
    int n = snprintf(cmd, sizeof cmd, "%s predict --model %s --top 1 --json", bin, run_dir);
    for (int i = 0; i < N_IMAGES; i++) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", im[i].bmp);
    if (run(cmd, out, sizeof out) != 0) {
        CHECK_MSG(false, "graft predict failed");
        return false;
    }
    int got = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *img = cJSON_GetObjectItem(j, "image"), *top = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "top"), 0);
        for (int i = 0; img && top && i < N_IMAGES; i++)
            if (cJSON_IsString(img) && !strcmp(img->valuestring, im[i].bmp)) {
                snprintf(im[i].cls, sizeof im[i].cls, "%s", cJSON_GetObjectItem(top, "class")->valuestring);
                im[i].prob = cJSON_GetObjectItem(top, "probability")->valuedouble;
                got++;
            }
        cJSON_Delete(j);
    }
    CHECK_MSG(got == N_IMAGES, "graft predict classified %d of %d images", got, N_IMAGES);
    return got == N_IMAGES;
}

/* ONNX Runtime on the ONNX export (preprocessing in the graph, RGB 0..255). */
static void check_onnx(const char *run_dir, int size, const image *im, const float *x)
{
    char onnx[256], in[256], out[256], cmd[2048], text[4096];
    snprintf(onnx, sizeof onnx, "%s/model.onnx", tmp);
    snprintf(cmd, sizeof cmd, "%s export --format onnx %s %s --include-preprocessing --opset 13", bin, run_dir, onnx);
    CHECK(run(cmd, text, sizeof text) == 0);
    CHECK(strstr(text, "ONNX model:") != NULL);
    if (!have_ort) return;
    snprintf(in, sizeof in, "%s/x.f32", tmp);
    snprintf(out, sizeof out, "%s/y.f32", tmp);
    CHECK(write_bytes(in, x, (size_t)N_IMAGES * size * size * 3 * sizeof *x) == 0);
    snprintf(cmd, sizeof cmd, "node tests/js/ort_run.js %s %s %s %d,%d,%d,3", onnx, in, out, N_IMAGES, size, size);
    CHECK(run(cmd, text, sizeof text) == 0);
    size_t n = 0;
    float *y = (float *)read_bytes(out, &n);
    CHECK(y && n == N_IMAGES * sizeof(float)); /* one sigmoid output per image: cats vs dogs */
    double worst = 0;
    for (int i = 0; y && n == N_IMAGES * sizeof(float) && i < N_IMAGES; i++) {
        const char *cls = y[i] > 0.5f ? "dogs" : "cats";
        double p = y[i] > 0.5f ? y[i] : 1.0 - y[i];
        CHECK_MSG(!strcmp(cls, im[i].cls), "%s: ONNX Runtime says %s, graft predict %s", im[i].bmp, cls, im[i].cls);
        worst = fmax(worst, fabs(p - im[i].prob) / im[i].prob);
    }
    printf("# ONNX Runtime vs graft predict on %d validation images: same top class; max relative "
           "difference %.2e\n", N_IMAGES, worst);
    CHECK(worst <= 1e-4);
    free(y);
}

static bool chromium(const char *args, const char *url, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "timeout 180 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
             "--virtual-time-budget=60000 %s '%s'",
             args, url);
    return run(cmd, out, cap) == 0;
}

/* The web page, opened from disk, classifies the BMPs through its test hook. */
static void check_web(const char *run_dir, const image *im)
{
    char web[256], cmd[2048], text[4096];
    if (access("js/node_modules/@tensorflow/tfjs/dist/tf.min.js", R_OK) != 0) {
        printf("# skip: js/node_modules/@tensorflow/tfjs is absent: no web export\n");
        return;
    }
    snprintf(web, sizeof web, "%s/web", tmp);
    snprintf(cmd, sizeof cmd, "%s export --format web %s %s", bin, run_dir, web);
    CHECK(run(cmd, text, sizeof text) == 0);
    CHECK(access(path_in(web, "index.html"), R_OK) == 0 && access(path_in(web, "tf.min.js"), R_OK) == 0 &&
          access(path_in(web, "model.js"), R_OK) == 0);
    if (!have_chromium) return;

    /* The images as data: URLs, so that the page reads them without file:// fetches. */
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < N_IMAGES; i++) {
        size_t n = 0;
        unsigned char *b = read_bytes(im[i].bmp, &n);
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char *url = malloc(4 * n / 3 + 64), *p = url;
        p += sprintf(p, "data:image/bmp;base64,");
        for (size_t k = 0; b && k < n; k += 3) {
            uint32_t v = (uint32_t)b[k] << 16 | (k + 1 < n ? (uint32_t)b[k + 1] << 8 : 0) | (k + 2 < n ? b[k + 2] : 0);
            *p++ = tab[v >> 18];
            *p++ = tab[(v >> 12) & 63];
            *p++ = k + 1 < n ? tab[(v >> 6) & 63] : '=';
            *p++ = k + 2 < n ? tab[v & 63] : '=';
        }
        *p = '\0';
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", im[i].bmp);
        cJSON_AddStringToObject(e, "url", url);
        cJSON_AddItemToArray(list, e);
        free(url);
        free(b);
    }
    char *json = cJSON_PrintUnformatted(list);
    FILE *f = fopen(path_in(web, "test_images.js"), "w");
    CHECK(f && json);
    if (f && json) fprintf(f, "window.GRAFT_TEST_IMAGES = %s;\n", json);
    if (f) fclose(f);
    /* One image for the screenshot. */
    cJSON *one = cJSON_CreateArray();
    cJSON_AddItemToArray(one, cJSON_Duplicate(cJSON_GetArrayItem(list, 1), 1));
    char *json1 = cJSON_PrintUnformatted(one);
    f = fopen(path_in(web, "test_one.js"), "w");
    if (f && json1) fprintf(f, "window.GRAFT_TEST_IMAGES = %s;\n", json1);
    if (f) fclose(f);
    free(json);
    free(json1);
    cJSON_Delete(list);
    cJSON_Delete(one);

    static char dom[1 << 20];
    char url[1024];
    snprintf(url, sizeof url, "file://%s/index.html?test=test_images.js&backend=cpu", web);
    CHECK(chromium("--dump-dom", url, dom, sizeof dom));
    CHECK_MSG(strstr(dom, "<title>done</title>") != NULL, "the page did not finish: %.300s",
              strstr(dom, "id=\"status\"") ? strstr(dom, "id=\"status\"") : dom);
    int agree = 0;
    char *res = strstr(dom, "<pre id=\"results\">");
    for (int i = 0; res && i < N_IMAGES; i++) {
        char *at = strstr(res, im[i].bmp);
        char cls[64] = "";
        if (at && sscanf(at + strlen(im[i].bmp), "\t%63[^\t]", cls) == 1 && !strcmp(cls, im[i].cls)) agree++;
        else CHECK_MSG(false, "%s: the page says '%s', graft predict '%s'", im[i].bmp, cls, im[i].cls);
    }
    printf("# web page in Chromium vs graft predict: %d of %d validation images same top class\n", agree, N_IMAGES);
    CHECK(agree == N_IMAGES);
    CHECK(strstr(dom, "validation accuracy: ") && strstr(dom, "Classes: cats, dogs"));

    /* The screenshot, kept for people to look at. */
    if (system("mkdir -p build/test-artifacts") == 0) {
        char args[4200];
        snprintf(args, sizeof args, "--window-size=900,760 --screenshot=%s/build/test-artifacts/export_web.png",
                 getcwd(text, sizeof text) ? text : ".");
        snprintf(url, sizeof url, "file://%s/index.html?test=test_one.js&backend=cpu", web);
        CHECK(chromium(args, url, dom, sizeof dom));
        CHECK(access("build/test-artifacts/export_web.png", R_OK) == 0);
    }
}

static void test_finetuned_mobilenet(void)
{
    NEED_FILE(MOBILENET_WEIGHTS);
    char run_dir[256], cmd[2048], out[8192];
    snprintf(run_dir, sizeof run_dir, "%s/mobilenet", tmp);
    snprintf(cmd, sizeof cmd,
             "%s train --data " DATA "/train --validation " DATA "/validation --base mobilenet --alpha 0.25 "
             "--weights " MOBILENET_WEIGHTS " --input-size 64 --epochs 1 --steps-per-epoch 3 --batch 16 --out %s",
             bin, run_dir);
    CHECK(run(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "%s finetune %s --unfreeze 20 --lr 1e-4 --epochs 1", bin, run_dir);
    CHECK(run(cmd, out, sizeof out) == 0);
    image im[N_IMAGES];
    float *x = malloc((size_t)N_IMAGES * 64 * 64 * 3 * sizeof *x);
    if (x && make_images(64, im, x) && graft_predict(run_dir, im)) {
        check_onnx(run_dir, 64, im, x);
        check_web(run_dir, im);
    }
    free(x);
}

/* The CNN from scratch: every format writes, and TF.js/ONNX flags are checked. */
static void test_scratch_and_flags(void)
{
    char run_dir[256], cmd[2048], out[8192];
    snprintf(run_dir, sizeof run_dir, "%s/scratch", tmp);
    snprintf(cmd, sizeof cmd,
             "%s train --data " DATA "/train --validation " DATA "/validation --base scratch --input-size 32 "
             "--epochs 1 --steps-per-epoch 2 --batch 8 --out %s",
             bin, run_dir);
    CHECK(run(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "%s export --format onnx %s %s/s.onnx --batch 4 --layout nchw --opset 17", bin,
             run_dir, tmp);
    CHECK(run(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "%s export --format tfjs %s %s/tfjs --quantize uint8", bin, run_dir, tmp);
    CHECK(run(cmd, out, sizeof out) == 0);
    char *meta = read_text(path_in(tmp, "tfjs/metadata.json"), NULL);
    CHECK(meta && strstr(meta, "\"classes\":[\"cats\",\"dogs\"]") && strstr(meta, "\"name\":\"rescale\""));
    free(meta);
    char *model = read_text(path_in(tmp, "tfjs/model.json"), NULL);
    CHECK(model && strstr(model, "\"dtype\":\"uint8\""));
    free(model);

    static const struct {
        const char *args, *msg;
    } bad[] = {
        {"export --format pdf RUN X", "--format pdf: onnx, tfjs or web"},
        {"export --format onnx RUN X --quantize uint8", "--quantize is for --format tfjs or web"},
        {"export --format tfjs RUN X --opset 13", "are for --format onnx"},
        {"export --format onnx RUN X --opset 9", "--opset 9: graft writes ONNX opsets 11 to 17"},
        {"export --format onnx RUN X --batch 0", "--batch 0"},
        {"export --format onnx /nonexistent/run X", "/nonexistent/run does not exist"},
        {"export --format web RUN X --tfjs-runtime /nonexistent/tf.js", "--tfjs-runtime /nonexistent/tf.js"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char args[512], err[4096];
        snprintf(args, sizeof args, "%s", bad[i].args);
        char *r = strstr(args, "RUN");
        if (r) {
            char rest[512];
            snprintf(rest, sizeof rest, "%s", r + 3);
            snprintf(r, sizeof args - (size_t)(r - args), "%s%s", run_dir, rest);
        }
        snprintf(cmd, sizeof cmd, "%s %s", bin, args);
        int rc = run_captured(cmd, path_in(tmp, "o"), path_in(tmp, "e"), out, sizeof out, err, sizeof err);
        CHECK_MSG(rc != 0 && strstr(err, "graft") && strstr(err, bad[i].msg), "%s: rc %d, '%s'", bad[i].args, rc, err);
    }
}

int main(void)
{
    bin = getenv("GRAFT_BIN");
    if (!bin) bin = "build/graft";
    snprintf(tmp, sizeof tmp, "/tmp/graft_export_XXXXXX");
    if (make_tmpdir(tmp) != 0) return 1;
    if (access(DATA "/validation/cats/cat.2000.jpg", R_OK) != 0 || access(bin, X_OK) != 0) {
        printf("# skip: the lesson's data (" DATA ") or %s is absent\n", bin);
        return CHECK_SUMMARY();
    }
    have_ort = system("node -e \"require('./js/node_modules/onnxruntime-node')\" >/dev/null 2>&1") == 0;
    have_chromium = system("chromium --version >/dev/null 2>&1") == 0;
    if (!have_ort) printf("# skip: onnxruntime-node is absent: ONNX Runtime is not run\n");
    if (!have_chromium) printf("# skip: chromium is absent: the web page is not opened\n");
    RUN(test_scratch_and_flags);
    RUN(test_finetuned_mobilenet);
    return CHECK_SUMMARY();
}
