/* A run's settings inside its model.h5 (the "graft_config" attribute: the
 * run's config.json), so that a bare .h5 from graft predicts with its own
 * class names, preprocessing, interpolation and input size. Keras ignores
 * root attributes it does not know, so the file stays a Keras model file.
 * And opening a model for the commands that use one: a run folder, or a
 * model file with that attribute read when it has one. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_ATTR "graft_config"
/* HDF5 keeps attributes in the object header, which holds at most 64 KiB:
 * a run with more class names than fit keeps them in config.json only. */
#define META_MAX 60000

int cli_copy_file(const char *from, const char *to)
{
    char tmp[CLI_PATH + 16];
    snprintf(tmp, sizeof tmp, "%s.partial", to);
    FILE *in = fopen(from, "rb");
    if (!in) return cli_fail("cannot read %s: %s", from, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        int err = errno;
        fclose(in);
        return cli_fail("cannot write %s: %s", to, strerror(err));
    }
    /* Each step's errno is the message: a full disk says so. */
    char buf[1 << 16];
    size_t n;
    int err = 0;
    while (!err && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) err = errno ? errno : EIO;
    bool bad_read = ferror(in);
    fclose(in);
    if (!err && fflush(out) != 0) err = errno;
    if (!err && fsync(fileno(out)) != 0) err = errno;
    if (fclose(out) != 0 && !err) err = errno;
    if (!err && !bad_read && rename(tmp, to) != 0) err = errno;
    if (err || bad_read) {
        unlink(tmp);
        return bad_read ? cli_fail("cannot read %s", from) : cli_fail("cannot write %s: %s", to, strerror(err));
    }
    return 0;
}

int run_save_model(const graft_model *m, const run_config *c, const char *path)
{
    if (!cli_writes()) return 0; /* rank 0 alone writes the run folder */
    char *text = run_config_text(c);
    if (!text) return cli_fail("out of memory writing %s", path);
    graft_status s = strlen(text) > META_MAX
                         ? graft_model_save(m, path)
                         : graft_model_save_with_metadata(m, path, META_ATTR, text);
    free(text);
    if (s != GRAFT_OK) return s == GRAFT_EUNSUPPORTED ? 2 : cli_fail_status(s, path);
    return 0;
}

int run_config_from_h5(const char *path, run_config *c)
{
    memset(c, 0, sizeof *c);
    char *text = NULL;
    if (graft_h5_metadata_read(path, META_ATTR, &text) != GRAFT_OK) return -1;
    char what[CLI_PATH + 32];
    snprintf(what, sizeof what, "%s (attribute %s)", path, META_ATTR);
    int rc = strlen(text) <= META_MAX && run_config_parse(text, what, c) == 0 ? 0 : -1;
    free(text);
    return rc;
}

int cli_model_open(const char *path, cli_model *out)
{
    memset(out, 0, sizeof *out);
    if (cli_is_dir(path)) {
        if (run_config_load(path, &out->run)) return 1;
        out->is_run = true;
        run_config built = out->run;
        built.weights[0] = '\0';
        if (run_build_model(&built, &out->m)) return 1;
        char p[CLI_PATH + 32];
        snprintf(p, sizeof p, "%s/model.h5", path);
        if (!cli_is_file(p)) snprintf(p, sizeof p, "%s/model.weights.h5", path);
        graft_status s = graft_model_load_weights(out->m, p, &(graft_load_opts){.by_name = 1});
        return s == GRAFT_OK ? 0 : cli_fail_status(s, p);
    }
    if (!cli_is_file(path))
        return cli_fail(access(path, F_OK) == 0 ? "model %s is neither a file nor a run folder"
                                                : "model %s does not exist",
                        path);
    graft_status s = graft_model_load(path, &out->m);
    if (s != GRAFT_OK) return cli_fail_status(s, path);
    out->arch = graft_zoo_detect_arch(out->m);
    size_t len = strlen(path);
    if (len > 3 && strcmp(path + len - 3, ".h5") == 0 && run_config_from_h5(path, &out->run) == 0)
        out->is_run = true;
    return 0;
}

void cli_model_free(cli_model *cm)
{
    graft_model_free(cm->m);
    run_config_free(&cm->run);
    memset(cm, 0, sizeof *cm);
}

graft_status cli_model_preprocess(const cli_model *l, float *x, size_t n_pixels)
{
    const char *arch = l->is_run ? (strcmp(l->run.preprocess, "model") == 0 ? l->run.base : NULL) : l->arch;
    if (arch && strcmp(arch, "scratch") != 0) return graft_preprocess_input(arch, x, n_pixels);
    for (size_t i = 0; i < n_pixels * 3; i++) x[i] /= 255.0f;
    return GRAFT_OK;
}

/* Appends a copy of path to the list; false when out of memory. */
bool cli_push_path(char ***all, int *n, int *cap, const char *path)
{
    if (*n == *cap) {
        int want = *cap ? 2 * *cap : 64;
        char **grown = realloc(*all, (size_t)want * sizeof **all);
        if (!grown) return false;
        *all = grown;
        *cap = want;
    }
    if (!((*all)[*n] = strdup(path))) return false;
    ++*n;
    return true;
}
