/*
 * Image decoding: JPEG through libjpeg-turbo (with DCT-domain downscaling),
 * PNG through libpng, BMP and PPM/PGM by small readers of our own (TIFF,
 * GIF and WebP in decode_formats.c). Channel
 * conversions follow Pillow's convert() so that pixels match what Keras's
 * load_img sees. Every failure names the file; libjpeg and libpng report
 * through longjmp handlers, never through exit().
 */
#include "core/file_open.h"
#include "data/data.h"

#include <errno.h>
#include <limits.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
/* jpeglib.h needs FILE and size_t first. */
#include <jpeglib.h>
#include <jerror.h>

void graft_img_free(graft_img *img)
{
    free(img->px);
    img->px = NULL;
}

graft_img_format graft_img_sniff(const uint8_t *b, size_t n)
{
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return GRAFT_FMT_JPEG;
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return GRAFT_FMT_PNG;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return GRAFT_FMT_BMP;
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') return GRAFT_FMT_PPM;
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        return GRAFT_FMT_TIFF;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return GRAFT_FMT_GIF;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return GRAFT_FMT_WEBP;
    return GRAFT_FMT_UNKNOWN;
}

/* Pillow's L24: ITU-R 601 luma in 16-bit fixed point with rounding. */
static inline uint8_t luma(const uint8_t *rgb)
{
    return (uint8_t)((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

static graft_status alloc_img(graft_img *img, int h, int w, int c, const char *name)
{
    size_t n;
    if (!graft_mul_ok((size_t)h * (size_t)w, (size_t)c, &n))
        return graft_fail(GRAFT_ENOMEM, "%s: %dx%d image is too large", name, w, h);
    img->px = malloc(n ? n : 1);
    if (!img->px) return graft_fail(GRAFT_ENOMEM, "%s: no memory for a %dx%d image", name, w, h);
    img->h = h;
    img->w = w;
    img->c = c;
    return GRAFT_OK;
}

/* Converts `src_c`-channel pixels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to
 * `dst_c` channels the way Pillow's convert("L" / "RGB" / "RGBA") does. */
static void convert_row(const uint8_t *s, int src_c, uint8_t *d, int dst_c, int w)
{
    if (src_c == dst_c) {
        memcpy(d, s, (size_t)w * (size_t)dst_c);
        return;
    }
    for (int x = 0; x < w; x++, s += src_c, d += dst_c) {
        uint8_t rgb[3], a = 255;
        if (src_c <= 2) {
            rgb[0] = rgb[1] = rgb[2] = s[0];
            if (src_c == 2) a = s[1];
        } else {
            rgb[0] = s[0];
            rgb[1] = s[1];
            rgb[2] = s[2];
            if (src_c == 4) a = s[3];
        }
        if (dst_c == 1) {
            d[0] = src_c <= 2 ? s[0] : luma(rgb);
        } else {
            d[0] = rgb[0];
            d[1] = rgb[1];
            d[2] = rgb[2];
            if (dst_c == 4) d[3] = a;
        }
    }
}

static size_t limit_pixels(const graft_decode_opts *o)
{
    return o->max_pixels ? o->max_pixels : 89478485u;
}

static graft_status check_size(const char *name, long w, long h, const graft_decode_opts *o)
{
    if (w <= 0 || h <= 0 || w > INT_MAX / 8 || h > INT_MAX / 8)
        return graft_fail(GRAFT_EFORMAT, "%s: invalid image size %ldx%ld", name, w, h);
    if ((double)w * (double)h > (double)limit_pixels(o))
        return graft_fail(GRAFT_ENOMEM, "%s: %ldx%ld image exceeds the limit of %zu pixels", name,
                          w, h, limit_pixels(o));
    return GRAFT_OK;
}

/* What decode_formats.c shares with the readers here. */
graft_status graft_img_alloc(graft_img *img, int h, int w, int c, const char *name)
{
    return alloc_img(img, h, w, c, name);
}
void graft_img_convert_row(const uint8_t *s, int src_c, uint8_t *d, int dst_c, int w)
{
    convert_row(s, src_c, d, dst_c, w);
}
size_t graft_img_max_pixels(const graft_decode_opts *o) { return limit_pixels(o); }
graft_status graft_img_check_size(const char *name, long w, long h, const graft_decode_opts *o)
{
    return check_size(name, w, h, o);
}

/* ------------------------------------------------------------------ JPEG */

int graft_jpeg_scale_denom(int w, int h, const graft_decode_opts *o)
{
    size_t limit = limit_pixels(o);
    int d = 1;
    if (!o->jpeg_full_decode && o->target_h > 0 && o->target_w > 0) {
        /* The largest reduction that still covers the target size, so the
         * resize only ever shrinks. The DCT reduction averages the pixels
         * it drops, which a later Pillow resize would also do (bilinear,
         * box) or alias (nearest). */
        while (d < 8 && (w + 2 * d - 1) / (2 * d) >= o->target_w &&
               (h + 2 * d - 1) / (2 * d) >= o->target_h)
            d *= 2;
    }
    for (;;) {
        int scaled_w = (w + d - 1) / d, scaled_h = (h + d - 1) / d; /* libjpeg rounds up */
        if ((double)scaled_w * (double)scaled_h <= (double)limit) break;
        if (d == 8) return 0;
        d *= 2;
    }
    return d;
}

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    int truncated;
} jpeg_err;

static void jpeg_error_exit(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings are silent, as in Pillow, except a premature end of the data:
 * Pillow refuses a truncated JPEG and so do we. */
static void jpeg_emit(j_common_ptr cinfo, int level)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF && !e->truncated) {
        e->truncated = 1;
        cinfo->err->format_message(cinfo, e->msg);
    }
}

static void jpeg_output_nothing(j_common_ptr cinfo) { (void)cinfo; }

/* Pillow's CMYK -> RGB, on Adobe's inverted CMYK when the marker says so. */
static void cmyk_to_rgb(const uint8_t *s, uint8_t *d, int w, int inverted)
{
    for (int x = 0; x < w; x++, s += 4, d += 3) {
        int k = inverted ? 255 - s[3] : s[3];
        int nk = 255 - k;
        for (int i = 0; i < 3; i++) {
            int c = inverted ? 255 - s[i] : s[i];
            int t = c * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            d[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

static graft_status decode_jpeg(const uint8_t *data, size_t size, const char *name,
                                const graft_decode_opts *o, graft_img *out)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    /* Locals changed after setjmp must be volatile to survive the longjmp. */
    uint8_t *volatile row = NULL;
    uint8_t *volatile px = NULL;
    uint8_t *volatile rgb = NULL;
    graft_status st = GRAFT_OK;

    memset(&cinfo, 0, sizeof cinfo);
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_error_exit;
    err.pub.emit_message = jpeg_emit;
    err.pub.output_message = jpeg_output_nothing;
    if (setjmp(err.jump)) {
        st = graft_fail(GRAFT_EFORMAT, "%s: bad JPEG: %s", name, err.msg);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    int n_in;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; n_in = 1; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo.out_color_space = JCS_CMYK; n_in = 4; break;
    default: cinfo.out_color_space = JCS_RGB; n_in = 3; break;
    }
    if (cinfo.image_width > INT_MAX / 8 || cinfo.image_height > INT_MAX / 8) {
        st = graft_fail(GRAFT_EFORMAT, "%s: invalid JPEG size", name);
        goto done;
    }
    int d = graft_jpeg_scale_denom((int)cinfo.image_width, (int)cinfo.image_height, o);
    if (d == 0) {
        st = graft_fail(GRAFT_ENOMEM, "%s: %ux%u JPEG exceeds the limit of %zu pixels even at 1/8",
                        name, cinfo.image_width, cinfo.image_height, limit_pixels(o));
        goto done;
    }
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned)d;
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    if ((st = check_size(name, w, h, o)) != GRAFT_OK) goto done;
    graft_img img = {0};
    if ((st = alloc_img(&img, h, w, o->channels, name)) != GRAFT_OK) goto done;
    px = img.px;
    /* Gray output goes straight into a gray image; everything else through a row. */
    int direct = (n_in == 1 && o->channels == 1) || (n_in == 3 && o->channels == 3);
    if (!direct) {
        row = malloc((size_t)w * 4);
        if (!row) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a JPEG row", name);
            goto done;
        }
    }
    if (n_in == 4) {
        rgb = malloc((size_t)w * 3);
        if (!rgb) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a JPEG row", name);
            goto done;
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        uint8_t *dst = px + (size_t)y * (size_t)w * (size_t)o->channels;
        JSAMPROW r = direct ? dst : row;
        if (jpeg_read_scanlines(&cinfo, &r, 1) != 1) break;
        if (err.truncated) break;
        if (direct) continue;
        if (n_in == 4) {
            cmyk_to_rgb(row, rgb, w, cinfo.saw_Adobe_marker);
            convert_row(rgb, 3, dst, o->channels, w);
        } else {
            convert_row(row, n_in, dst, o->channels, w);
        }
    }
    if (err.truncated) {
        st = graft_fail(GRAFT_EFORMAT, "%s: truncated JPEG: %s", name, err.msg);
        goto done;
    }
    jpeg_finish_decompress(&cinfo);
    if (err.truncated) {
        st = graft_fail(GRAFT_EFORMAT, "%s: truncated JPEG: %s", name, err.msg);
        goto done;
    }
    *out = img;
    px = NULL;
done:
    jpeg_destroy_decompress(&cinfo);
    free(row);
    free(rgb);
    free(px);
    return st;
}

/* ------------------------------------------------------------------- PNG */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    char msg[256];
} png_mem;

static void png_read_mem(png_structp png, png_bytep dst, png_size_t n)
{
    png_mem *m = png_get_io_ptr(png);
    if (n > m->size - m->pos) png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(dst, m->data + m->pos, n);
    m->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_mem *m = png_get_error_ptr(png);
    snprintf(m->msg, sizeof m->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static graft_status decode_png(const uint8_t *data, size_t size, const char *name,
                               const graft_decode_opts *o, graft_img *out)
{
    /* Refuse oversized images from IHDR before libpng reads any further. */
    if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        long w = (long)((uint32_t)data[16] << 24 | data[17] << 16 | data[18] << 8 | data[19]);
        long h = (long)((uint32_t)data[20] << 24 | data[21] << 16 | data[22] << 8 | data[23]);
        graft_status st = check_size(name, w, h, o);
        if (st != GRAFT_OK) return st;
    }
    png_mem m = {data, size, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &m, png_on_error,
                                             png_on_warning);
    if (!png) return graft_fail(GRAFT_ENOMEM, "%s: cannot create a PNG reader", name);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile px = NULL;
    graft_status st = GRAFT_OK;
    if (!info) {
        st = graft_fail(GRAFT_ENOMEM, "%s: cannot create a PNG reader", name);
        goto done;
    }
    if (setjmp(png_jmpbuf(png))) {
        st = graft_fail(GRAFT_EFORMAT, "%s: bad PNG: %s", name, m.msg);
        goto done;
    }
    png_set_read_fn(png, &m, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, color;
    png_get_IHDR(png, info, &w, &h, &depth, &color, NULL, NULL, NULL);
    if ((st = check_size(name, (long)w, (long)h, o)) != GRAFT_OK) goto done;
    int want_alpha = o->channels == 4;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS) && want_alpha) png_set_tRNS_to_alpha(png);
    /* 16-bit samples keep their high byte, as Pillow's RGB;16B unpacker does. */
    if (depth == 16) png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int n_in = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (n_in < 1 || n_in > 4 || rowbytes == 0 || rowbytes != (size_t)w * (size_t)n_in) {
        st = graft_fail(GRAFT_EFORMAT, "%s: unexpected PNG layout", name);
        goto done;
    }
    size_t total;
    if (!graft_mul_ok(rowbytes, h, &total)) {
        st = graft_fail(GRAFT_ENOMEM, "%s: PNG too large", name);
        goto done;
    }
    raw = malloc(total);
    rows = malloc(sizeof(png_bytep) * h);
    if (!raw || !rows) {
        st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a %ux%u PNG", name, w, h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    graft_img img = {0};
    if (n_in == o->channels) {
        img.h = (int)h;
        img.w = (int)w;
        img.c = n_in;
        img.px = raw;
        raw = NULL;
    } else {
        if ((st = alloc_img(&img, (int)h, (int)w, o->channels, name)) != GRAFT_OK) goto done;
        px = img.px;
        for (png_uint_32 y = 0; y < h; y++)
            convert_row(rows[y], n_in, px + (size_t)y * w * (size_t)o->channels, o->channels,
                        (int)w);
        px = NULL;
    }
    *out = img;
done:
    png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    free(raw);
    free(rows);
    free(px);
    return st;
}

/* ------------------------------------------------------------------- BMP */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Extracts a bitfield and scales it to 8 bits (rounding). */
static uint8_t mask_value(uint32_t v, uint32_t mask)
{
    if (!mask) return 255;
    int shift = 0;
    while (!(mask & 1u)) {
        mask >>= 1;
        shift++;
    }
    uint32_t bits = (v >> shift) & mask;
    return (uint8_t)(((uint64_t)bits * 255 + mask / 2) / mask);
}

static graft_status decode_bmp(const uint8_t *b, size_t size, const char *name,
                               const graft_decode_opts *o, graft_img *out)
{
    if (size < 26) return graft_fail(GRAFT_EFORMAT, "%s: truncated BMP header", name);
    uint32_t off = le32(b + 10), hsize = le32(b + 14);
    long w, h;
    int bpp;
    uint32_t comp = 0, ncolors = 0, masks[4] = {0, 0, 0, 0};
    int pal_entry = 4;
    if (hsize == 12) {
        w = le16(b + 18);
        h = (int16_t)le16(b + 20);
        bpp = le16(b + 24);
        pal_entry = 3;
    } else if (hsize >= 40 && hsize <= 124) {
        if (size < 14 + (size_t)hsize) return graft_fail(GRAFT_EFORMAT, "%s: truncated BMP header", name);
        w = (int32_t)le32(b + 18);
        h = (int32_t)le32(b + 22);
        bpp = le16(b + 28);
        comp = le32(b + 30);
        ncolors = le32(b + 46);
        if (comp == 3 || comp == 6) {
            size_t mpos = 14 + 40;
            int nm = comp == 6 ? 4 : 3;
            if (hsize >= 52) nm = hsize >= 56 ? 4 : 3;
            if (mpos + 4 * (size_t)nm > size) return graft_fail(GRAFT_EFORMAT, "%s: truncated BMP masks", name);
            for (int i = 0; i < nm; i++) masks[i] = le32(b + mpos + 4 * (size_t)i);
            if (hsize == 40) hsize += 4 * (uint32_t)nm; /* the palette follows the masks */
        }
    } else {
        return graft_fail(GRAFT_EFORMAT, "%s: unknown BMP header size %u", name, hsize);
    }
    if (comp == 1 || comp == 2)
        return graft_fail(GRAFT_EUNSUPPORTED, "%s: run-length encoded BMP is not supported", name);
    if (comp != 0 && comp != 3 && comp != 6)
        return graft_fail(GRAFT_EUNSUPPORTED, "%s: BMP compression %u is not supported", name, comp);
    if ((comp == 3 || comp == 6) && bpp != 16 && bpp != 32)
        return graft_fail(GRAFT_EFORMAT, "%s: BMP bitfields need 16 or 32 bits per pixel", name);
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        return graft_fail(GRAFT_EFORMAT, "%s: %d bits per pixel is not a BMP depth", name, bpp);
    int top_down = h < 0;
    if (top_down) h = -h;
    graft_status st = check_size(name, w, h, o);
    if (st != GRAFT_OK) return st;

    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal);
    if (bpp <= 8) {
        uint32_t max = 1u << bpp;
        if (ncolors == 0 || ncolors > max) ncolors = max;
        size_t ppos = 14 + (size_t)hsize;
        if (ppos + (size_t)ncolors * (size_t)pal_entry > size)
            return graft_fail(GRAFT_EFORMAT, "%s: truncated BMP palette", name);
        for (uint32_t i = 0; i < ncolors; i++) {
            const uint8_t *e = b + ppos + (size_t)i * (size_t)pal_entry;
            pal[i][0] = e[2];
            pal[i][1] = e[1];
            pal[i][2] = e[0];
        }
    } else if (comp == 0) {
        if (bpp == 16) {
            masks[0] = 0x7C00;
            masks[1] = 0x03E0;
            masks[2] = 0x001F;
        } else if (bpp == 32) {
            masks[0] = 0xFF0000;
            masks[1] = 0xFF00;
            masks[2] = 0xFF;
        }
    }
    size_t stride = (((size_t)w * (size_t)bpp + 31) / 32) * 4;
    if (off > size || stride * (size_t)h > size - off)
        return graft_fail(GRAFT_EFORMAT, "%s: truncated BMP pixel data", name);

    graft_img img = {0};
    uint8_t *rgba = malloc((size_t)w * 4);
    if (!rgba) return graft_fail(GRAFT_ENOMEM, "%s: no memory for a BMP row", name);
    if ((st = alloc_img(&img, (int)h, (int)w, o->channels, name)) != GRAFT_OK) {
        free(rgba);
        return st;
    }
    for (long y = 0; y < h; y++) {
        const uint8_t *r = b + off + stride * (size_t)(top_down ? y : h - 1 - y);
        if (bpp == 24 && o->channels == 3) { /* the common case: BGR straight into the image */
            uint8_t *d = img.px + (size_t)y * (size_t)w * 3;
            for (long x = 0; x < w; x++) {
                d[3 * x] = r[3 * x + 2];
                d[3 * x + 1] = r[3 * x + 1];
                d[3 * x + 2] = r[3 * x];
            }
            continue;
        }
        for (long x = 0; x < w; x++) {
            uint8_t *d = rgba + 4 * x;
            d[3] = 255;
            if (bpp <= 8) {
                long bit = x * bpp;
                unsigned v = (r[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
                memcpy(d, pal[v], 3);
            } else if (bpp == 24) {
                d[0] = r[3 * x + 2];
                d[1] = r[3 * x + 1];
                d[2] = r[3 * x];
            } else {
                uint32_t v = bpp == 16 ? le16(r + 2 * x) : le32(r + 4 * x);
                for (int i = 0; i < 3; i++) d[i] = mask_value(v, masks[i]);
                if (masks[3]) d[3] = mask_value(v, masks[3]);
            }
        }
        convert_row(rgba, 4, img.px + (size_t)y * (size_t)w * (size_t)o->channels, o->channels,
                    (int)w);
    }
    free(rgba);
    *out = img;
    return GRAFT_OK;
}

/* --------------------------------------------------------------- PPM/PGM */

/* Reads one header number, skipping whitespace and # comments. */
static int pnm_number(const uint8_t *b, size_t size, size_t *pos, long *v)
{
    size_t p = *pos;
    for (;;) {
        while (p < size && (b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r' ||
                            b[p] == '\f' || b[p] == '\v'))
            p++;
        if (p < size && b[p] == '#') {
            while (p < size && b[p] != '\n') p++;
            continue;
        }
        break;
    }
    if (p >= size || b[p] < '0' || b[p] > '9') return -1;
    long n = 0;
    while (p < size && b[p] >= '0' && b[p] <= '9') {
        n = n * 10 + (b[p] - '0');
        if (n > 100000000) return -1;
        p++;
    }
    *pos = p;
    *v = n;
    return 0;
}

static graft_status decode_pnm(const uint8_t *b, size_t size, const char *name,
                               const graft_decode_opts *o, graft_img *out)
{
    char kind = (char)b[1];
    if (kind == '1' || kind == '4')
        return graft_fail(GRAFT_EUNSUPPORTED, "%s: PBM bitmaps are not supported", name);
    int in_c = (kind == '3' || kind == '6') ? 3 : 1;
    int plain = kind == '2' || kind == '3';
    size_t pos = 2;
    long w, h, maxval;
    if (pnm_number(b, size, &pos, &w) || pnm_number(b, size, &pos, &h) ||
        pnm_number(b, size, &pos, &maxval))
        return graft_fail(GRAFT_EFORMAT, "%s: bad PNM header", name);
    if (maxval < 1 || maxval > 65535)
        return graft_fail(GRAFT_EFORMAT, "%s: PNM maxval %ld out of range", name, maxval);
    graft_status st = check_size(name, w, h, o);
    if (st != GRAFT_OK) return st;
    pos++; /* the single whitespace byte before binary data */
    int bytes = maxval > 255 ? 2 : 1;
    size_t count = (size_t)w * (size_t)h * (size_t)in_c;
    if (!plain && (pos > size || count * (size_t)bytes > size - pos))
        return graft_fail(GRAFT_EFORMAT, "%s: truncated PNM pixel data", name);
    graft_img img = {0};
    uint8_t *rgb = malloc((size_t)w * 3);
    if (!rgb) return graft_fail(GRAFT_ENOMEM, "%s: no memory for a PNM row", name);
    if ((st = alloc_img(&img, (int)h, (int)w, o->channels, name)) != GRAFT_OK) {
        free(rgb);
        return st;
    }
    for (long y = 0; y < h; y++) {
        if (!plain && maxval == 255) { /* bytes as they are: no per-sample work */
            convert_row(b + pos + (size_t)y * (size_t)w * (size_t)in_c, in_c,
                        img.px + (size_t)y * (size_t)w * (size_t)o->channels, o->channels, (int)w);
            continue;
        }
        for (long i = 0; i < w * in_c; i++) {
            long v;
            if (plain) {
                if (pnm_number(b, size, &pos, &v)) {
                    free(rgb);
                    graft_img_free(&img);
                    return graft_fail(GRAFT_EFORMAT, "%s: truncated plain PNM data", name);
                }
                if (v > maxval) v = maxval;
            } else if (bytes == 2) {
                v = b[pos] << 8 | b[pos + 1];
                pos += 2;
            } else {
                v = b[pos++];
            }
            rgb[i] = (uint8_t)(maxval == 255 ? v : (v * 255 + maxval / 2) / maxval);
        }
        convert_row(rgb, in_c, img.px + (size_t)y * (size_t)w * (size_t)o->channels,
                    o->channels, (int)w);
    }
    free(rgb);
    *out = img;
    return GRAFT_OK;
}

/* ---------------------------------------------------------------- entry */

graft_status graft_img_decode_mem(const uint8_t *data, size_t size, const char *name,
                                  const graft_decode_opts *o, graft_img *out)
{
    memset(out, 0, sizeof *out);
    if (o->channels != 1 && o->channels != 3 && o->channels != 4)
        return graft_fail(GRAFT_EINVAL, "%s: %d channels requested", name, o->channels);
    if (size == 0) return graft_fail(GRAFT_EFORMAT, "%s: empty file", name);
    switch (graft_img_sniff(data, size)) {
    case GRAFT_FMT_JPEG: return decode_jpeg(data, size, name, o, out);
    case GRAFT_FMT_PNG: return decode_png(data, size, name, o, out);
    case GRAFT_FMT_BMP: return decode_bmp(data, size, name, o, out);
    case GRAFT_FMT_PPM: return decode_pnm(data, size, name, o, out);
    case GRAFT_FMT_TIFF: return graft_decode_tiff(data, size, name, o, out);
    case GRAFT_FMT_GIF: return graft_decode_gif(data, size, name, o, out);
    case GRAFT_FMT_WEBP: return graft_decode_webp(data, size, name, o, out);
    case GRAFT_FMT_UNKNOWN: break;
    }
    return graft_fail(GRAFT_EFORMAT, "%s: not a JPEG, PNG, BMP, PPM, TIFF, GIF or WebP image",
                      name);
}

/* Whole files are read at once: the decoders then never block on I/O and
 * a short read is caught here rather than inside a library. Files larger
 * than any image within the pixel limit could be (8 bytes a pixel: 16-bit
 * RGBA stored raw) are refused before they are read. */
static graft_status read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size)
{
    FILE *f;
    struct stat sb;
    graft_status st = graft_fopen_regular(path, &f, &sb);
    if (st != GRAFT_OK) return st;
    if ((uint64_t)sb.st_size > max_bytes) {
        fclose(f);
        return graft_fail(GRAFT_ENOMEM, "%s: a file of %lld bytes exceeds the size limit", path,
                          (long long)sb.st_size);
    }
    /* One more byte shows the end without growing (the file may grow while read). */
    size_t cap = (size_t)sb.st_size + 1, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) st = graft_fail(GRAFT_ENOMEM, "%s: no memory to read the file", path);
    while (st == GRAFT_OK) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            if (ferror(f)) st = graft_fail(GRAFT_EIO, "%s: read error: %s", path, strerror(errno));
            break;
        }
        if (n > max_bytes) {
            st = graft_fail(GRAFT_ENOMEM, "%s: the file exceeds the size limit", path);
            break;
        }
        uint8_t *nb = realloc(buf, cap * 2);
        if (!nb) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory to read the file", path);
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (st != GRAFT_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    *size = n;
    return GRAFT_OK;
}

graft_status graft_img_decode(const char *path, const graft_decode_opts *o, graft_img *out)
{
    uint8_t *data = NULL;
    size_t size = 0;
    memset(out, 0, sizeof *out);
    size_t max_bytes;
    if (!graft_mul_ok(limit_pixels(o), 8, &max_bytes)) max_bytes = SIZE_MAX - (1u << 20);
    graft_status st = read_file(path, max_bytes + (1u << 20), &data, &size);
    if (st != GRAFT_OK) return st;
    st = graft_img_decode_mem(data, size, path, o, out);
    free(data);
    return st;
}

graft_status graft_image_size(const char *path, int *h, int *w)
{
    FILE *f;
    graft_status st = graft_fopen_regular(path, &f, NULL);
    if (st != GRAFT_OK) return st;
    uint8_t head[32];
    size_t n = fread(head, 1, sizeof head, f);
    switch (graft_img_sniff(head, n)) {
    case GRAFT_FMT_JPEG: {
        struct jpeg_decompress_struct cinfo;
        jpeg_err err;
        memset(&err, 0, sizeof err);
        jpeg_std_error(&err.pub);
        err.pub.error_exit = jpeg_error_exit;
        err.pub.emit_message = jpeg_emit;
        err.pub.output_message = jpeg_output_nothing;
        memset(&cinfo, 0, sizeof cinfo);
        cinfo.err = &err.pub;
        if (setjmp(err.jump)) {
            st = graft_fail(GRAFT_EFORMAT, "%s: bad JPEG: %s", path, err.msg);
        } else {
            jpeg_create_decompress(&cinfo);
            rewind(f);
            jpeg_stdio_src(&cinfo, f);
            jpeg_read_header(&cinfo, TRUE);
            *h = (int)cinfo.image_height;
            *w = (int)cinfo.image_width;
        }
        jpeg_destroy_decompress(&cinfo);
        break;
    }
    case GRAFT_FMT_PNG:
        if (n < 24 || memcmp(head + 12, "IHDR", 4) != 0) {
            st = graft_fail(GRAFT_EFORMAT, "%s: PNG without an IHDR chunk", path);
        } else {
            *w = (int)((uint32_t)head[16] << 24 | head[17] << 16 | head[18] << 8 | head[19]);
            *h = (int)((uint32_t)head[20] << 24 | head[21] << 16 | head[22] << 8 | head[23]);
        }
        break;
    default: {
        /* The small formats: decode (their readers check sizes first). */
        fclose(f);
        graft_img img;
        graft_decode_opts o = {.channels = 1};
        st = graft_img_decode(path, &o, &img);
        if (st == GRAFT_OK) {
            *h = img.h;
            *w = img.w;
            graft_img_free(&img);
        }
        return st;
    }
    }
    fclose(f);
    return st;
}
