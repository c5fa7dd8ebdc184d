/* --int8 DIR of graft predict, evaluate and export: the calibration
 * images, read as predict reads images, and graft_model_quantize_int8. */
#include "cli.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The calibration images of --int8 DIR: DIR's own images, else those of
 * its subfolders (a dataset's classes) in turn, sorted by name. */
static int calibration_list(const char *dir, char ***out, int *n_out)
{
    char **all = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent **sub = NULL;
    int ns = scandir(dir, &sub, NULL, alphasort);
    if (ns < 0) return cli_fail("--int8: cannot read folder %s", dir);
    for (int i = 0; i < ns; i++) {
        char path[CLI_PATH];
        int len = snprintf(path, sizeof path, "%s/%s", dir, sub[i]->d_name);
        char **files = NULL;
        int nf = 0;
        if (rc == 0 && sub[i]->d_name[0] != '.' && len < (int)sizeof path && cli_is_dir(path) &&
            graft_image_list(path, &files, &nf) == GRAFT_OK)
            for (int j = 0; j < nf && rc == 0; j++)
                if (!cli_push_path(&all, &n, &cap, files[j])) rc = cli_fail("out of memory listing %s", dir);
        graft_image_list_free(files, nf);
        free(sub[i]);
    }
    free(sub);
    if (rc == 0 && n == 0) { /* no class subfolders: the folder's own images */
        graft_status s = graft_image_list(dir, &all, &n);
        if (s != GRAFT_OK) rc = cli_fail("--int8: no image in %s or its subfolders to calibrate on", dir);
    }
    if (rc) {
        graft_image_list_free(all, n);
        return rc;
    }
    *out = all;
    *n_out = n;
    return 0;
}

/* --int8 DIR: count images spread evenly over DIR's list, decoded and
 * preprocessed as predict reads images, calibrate the model's int8 run. */
int cli_quantize(const cli_model *l, const char *dir, int count, graft_interpolation interp)
{
    char **list = NULL;
    int n = 0;
    int rc = calibration_list(dir, &list, &n);
    if (rc) return rc;
    if (count > n) count = n;
    graft_shape in = graft_layer_output_shape(graft_model_layer(l->m, 0));
    size_t each = graft_shape_size(&in), pixels = (size_t)in.dim[0] * in.dim[1];
    const char **pick = malloc((size_t)count * sizeof *pick);
    float *x = malloc((size_t)count * each * sizeof *x);
    int *ok = malloc((size_t)count * sizeof *ok);
    char(*why)[GRAFT_WHY_LEN] = malloc((size_t)count * sizeof *why);
    if (!pick || !x || !ok || !why) rc = cli_fail("out of memory for %d calibration images", count);
    graft_status s = GRAFT_OK;
    int kept = 0;
    if (rc == 0) {
        for (int i = 0; i < count; i++) pick[i] = list[(size_t)i * (size_t)n / (size_t)count];
        s = graft_image_load_many(pick, count, in.dim[0], in.dim[1], interp, 0, !l->is_run, x, ok, why);
        for (int i = 0; s == GRAFT_OK && i < count; i++) {
            if (!ok[i]) {
                cli_fail("--int8: skipping %s", why[i]);
                continue;
            }
            if (kept != i) memmove(x + (size_t)kept * each, x + (size_t)i * each, each * sizeof *x);
            kept++;
        }
        if (s == GRAFT_OK && kept == 0) rc = cli_fail("--int8: no readable image in %s", dir);
    }
    if (rc == 0 && s == GRAFT_OK) s = cli_model_preprocess(l, x, (size_t)kept * pixels);
    if (rc == 0 && s == GRAFT_OK) s = graft_model_quantize_int8(l->m, x, kept);
    if (rc == 0 && s != GRAFT_OK) rc = cli_fail_status(s, "--int8");
    if (rc == 0) {
        const char *first_float;
        int layers = graft_model_int8_layers(l->m, &first_float);
        fprintf(stderr, "int8: %d layers in 8 bits%s%s%s, calibrated on %d images of %s\n", layers,
                first_float ? ", float from '" : "", first_float ? first_float : "",
                first_float ? "'" : "", kept, dir);
    }
    free(pick);
    free(x);
    free(ok);
    free(why);
    graft_image_list_free(list, n);
    return rc;
}
