/* graft models (the bases the zoo builds), the zoo architecture, alpha and
 * MobileNetV3 variant a weights file fits, and `graft summary` of a
 * weights-only .h5. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The widths Keras Applications publishes weights for (MobileNet, MobileNetV2,
 * MobileNetV3); an architecture without a width refuses any but 1. */
static const float alphas[] = {1.0f, 0.75f, 0.5f, 0.25f, 0.35f, 1.3f, 1.4f};

/* The cfg of `arch` without top at this width, variant and size. */
static graft_zoo_cfg base_cfg(float alpha, int minimalistic, int size)
{
    graft_zoo_cfg z = graft_zoo_default_cfg();
    z.include_top = 0;
    z.alpha = alpha;
    z.minimalistic = minimalistic;
    z.input_shape[0] = z.input_shape[1] = size;
    return z;
}

/* Builds `arch` without top: NULL when it cannot be built so. */
static graft_model *build_base(const char *arch, float alpha, int minimalistic, int size)
{
    graft_zoo_cfg z = base_cfg(alpha, minimalistic, size);
    graft_model *m = NULL;
    if (graft_zoo_build(arch, &z, &m) != GRAFT_OK) return NULL;
    return m;
}

static size_t total_params(const graft_model *m) { return graft_model_count_params(m).total; }

/* The layers of a weights file that hold weights, by name, and how many
 * values each holds. */
typedef struct {
    char (*names)[GRAFT_NAME_MAX];
    size_t *sizes;
    int n, cap;
    bool oom;
} name_list;

static void add_name(const char *layer, const char *weight, int rank, const long long *dims,
                     void *ctx)
{
    (void)weight;
    name_list *l = ctx;
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= dims[i] > 0 ? (size_t)dims[i] : 0;
    if (l->oom) return;
    if (l->n > 0 && strcmp(l->names[l->n - 1], layer) == 0) {
        l->sizes[l->n - 1] += count;
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        void *grown = realloc(l->names, (size_t)cap * sizeof *l->names);
        if (grown) l->names = grown;
        void *sizes = grown ? realloc(l->sizes, (size_t)cap * sizeof *l->sizes) : NULL;
        if (sizes) l->sizes = sizes;
        if (!grown || !sizes) {
            l->oom = true;
            return;
        }
        l->cap = cap;
    }
    l->sizes[l->n] = count;
    snprintf(l->names[l->n++], GRAFT_NAME_MAX, "%s", layer);
}

static int find_name(const name_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0) return i;
    return -1;
}

static bool has_name(const name_list *l, const char *name) { return find_name(l, name) >= 0; }

/* Whether a layer of the probe holds another number of values than the
 * file's layer of its name: then loading by name (as the files of the bases
 * with a width load) fails, and the probe need not try. */
static bool sizes_clash(const name_list *l, const graft_model *probe)
{
    for (int i = 0; i < graft_model_num_layers(probe); i++) {
        const graft_layer *layer = graft_model_layer(probe, i);
        int k = graft_layer_num_weights(layer) > 0 ? find_name(l, graft_layer_name(layer)) : -1;
        if (k >= 0 && l->sizes[k] != graft_layer_count_params(layer)) return true;
    }
    return false;
}

static bool has_part(const name_list *l, const char *part)
{
    for (int i = 0; i < l->n; i++)
        if (strstr(l->names[i], part)) return true;
    return false;
}

