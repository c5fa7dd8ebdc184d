/* Dataset folders as flow_from_directory and graft_image_list walk them.
 * The input describes a small tree, which is built on tmpfs and walked:
 *
 *   byte 0: options (bit 0 follow_links, bits 1-2 color mode, bit 3 the
 *           validation subset of a 0.5 split, bit 4 sparse labels, bit 5 an
 *           explicit class list, bit 6 full-size JPEG decoding, bit 7 strict)
 *   then operations, one byte each (its low 3 bits the kind) and operands:
 *     0 folder     PARENT NAME
 *     1 file       PARENT NAME CONTENT   (an image of a kind, raw or cut bytes, empty)
 *     2 symlink    PARENT NAME TARGET    (a folder or file of the tree, its own
 *                                         folder, the root, outside, dangling, itself)
 *     3 hard link  PARENT NAME FILE
 *     4 FIFO       PARENT NAME
 *     5 special    PARENT NAME WHICH     (symlinks to /dev/zero, /dev/null, a FIFO outside)
 *     6 deep       PARENT DEPTH          (a chain of nested folders)
 *     7 nothing
 *   PARENT, FILE: an index into the folders (files) made so far; NAME: a
 *   length byte (low 4 bits: 1-16 raw bytes, '/' and NUL replaced; bits 4-6:
 *   an extension, image or not) then the bytes.
 *
 * Must never crash, leak or hang: a FIFO blocks, and /dev/zero never ends,
 * a reader that does not refuse what is not a regular file. */
#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jpeglib.h>
#include <sys/stat.h>

#define MAX_DIRS 24
#define MAX_FILES 48
#define MAX_OPS 64

static char box[64], root[128], outside[128];

static const uint8_t PNG_RGB[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0x12, 0x16, 0xf1,
    0x4d, 0x00, 0x00, 0x00, 0x15, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x3c, 0xc1, 0x25, 0xc7,
    0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc4, 0x00, 0x03, 0x00, 0x11, 0xc6, 0x00, 0xf4, 0x35, 0x3a,
    0x27, 0xc2, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
static const uint8_t PNG_GRAY[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0x00, 0x57, 0xdd, 0x52,
    0xf8, 0x00, 0x00, 0x00, 0x0e, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x8c, 0x62, 0x60, 0x62,
    0x60, 0x00, 0x00, 0x01, 0xd4, 0x00, 0x5e, 0xc9, 0x70, 0xfb, 0xe2, 0x00, 0x00, 0x00, 0x00, 0x49,
    0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
static const uint8_t BMP_RGB[] = {
    0x42, 0x4d, 0x46, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x36, 0x00, 0x00, 0x00, 0x28, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x18, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0xc4, 0x0e, 0x00, 0x00, 0xc4, 0x0e, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1e, 0x0a, 0xc8, 0x1e, 0x0a, 0xc8, 0x00, 0x00, 0x1e, 0x0a,
    0xc8, 0x1e, 0x0a, 0xc8, 0x00, 0x00};
static const uint8_t PPM_RGB[] = "P6\n2 2\n255\n\xff\x00\x00\x00\xff\x00\x00\x00\xff\x10\x20\x30";
static unsigned char *jpeg;
static unsigned long jpeg_size;

static const char *const EXT[8] = {"", ".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".txt"};

static void make_jpeg(void)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &jpeg, &jpeg_size);
    c.image_width = 16;
    c.image_height = 8;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 50, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char row[16 * 3];
    while (c.next_scanline < c.image_height) {
        for (int i = 0; i < 16 * 3; i++) row[i] = (unsigned char)(i * 5 + c.next_scanline * 30);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if ((flag == FTW_DP ? rmdir(p) : unlink(p)) != 0) abort();
    return 0;
}

static void remove_tree(const char *p)
{
    struct stat sb;
    if (lstat(p, &sb) == 0 && nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) abort();
}

static void box_remove(void)
{
    remove_tree(box);
}

/* A new file only: a name already taken (by a FIFO, which would block the
 * harness, or a link) or one the file system refuses leaves nothing made. */
static void write_file(const char *p, const void *data, size_t n)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
    if (fd < 0) return;
    if (n && write(fd, data, n) < 0) {
        /* tmpfs full: the file stays shorter, as a cut file would */
    }
    close(fd);
}

static void setup(void)
{
    fuzz_mkdtemp(box, sizeof box, "graft_fuzz_dir");
    atexit(box_remove);
    snprintf(root, sizeof root, "%s/tree", box);
    snprintf(outside, sizeof outside, "%s/outside", box);
    char p[256];
    snprintf(p, sizeof p, "%s/sub", outside);
    if (mkdir(outside, 0755) != 0 || mkdir(p, 0755) != 0) abort();
    snprintf(p, sizeof p, "%s/o.png", outside);
    write_file(p, PNG_RGB, sizeof PNG_RGB);
    snprintf(p, sizeof p, "%s/sub/o.png", outside);
    write_file(p, PNG_GRAY, sizeof PNG_GRAY);
    snprintf(p, sizeof p, "%s/fifo", outside);
    if (mkfifo(p, 0644) != 0) abort();
    make_jpeg();
}

typedef struct {
    const uint8_t *p, *end;
} reader;

static int next_byte(reader *r, uint8_t *b)
{
    if (r->p >= r->end) return 0;
    *b = *r->p++;
    return 1;
}

/* Reads NAME and joins it to the folder `dir` into out. */
static int read_name(reader *r, const char *dir, char *out, size_t cap)
{
    uint8_t l;
    if (!next_byte(r, &l)) return 0;
    char name[24];
    size_t n = 0;
    for (int i = 0; i < (l & 15) + 1; i++) {
        uint8_t b;
        if (!next_byte(r, &b)) return 0;
        name[n++] = b == '/' || b == '\0' ? '_' : (char)b;
    }
    name[n] = '\0';
    if (!strcmp(name, ".") || !strcmp(name, "..")) name[0] = '_';
    snprintf(out, cap, "%s/%s%s", dir, name, EXT[(l >> 4) & 7]);
    return 1;
}

static char dirs[MAX_DIRS][512], files[MAX_FILES][512];
static int n_dirs, n_files;

static void add(char list[][512], int *n, int max, const char *p)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(list[i], p)) return; /* a deep chain made again: a class is named once */
    if (*n < max && snprintf(list[*n], 512, "%s", p) < 512) (*n)++;
}

