/*
 * The environment switches graft reads, in one table: each name once, what
 * it does, and where it takes effect. Everything asks graft_env() (or
 * graft_env_on()), nothing calls getenv for them. Values are read when they
 * take effect (a model's creation, a plan, a layer's build, a download), not
 * cached at start-up, so a program or test may change them between models.
 * The README's "Environment" section lists the same table.
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name, *doc;
} table[GRAFT_ENV_COUNT] = {
    [GRAFT_ENV_PROFILE] = {"GRAFT_PROFILE",
                           "1: time every layer's passes and the optimizer (each one's first "
                           "time after a plan apart); the table goes to stderr when the model is "
                           "freed, each plan's fused steps when made"},
    [GRAFT_ENV_NO_ONEDNN] = {"GRAFT_NO_ONEDNN",
                             "1: convolutions by im2col + GEMM instead of oneDNN's primitives"},
    [GRAFT_ENV_NO_WINOGRAD] = {"GRAFT_NO_WINOGRAD", "1: no Winograd F(4x4, 3x3) convolutions"},
    [GRAFT_ENV_NO_CONV_POOL] = {"GRAFT_NO_CONV_POOL",
                                "1: the plan keeps a ReLU convolution of the image and its 2x2 "
                                "max pool as two steps"},
    [GRAFT_ENV_NO_WINOGRAD_POOL] = {"GRAFT_NO_WINOGRAD_POOL",
                                    "1: the plan keeps a Winograd ReLU convolution and its 2x2 "
                                    "max pool as two steps"},
    [GRAFT_ENV_HOME] = {"GRAFT_HOME",
                        "graft's cache folder (downloaded weights and datasets); default "
                        "~/.cache/graft"},
    [GRAFT_ENV_WEIGHTS_BASE_URL] = {"GRAFT_WEIGHTS_BASE_URL",
                                    "where pretrained weights are downloaded from, instead of "
                                    "Keras's release URLs"},
    [GRAFT_ENV_DARKNET_DATA] = {"GRAFT_DARKNET_DATA",
                                "the folder of Debian darknet's ImageNet label lists; default "
                                "/usr/share/darknet/data"},
    [GRAFT_ENV_WEIGHTS] = {"GRAFT_WEIGHTS",
                           "graft lesson/train: the pretrained MobileNet file, before the "
                           "cache and ../shared"},
    [GRAFT_ENV_DATA] = {"GRAFT_DATA", "graft lesson/train: the dataset folder, before the cache"},
    [GRAFT_ENV_DATA_URL] = {"GRAFT_DATA_URL",
                            "graft lesson: where the dataset archive is downloaded from"},
    [GRAFT_ENV_DATA_SHA256] = {"GRAFT_DATA_SHA256",
                               "graft lesson: the SHA-256 of the archive at GRAFT_DATA_URL (without "
                               "it, or --insecure, that download is refused)"},
    [GRAFT_ENV_ONEDNN_MAX_CPU_ISA] = {"ONEDNN_MAX_CPU_ISA",
                                      "oneDNN's own cap on the instruction set; graft's fused "
                                      "kernels follow it (AVX2 below AVX512)"},
    [GRAFT_ENV_NO_FUSED_INFERENCE] = {"GRAFT_NO_FUSED_INFERENCE",
                                      "1: inference and frozen layers without the plan's "
                                      "gradient-free steps (MobileNet blocks, 1x1 convolutions "
                                      "with their residual add): the layers' own passes"},
    [GRAFT_ENV_USER_HOME] = {"HOME", "without GRAFT_HOME, the cache folder is $HOME/.cache/graft"},
    [GRAFT_ENV_TMPDIR] = {"TMPDIR",
                          "where temporary files go (spilled feature caches, downloads in "
                          "progress); default /tmp"},
    [GRAFT_ENV_SYNC_BN] = {"GRAFT_SYNC_BN",
                           "1: under mpirun, trainable BatchNormalization normalises with the "
                           "statistics of the whole batch over all ranks (default: each rank's)"},
    [GRAFT_ENV_H5_TIMEOUT] = {"GRAFT_H5_TIMEOUT",
                              "seconds the process reading a .h5 file may go without answering "
                              "before graft gives up on it (a corrupt file libhdf5 loops on); "
                              "default 60"},
    [GRAFT_ENV_H5_CHILD] = {"GRAFT_H5_CHILD",
                            "0: read .h5 files in graft's own process instead of a watchdogged "
                            "child (for the fuzzer and debuggers; no time bound, a crash in "
                            "libhdf5 is graft's)"},
    [GRAFT_ENV_ALLREDUCE] = {"GRAFT_ALLREDUCE",
                             "under mpirun, how the ranks sum the gradients: 'shared' (one "
                             "machine: in shared memory, each rank stepping a share of the "
                             "weights), 'buckets' (non-blocking MPI allreduces during the "
                             "backward pass), 'auto' (the default: shared where every rank is "
                             "on one machine)"},
    [GRAFT_ENV_DEPTH_FIRST] = {"GRAFT_DEPTH_FIRST",
                               "0: inference runs every step over the whole batch; 1: it runs "
                               "every run of steps that can go a few images at a time that way; "
                               "unset: only where the batch's tensors outgrow the last-level "
                               "cache"},
    [GRAFT_ENV_SPLIT_KERNELS] = {"GRAFT_SPLIT_KERNELS",
                                 "under mpirun with 'shared' sums, a trainable Dense kernel of at "
                                 "least N weights (default 65536) is split by rows among the "
                                 "ranks, each computing and stepping its rows; 'off': none"},
    [GRAFT_ENV_CACHE_MIB] = {"GRAFT_CACHE_MIB",
                             "the last-level cache, in MiB, that the planner counts on for its "
                             "depth-first runs; default: the kernel's figure, or the C library's, "
                             "and 32 where that is none or past 128 (a whole socket's)"},
    [GRAFT_ENV_FEATURE_CACHE_MIB] = {"GRAFT_FEATURE_CACHE_MIB",
                                     "the memory, in MiB, that the graft command's feature caches "
                                     "may hold together (default 4096); a cache past it spills to "
                                     "a temporary file in TMPDIR; 0: every cache does"},
};

const char *graft_env_name(graft_env_var v)
{
    return (unsigned)v < GRAFT_ENV_COUNT ? table[v].name : NULL;
}

const char *graft_env_doc(graft_env_var v)
{
    return (unsigned)v < GRAFT_ENV_COUNT ? table[v].doc : NULL;
}

const char *graft_env(graft_env_var v)
{
    return (unsigned)v < GRAFT_ENV_COUNT ? getenv(table[v].name) : NULL;
}

bool graft_env_on(graft_env_var v)
{
    const char *s = graft_env(v);
    return s && strcmp(s, "1") == 0;
}