int cli_match_weights(const char *file, const char *only_arch, char *arch, size_t cap, float *alpha,
                      int *minimalistic)
{
    /* A candidate must find all its layers in the file; one that takes
     * every layer of the file wins over one that leaves some (a top, or the
     * deeper blocks of a VGG19 file that fits VGG16 too). Building a base
     * costs far more than reading the file's names, so a base whose
     * weighted_mark the file lacks is not built at all. */
    name_list in_file = {0};
    if (graft_weights_file_list(file, add_name, &in_file, NULL) != GRAFT_OK || in_file.oom ||
        in_file.n == 0) {
        free(in_file.names);
        free(in_file.sizes);
        return -1;
    }
    /* MobileNetV3's variants: a file without squeeze-and-excite layers is
     * minimalistic's, so that variant is tried first for it. */
    int minimal_first = !has_part(&in_file, "squeeze_excite");
    int found = -1;
    char partial[64] = "";
    float partial_alpha = 0;
    int partial_minimal = 0;
    for (int i = 0; found < 0; i++) {
        const graft_zoo_arch *za = graft_zoo_arch_at(i);
        if (!za) break;
        const char *a = za->name;
        if (only_arch && strcmp(a, only_arch) != 0) continue;
        if (za->weighted_mark && !has_name(&in_file, za->weighted_mark)) continue;
        int variants = run_base_has_minimalistic(a) ? 2 : 1;
        for (int v = 0; found < 0 && v < variants; v++) {
            int minimal = variants == 2 ? (v == 0) == minimal_first : 0;
            for (size_t k = 0; found < 0 && k < sizeof alphas / sizeof *alphas; k++) {
                graft_model *probe = build_base(a, alphas[k], minimal, 224);
                if (!probe) break; /* no width argument: only alpha 1 builds */
                graft_zoo_cfg z = base_cfg(alphas[k], minimal, 224);
                int loaded = 0, want = 0;
                bool fits = !(run_base_has_alpha(a) && sizes_clash(&in_file, probe)) &&
                            graft_zoo_load_weights(probe, a, &z, file, &loaded) == GRAFT_OK;
                for (int l = 0; fits && l < graft_model_num_layers(probe); l++)
                    want += graft_layer_num_weights(graft_model_layer(probe, l)) > 0;
                graft_model_free(probe);
                if (fits && loaded == want && want == in_file.n) {
                    snprintf(arch, cap, "%s", a);
                    *alpha = alphas[k];
                    *minimalistic = minimal;
                    found = 0;
                } else if (fits && loaded == want && want > 0 && !partial[0]) {
                    snprintf(partial, sizeof partial, "%s", a);
                    partial_alpha = alphas[k];
                    partial_minimal = minimal;
                }
            }
        }
    }
    if (found < 0 && partial[0]) {
        snprintf(arch, cap, "%s", partial);
        *alpha = partial_alpha;
        *minimalistic = partial_minimal;
        found = 0;
    }
    free(in_file.names);
    free(in_file.sizes);
    return found;
}

/* ------------------------------------------------------------ weights-only .h5 */

typedef struct {
    const char *path;
    int layers;
    size_t params;
    char last[GRAFT_NAME_MAX];
} h5_tally;

/* Printed with the first weight, so that a file that cannot be listed
 * prints nothing here. */
static void print_header(h5_tally *t)
{
    if (t->layers > 0 || t->last[0]) return;
    printf("Weights of %s (a weights-only file: no model config)\n", t->path);
    printf(" %-34s %-44s %-20s %12s\n", "layer", "weight", "shape", "params");
}

static void print_weight(const char *layer, const char *weight, int rank, const long long *dims,
                         void *ctx)
{
    h5_tally *t = ctx;
    print_header(t);
    bool first = strcmp(layer, t->last) != 0;
    if (first) {
        snprintf(t->last, sizeof t->last, "%s", layer);
        t->layers++;
    }
    char shape[128];
    size_t o = (size_t)snprintf(shape, sizeof shape, "("), count = 1;
    for (int i = 0; i < rank && o < sizeof shape; i++) {
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", i ? ", " : "", dims[i]);
        count *= (size_t)dims[i];
    }
    if (o < sizeof shape) snprintf(shape + o, sizeof shape - o, rank == 1 ? ",)" : ")");
    printf(" %-34.34s %-44.44s %-20s %12zu\n", first ? layer : "", weight, shape, count);
    t->params += count;
}