static void build_tree(reader *r)
{
    n_dirs = n_files = 0;
    if (mkdir(root, 0755) != 0) abort();
    add(dirs, &n_dirs, MAX_DIRS, root);
    uint8_t op, a, b;
    char p[600];
    for (int k = 0; k < MAX_OPS && next_byte(r, &op); k++) {
        if ((op & 7) == 7) continue;
        if (!next_byte(r, &a)) return;
        const char *parent = dirs[a % n_dirs];
        if ((op & 7) == 6) {
            if (!next_byte(r, &b)) return;
            snprintf(p, sizeof p, "%s", parent);
            for (int d = 0; d < b % 24 && strlen(p) + 3 < sizeof p; d++) {
                strcat(p, "/d");
                if (mkdir(p, 0755) != 0) break;
            }
            add(dirs, &n_dirs, MAX_DIRS, p);
            continue;
        }
        if (!read_name(r, parent, p, sizeof p)) return;
        switch (op & 7) {
        case 0:
            if (mkdir(p, 0755) == 0) add(dirs, &n_dirs, MAX_DIRS, p);
            break;
        case 1:
            if (!next_byte(r, &b)) return;
            switch (b & 7) {
            case 0: write_file(p, PNG_RGB, sizeof PNG_RGB); break;
            case 1: write_file(p, PNG_GRAY, sizeof PNG_GRAY); break;
            case 2: write_file(p, jpeg, jpeg_size); break;
            case 3: write_file(p, BMP_RGB, sizeof BMP_RGB); break;
            case 4: write_file(p, PPM_RGB, sizeof PPM_RGB - 1); break;
            case 5: { /* raw bytes from the input, up to 63 */
                size_t n = (size_t)(b >> 3) * 2;
                if (n > (size_t)(r->end - r->p)) n = (size_t)(r->end - r->p);
                write_file(p, r->p, n);
                r->p += n;
                break;
            }
            case 6: write_file(p, jpeg, (b >> 3) * jpeg_size / 32); break;
            default: write_file(p, NULL, 0); break;
            }
            add(files, &n_files, MAX_FILES, p);
            break;
        case 2: {
            if (!next_byte(r, &b)) return;
            char t[600];
            switch (b & 7) {
            case 0: snprintf(t, sizeof t, "%s", dirs[(b >> 3) % n_dirs]); break;
            case 1:
                if (n_files) snprintf(t, sizeof t, "%s", files[(b >> 3) % n_files]);
                else snprintf(t, sizeof t, "missing.png");
                break;
            case 2: snprintf(t, sizeof t, "."); break;
            case 3: snprintf(t, sizeof t, "%s", root); break;
            case 4: snprintf(t, sizeof t, (b >> 3) & 1 ? "%s/sub" : "%s", outside); break;
            case 5: snprintf(t, sizeof t, "%s/o.png", outside); break;
            case 6: snprintf(t, sizeof t, "%s", (b >> 3) & 1 ? "../../no/such" : "nowhere.png"); break;
            default: snprintf(t, sizeof t, "%s", strrchr(p, '/') + 1); break; /* itself */
            }
            if (symlink(t, p) != 0) break;
            if ((b & 7) == 0) add(dirs, &n_dirs, MAX_DIRS, p);
            else if ((b & 7) == 1 || (b & 7) == 5) add(files, &n_files, MAX_FILES, p);
            break;
        }
        case 3:
            if (!next_byte(r, &b)) return;
            if (n_files && link(files[b % n_files], p) == 0) add(files, &n_files, MAX_FILES, p);
            break;
        case 4:
            mkfifo(p, 0644);
            break;
        case 5: {
            if (!next_byte(r, &b)) return;
            char t[300];
            if (b % 3 == 0) snprintf(t, sizeof t, "/dev/zero");
            else if (b % 3 == 1) snprintf(t, sizeof t, "/dev/null");
            else snprintf(t, sizeof t, "%s/fifo", outside);
            symlink(t, p);
            break;
        }
        }
    }
}

