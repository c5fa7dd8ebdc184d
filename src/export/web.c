/*
 * The web export: the TF.js layers model (graft_export_tfjs), plus a static
 * page that classifies images in the browser. The page must work opened from
 * disk, where browsers refuse fetch() of file:// URLs, so the model also goes
 * into model.js (topology, weight specs, base64 weights, metadata) that a
 * <script> tag loads and tf.io.fromMemory reads; tf.min.js is copied beside
 * it from the @tensorflow/tfjs npm package. No network access at any point.
 *
 * Test hook: index.html?test=FILE.js loads FILE.js, which sets
 * window.GRAFT_TEST_IMAGES = [{name, url}]; the page classifies each and
 * writes "name<TAB>class<TAB>probability" lines into #results (and the
 * title becomes "done"). ?backend=cpu chooses TF.js's CPU backend.
 */
#include "export/export_meta.h"
#include "export/tfjs.h"

#include <stdlib.h>
#include <string.h>

static const char page_html[] =
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>graft model</title>\n<style>\n"
    "body{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}\n"
    "h1{font-size:1.5em;margin-bottom:.2em}\n#info{color:#555;margin-top:0}\n"
    "#drop{border:2px dashed #888;border-radius:10px;padding:1.5em;text-align:center;margin:1em 0}\n"
    "#drop.over{background:#eef}\n#preview{width:224px;display:block;margin:1em auto;image-rendering:auto}\n"
    "#top{list-style:none;padding:0}\n#top li{margin:.4em 0}\n"
    ".bar{display:inline-block;height:1em;background:#3a7;vertical-align:middle;margin-left:.5em}\n"
    ".cls{display:inline-block;min-width:10em;font-weight:600}\n"
    ".pct{display:inline-block;min-width:4em;text-align:right}\n#status{color:#a50}\n"
    "#results{font-size:.8em;color:#555;white-space:pre-wrap}\n</style>\n"
    "<script src=\"tf.min.js\"></script>\n<script src=\"model.js\"></script>\n</head>\n<body>\n"
    "<h1 id=\"name\">graft model</h1>\n<p id=\"info\"></p>\n"
    "<div id=\"drop\">Drop an image here, or choose one: <input type=\"file\" id=\"file\" accept=\"image/*\"></div>\n"
    "<p id=\"status\">Loading the model&hellip;</p>\n<img id=\"preview\" alt=\"\">\n"
    "<ol id=\"top\"></ol>\n<pre id=\"results\"></pre>\n"
    "<script>\n"
    "'use strict';\n"
    "(async function () {\n"
    "  const M = window.GRAFT_MODEL, meta = M.metadata, $ = (id) => document.getElementById(id);\n"
    "  const status = (t) => { $('status').textContent = t; };\n"
    "  const classes = meta.classes || [];\n"
    "  $('name').textContent = meta.model_name;\n"
    "  document.title = 'graft: ' + meta.model_name;\n"
    "  const acc = meta.val_accuracy == null ? 'unknown' : (100 * meta.val_accuracy).toFixed(1) + '%';\n"
    "  $('info').textContent = 'Classes: ' + (classes.length ? classes.join(', ') : '(none recorded)') +\n"
    "      ' \\u00b7 validation accuracy: ' + acc + ' \\u00b7 input ' + meta.input_shape.join('\\u00d7');\n"
    "  const q = new URLSearchParams(location.search);\n"
    "  if (q.get('backend')) await tf.setBackend(q.get('backend'));\n"
    "  await tf.ready();\n"
    "  const raw = atob(M.weightData), bytes = new Uint8Array(raw.length);\n"
    "  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);\n"
    "  const model = await tf.loadLayersModel(tf.io.fromMemory({\n"
    "      modelTopology: M.modelTopology, weightSpecs: M.weightSpecs, weightData: bytes.buffer}));\n"
    "  const [h, w] = meta.input_shape, pre = meta.preprocessing || {};\n"
    "  const canvas = document.createElement('canvas');\n"
    "  canvas.width = w; canvas.height = h;\n"
    "  function scores(img) {\n"
    "    const ctx = canvas.getContext('2d');\n"
    "    ctx.drawImage(img, 0, 0, w, h);\n"
    "    return tf.tidy(() => {\n"
    "      let x = tf.browser.fromPixels(canvas).toFloat();\n"
    "      if (pre.scale) x = x.gather(pre.source_channel, 2).mul(pre.scale).add(pre.offset);\n"
    "      const p = Array.from(model.predict(x.expandDims(0)).dataSync());\n"
    "      return p.length === 1 ? [1 - p[0], p[0]] : p;\n"
    "    });\n"
    "  }\n"
    "  function top(p) {\n"
    "    return p.map((v, i) => [classes[i] !== undefined ? classes[i] : 'class ' + i, v])\n"
    "        .sort((a, b) => b[1] - a[1]).slice(0, 5);\n"
    "  }\n"
    "  function show(t) {\n"
    "    $('top').innerHTML = '';\n"
    "    t.forEach(([c, v], k) => {\n"
    "      const li = document.createElement('li');\n"
    "      li.dataset.cls = c; li.dataset.prob = v.toFixed(4);\n"
    "      if (k === 0) li.id = 'best';\n"
    "      const name = document.createElement('span'); name.className = 'cls'; name.textContent = c;\n"
    "      const bar = document.createElement('span'); bar.className = 'bar'; bar.style.width = (200 * v) + 'px';\n"
    "      const pct = document.createElement('span'); pct.className = 'pct'; pct.textContent = (100 * v).toFixed(1) + '%';\n"
    "      li.append(name, pct, bar);\n"
    "      $('top').append(li);\n"
    "    });\n"
    "  }\n"
    "  function load(url) {\n"
    "    return new Promise((ok, fail) => { const img = $('preview'); img.onload = () => ok(img);\n"
    "      img.onerror = () => fail(new Error('cannot read the image')); img.src = url; });\n"
    "  }\n"
    "  async function classify(url) {\n"
    "    const t = top(scores(await load(url)));\n"
    "    show(t);\n"
    "    status('');\n"
    "    return t;\n"
    "  }\n"
    "  function fromFile(f) { if (f) classify(URL.createObjectURL(f)).catch((e) => status(e.message)); }\n"
    "  $('file').onchange = (e) => fromFile(e.target.files[0]);\n"
    "  const drop = $('drop');\n"
    "  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };\n"
    "  drop.ondragleave = () => drop.classList.remove('over');\n"
    "  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); fromFile(e.dataTransfer.files[0]); };\n"
    "  status('Ready: choose or drop an image.');\n"
    "  if (q.get('test')) {\n"
    "    await new Promise((ok, fail) => { const s = document.createElement('script');\n"
    "      s.src = q.get('test'); s.onload = ok; s.onerror = () => fail(new Error('no ' + q.get('test')));\n"
    "      document.head.append(s); });\n"
    "    const lines = [];\n"
    "    for (const im of window.GRAFT_TEST_IMAGES) {\n"
    "      const t = await classify(im.url);\n"
    "      lines.push(im.name + '\\t' + t[0][0] + '\\t' + t[0][1].toFixed(6));\n"
    "    }\n"
    "    $('results').textContent = lines.join('\\n');\n"
    "    document.title = 'done';\n"
    "  }\n"
    "})().catch((e) => { document.getElementById('status').textContent = 'Error: ' + e.message;\n"
    "  document.title = 'error'; });\n"
    "</script>\n</body>\n</html>\n";