int cli_summary_weights(const char *path)
{
    h5_tally t = {path, 0, 0, ""};
    int n = 0;
    if (graft_weights_file_list(path, print_weight, &t, &n) != GRAFT_OK) return -1;
    print_header(&t);
    char total[32];
    snprintf(total, sizeof total, "%zu", t.params);
    /* Keras's thousands separators */
    char sep[48];
    size_t len = strlen(total), o = 0;
    for (size_t i = 0; i < len; i++) {
        sep[o++] = total[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len) sep[o++] = ',';
    }
    sep[o] = '\0';
    printf("%d layers with weights (of %d listed), total params: %s\n", t.layers, n, sep);
    char arch[64];
    float alpha;
    int minimal;
    if (cli_match_weights(path, NULL, arch, sizeof arch, &alpha, &minimal) == 0) {
        char flags[64];
        run_width_flags(arch, alpha, minimal, flags, sizeof flags);
        if (run_base_has_alpha(arch))
            printf("These weights fit the zoo's %s base (include_top=False) with alpha %g%s: --base %s%s\n",
                   arch, alpha, minimal ? ", minimalistic" : "", arch, flags);
        else
            printf("These weights fit the zoo's %s base (include_top=False): --base %s\n", arch, arch);
    } else {
        printf("These weights fit none of the zoo's bases (graft models lists them) without top.\n");
    }
    return 0;
}

/* ------------------------------------------------------------ graft models */

int cmd_models(int argc, char **argv)
{
    if (argc > 1) {
        bool help = argc == 2 && strcmp(argv[1], "--help") == 0;
        fprintf(help ? stdout : stderr,
                "usage: graft models\nLists the bases graft train --base takes: the smallest input the\n"
                "base accepts (and graft's largest, %d), its parameters without top at alpha 1, and\n"
                "where its ImageNet weights come from (the cache, else Keras's download URL).\n",
                CLI_MAX_INPUT);
        return help ? 0 : 2;
    }
    char cache[CLI_PATH] = "";
    graft_zoo_cache_dir(cache, sizeof cache);
    printf("%-14s %-14s %-12s %12s  %s\n", "base", "Keras", "input", "params", "ImageNet weights (include_top=False)");
    for (int i = 0;; i++) {
        const graft_zoo_arch *za = graft_zoo_arch_at(i);
        if (!za) break;
        const char *keras = za->keras_name, *arch = za->name;
        int min = za->min_size;
        graft_model *m = build_base(arch, 1.0f, 0, min);
        char input[32] = "?", params[32] = "?", where[CLI_PATH + 300] = "none known (random initialization)";
        if (m) {
            snprintf(input, sizeof input, "%d-%d", min, CLI_MAX_INPUT);
            snprintf(params, sizeof params, "%zu", total_params(m));
            graft_model_free(m);
        }
        graft_zoo_cfg z = graft_zoo_default_cfg();
        z.include_top = 0;
        graft_weights_file wf;
        if (graft_zoo_imagenet_file(arch, &z, &wf) == GRAFT_OK) {
            char p[CLI_PATH + 200];
            snprintf(p, sizeof p, "%s/%s", cache, wf.file_name);
            if (cache[0] && cli_is_file(p)) snprintf(where, sizeof where, "cached: %s", p);
            else snprintf(where, sizeof where, "download: %s", wf.url);
        }
        printf("%-14s %-14s %-12s %12s  %s\n", arch, keras ? keras : "", input, params, where);
    }
    printf("%-14s %-14s %-12s %12s  %s\n", "scratch", "(the lesson's CNN)", "32-4096", "-", "none: trained from scratch");
    printf("MobileNet, MobileNetV2 and MobileNetV3 take --alpha (weights published for MobileNet 0.25,\n"
           "0.5, 0.75, 1.0; MobileNetV2 0.35, 0.5, 0.75, 1.0, 1.3, 1.4; MobileNetV3 0.75, 1.0), and\n"
           "MobileNetV3 --minimalistic (weights published at alpha 1.0); parameters above are at\n"
           "alpha 1.\n");
    return 0;
}