static void walk(uint8_t opt)
{
    const char *cls[4] = {NULL, NULL, NULL, "no_such_class"};
    int n_cls = 0;
    for (int i = 1; i < n_dirs && n_cls < 3; i++)
        if (strchr(dirs[i] + strlen(root) + 1, '/') == NULL) cls[n_cls++] = dirs[i] + strlen(root) + 1;
    cls[n_cls++] = "no_such_class";
    graft_flow_cfg cfg = {.target_size = {8, 8},
                          .color_mode = (graft_color_mode)((opt >> 1) & 3) % 3,
                          .class_mode = (opt & 16) ? GRAFT_CLASS_SPARSE : GRAFT_CLASS_CATEGORICAL,
                          .batch_size = 4,
                          .seed = 1,
                          .subset = (opt & 8) ? GRAFT_SUBSET_VALIDATION : GRAFT_SUBSET_ALL,
                          .follow_links = opt & 1,
                          .workers = 1,
                          .queue_depth = 1,
                          .strict = (opt & 128) != 0,
                          .quiet = 1,
                          .jpeg_full_decode = (opt & 64) != 0,
                          .max_pixels = 1u << 16};
    if (opt & 32) {
        cfg.classes = cls;
        cfg.n_classes = n_cls;
    }
    graft_image_data_generator gen = {.validation_split = 0.5f, .horizontal_flip = 1};
    graft_source *s = NULL;
    if (graft_flow_from_directory(root, &gen, &cfg, &s) == GRAFT_OK) {
        int n = graft_flow_samples(s), k = graft_flow_num_classes(s);
        if (n < 0 || k < 0 || s->batch_size != 4) abort();
        for (int i = 0; i < n; i++)
            if (!graft_flow_filename(s, i) || graft_flow_class_of(s, i) < 0 ||
                graft_flow_class_of(s, i) >= k)
                abort();
        for (int c = 0; c < k; c++)
            if (!graft_flow_class_name(s, c) || graft_flow_class_index(s, graft_flow_class_name(s, c)) != c)
                abort();
        /* One pass, at most three batches. */
        static float x[4 * 8 * 8 * 4], y[4 * 64];
        size_t y_need = (size_t)s->y_dim * 4;
        for (int b = 0; b < s->length && b < 3 && y_need <= sizeof y / sizeof *y; b++) {
            int got = 0;
            if (s->next(s, x, y, &got) != GRAFT_OK) break;
            if (got < 0 || got > 4) abort();
        }
        graft_source_free(s);
    } else if (s) {
        abort();
    }
    fuzz_check_message();
    for (int i = 0; i < n_dirs && i < 3; i++) {
        char **paths = NULL;
        int n = 0;
        if (graft_image_list(dirs[i], &paths, &n) == GRAFT_OK) graft_image_list_free(paths, n);
        fuzz_check_message();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!box[0]) setup();
    if (size < 1) return 0;
    reader r = {data + 1, data + size};
    build_tree(&r);
    walk(data[0]);
    remove_tree(root);
    return 0;
}