static char *base64(const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *p++ = tab[v >> 18];
        *p++ = tab[(v >> 12) & 63];
        *p++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *p++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *p = '\0';
    return out;
}

typedef struct {
    const char *json;
    const char *path;
} model_js_job;

static graft_status write_model_js(FILE *f, void *ctx)
{
    const model_js_job *j = ctx;
    if (fputs("window.GRAFT_MODEL = ", f) < 0 || fputs(j->json, f) < 0 || fputs(";\n", f) < 0)
        return graft_fail(GRAFT_EIO, "%s: write failed", j->path);
    return GRAFT_OK;
}

static graft_status copy_file(const char *from, const char *to)
{
    size_t n = 0;
    unsigned char *d = NULL;
    FILE *f = fopen(from, "rb");
    if (!f) return graft_fail(GRAFT_ENOTFOUND, "the TF.js runtime %s cannot be read", from);
    graft_status s = GRAFT_OK;
    if (fseek(f, 0, SEEK_END) != 0) s = graft_fail(GRAFT_EIO, "%s: cannot seek", from);
    long len = s == GRAFT_OK ? ftell(f) : -1;
    if (s == GRAFT_OK && (len <= 0 || fseek(f, 0, SEEK_SET) != 0))
        s = graft_fail(GRAFT_EIO, "%s: empty or unreadable", from);
    if (s == GRAFT_OK && !(d = malloc((size_t)len))) s = graft_fail(GRAFT_ENOMEM, "%s: out of memory", from);
    if (s == GRAFT_OK && (n = fread(d, 1, (size_t)len, f)) != (size_t)len)
        s = graft_fail(GRAFT_EIO, "%s: read failed", from);
    fclose(f);
    if (s == GRAFT_OK) s = export_write_bytes(to, d, n);
    free(d);
    return s;
}

graft_status graft_export_web(const graft_model *m, const char *dir, const graft_tfjs_opts *o,
                              const char *tfjs_runtime)
{
    static const graft_tfjs_opts defaults = {0};
    if (!o) o = &defaults;
    if (!tfjs_runtime || !*tfjs_runtime)
        return graft_fail(GRAFT_EINVAL, "web export: the TF.js runtime (tf.min.js) is required");
    graft_status s = graft_export_tfjs(m, dir, o);
    if (s != GRAFT_OK) return s;
    cJSON *topology = NULL, *specs = NULL, *root = NULL, *meta = NULL;
    unsigned char *data = NULL;
    char *b64 = NULL, *json = NULL, path[4096];
    size_t n = 0;
    s = export_tfjs_parts(m, o, &topology, &specs, &data, &n);
    if (s != GRAFT_OK) goto fail;
    b64 = base64(data, n);
    meta = export_metadata(m, &o->meta);
    root = cJSON_CreateObject();
    bool ok = b64 && meta && root && cJSON_AddItemToObject(root, "modelTopology", topology);
    if (ok) topology = NULL;
    ok = ok && cJSON_AddItemToObject(root, "weightSpecs", specs);
    if (ok) specs = NULL;
    ok = ok && cJSON_AddItemToObject(root, "metadata", meta);
    if (ok) meta = NULL;
    ok = ok && cJSON_AddStringToObject(root, "weightData", b64);
    if (!ok || !(json = cJSON_PrintUnformatted(root))) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory writing the web page of model '%s'", m->name);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/model.js", dir);
    model_js_job job = {json, path};
    s = graft_file_write_atomic(path, write_model_js, &job);
    if (s == GRAFT_OK) {
        snprintf(path, sizeof path, "%s/tf.min.js", dir);
        s = copy_file(tfjs_runtime, path);
    }
    if (s == GRAFT_OK) {
        snprintf(path, sizeof path, "%s/index.html", dir);
        s = export_write_bytes(path, page_html, strlen(page_html));
    }
fail:
    cJSON_Delete(topology);
    cJSON_Delete(specs);
    cJSON_Delete(meta);
    cJSON_Delete(root);
    free(data);
    free(b64);
    free(json);
    return s;
}
