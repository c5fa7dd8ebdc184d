/*
 * TIFF through libtiff, GIF through giflib and WebP through libwebp, each
 * on the file's bytes in memory, to the pixels Keras's load_img sees: the
 * first page or frame, converted by Pillow's rules (which decode.c's
 * graft_img_convert_row applies). Every reader checks the image's size
 * against the pixel limit before it allocates, and libtiff's own buffers
 * are capped too. The libraries report through per-file handlers, never
 * through stderr or exit().
 */
#include "data/data.h"

#include <gif_lib.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <webp/decode.h>
#include <webp/demux.h>

/* The largest allocation one image can justify: 8 bytes a pixel (16-bit
 * RGBA) plus room for directories and tables. */
static tmsize_t alloc_cap(const graft_decode_opts *o)
{
    size_t n;
    if (!graft_mul_ok(graft_img_max_pixels(o), 8, &n) || n > (size_t)INT64_MAX - (1u << 20))
        return INT64_MAX;
    return (tmsize_t)(n + (1u << 20));
}

/* A palette of 256 RGBA entries converted once to the output's c channels
 * (Pillow's convert of each colour), so that indexed rows are lookups. */
static void palette_lut(const uint8_t rgba[256 * 4], int c, uint8_t lut[256 * 4])
{
    graft_img_convert_row(rgba, 4, lut, c, 256);
}

static void index_row(const uint8_t *s, int w, const uint8_t *lut, int c, uint8_t *d)
{
    if (c == 1) {
        for (int x = 0; x < w; x++)
            d[x] = lut[s[x]];
    } else if (c == 3) {
        for (int x = 0; x < w; x++, d += 3) {
            const uint8_t *e = lut + 3 * s[x];
            d[0] = e[0], d[1] = e[1], d[2] = e[2];
        }
    } else {
        for (int x = 0; x < w; x++)
            memcpy(d + 4 * x, lut + 4 * s[x], 4);
    }
}

/* ------------------------------------------------------------------ TIFF */

typedef struct {
    const uint8_t *data;
    size_t size;
    uint64_t pos;
    const char *name;
    char msg[256];
} tiff_mem;

static tmsize_t tm_read(thandle_t h, void *buf, tmsize_t n)
{
    tiff_mem *m = h;
    if (n <= 0 || m->pos >= m->size) return 0;
    size_t k = m->size - (size_t)m->pos;
    if ((uint64_t)n < k) k = (size_t)n;
    memcpy(buf, m->data + m->pos, k);
    m->pos += k;
    return (tmsize_t)k;
}

static tmsize_t tm_write(thandle_t h, void *buf, tmsize_t n)
{
    (void)h;
    (void)buf;
    (void)n;
    return -1;
}

static toff_t tm_seek(thandle_t h, toff_t off, int whence)
{
    tiff_mem *m = h;
    uint64_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size : 0;
    if (off > UINT64_MAX - base) return (toff_t)-1;
    m->pos = base + off;
    return m->pos;
}

static int tm_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t tm_size(thandle_t h)
{
    return ((tiff_mem *)h)->size;
}

static int tm_map(thandle_t h, void **base, toff_t *size)
{
    (void)h;
    (void)base;
    (void)size;
    return 0;
}

static void tm_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

/* The first error libtiff reports is the one worth showing. */
static int tiff_on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    (void)module;
    tiff_mem *m = user;
    if (m->msg[0]) return 1;
    vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    /* Our message names the file already. */
    size_t n = strlen(m->name);
    if (strncmp(m->msg, m->name, n) == 0 && m->msg[n] == ':' && m->msg[n + 1] == ' ')
        memmove(m->msg, m->msg + n + 2, strlen(m->msg + n + 2) + 1);
    return 1;
}

static int tiff_on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    (void)user;
    (void)module;
    (void)fmt;
    (void)ap;
    return 1;
}

/* What a TIFF's samples mean once each pixel is read to 8 bits. */
typedef struct {
    int w, h, spp, bps, planar, photometric;
    int out_c;         /* channels of the 8-bit native row: 1, 2 (LA), 3, 4 */
    int keep;          /* samples of a pixel to keep (3 of RGBX) */
    int premultiplied; /* RGB with associated alpha (Pillow's RGBa) */
    const uint16_t *cmap[3];
    size_t row_bytes; /* one row of one plane (contiguous: of all samples) */
} tiff_layout;

static unsigned sample_at(const uint8_t *row, size_t i, int bps)
{
    switch (bps) {
    case 16: return ((const uint16_t *)(const void *)row)[i]; /* host order from libtiff */
    case 8: return row[i];
    case 4: return (row[i >> 1] >> (4 - 4 * (i & 1))) & 15;
    case 2: return (row[i >> 2] >> (6 - 2 * (i & 3))) & 3;
    default: return (row[i >> 3] >> (7 - (i & 7))) & 1;
    }
}

/* A sample as Pillow's 8-bit modes hold it: 16 bits keep their high byte,
 * fewer bits stretch to 0..255 (L;2 and L;4 multiply by 85 and 17): `mul`
 * is stretch(bps). */
static unsigned stretch(int bps)
{
    return bps == 16 ? 0 : 255u / ((1u << bps) - 1);
}
static uint8_t to8(unsigned v, int bps, unsigned mul)
{
    return (uint8_t)(bps == 16 ? v >> 8 : v * mul);
}

/* One row (planes[k] points at plane k's row; contiguous: only planes[0])
 * to out_c 8-bit channels. */
static void tiff_row(const tiff_layout *L, const uint8_t *const *planes, uint8_t *dst)
{
    int contig = L->planar == PLANARCONFIG_CONTIG;
    unsigned mul = stretch(L->bps);
    for (int x = 0; x < L->w; x++) {
        uint8_t *d = dst + (size_t)x * (size_t)L->out_c;
        unsigned v[4];
        for (int k = 0; k < L->keep; k++)
            v[k] = contig ? sample_at(planes[0], (size_t)x * (size_t)L->spp + (size_t)k, L->bps)
                          : sample_at(planes[k], (size_t)x, L->bps);
        if (L->photometric == PHOTOMETRIC_PALETTE) {
            for (int k = 0; k < 3; k++)
                d[k] = (uint8_t)(L->cmap[k][v[0]] >> 8);
            continue;
        }
        for (int k = 0; k < L->keep; k++)
            d[k] = to8(v[k], L->bps, mul);
        if (L->photometric == PHOTOMETRIC_MINISWHITE) d[0] = (uint8_t)(255 - d[0]);
        if (L->keep < L->out_c) d[L->keep] = 255;
        if (L->premultiplied && d[3] != 255) { /* Pillow's unpackRGBa */
            unsigned a = d[3];
            for (int k = 0; k < 3; k++) {
                unsigned u = a ? d[k] * 255u / a : 0;
                d[k] = (uint8_t)(u > 255 ? 255 : u);
            }
        }
    }
}

/* The layouts read sample by sample (Pillow's own modes for them); anything
 * else goes through libtiff's RGBA reader. Returns 0 for "not ours". */
static int tiff_native_layout(TIFF *tif, tiff_layout *L)
{
    uint16_t fmt = SAMPLEFORMAT_UINT, n_extra = 0, *extra = NULL;
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &n_extra, &extra);
    if (fmt != SAMPLEFORMAT_UINT && fmt != SAMPLEFORMAT_VOID) return 0;
    int b = L->bps, s = L->spp;
    switch (L->photometric) {
    case PHOTOMETRIC_MINISBLACK:
    case PHOTOMETRIC_MINISWHITE:
        if (s == 1 && (b == 1 || b == 2 || b == 4 || b == 8 || b == 16)) {
            L->out_c = L->keep = 1;
            return 1;
        }
        if (s == 2 && (b == 8 || b == 16)) { /* Pillow's LA */
            L->out_c = L->keep = 2;
            return 1;
        }
        return 0;
    case PHOTOMETRIC_RGB:
        if ((b != 8 && b != 16) || s < 3 || s > 4) return 0;
        /* A fourth sample is alpha unless marked unspecified (Pillow's RGBX). */
        L->keep = s == 4 && !(n_extra >= 1 && extra && extra[0] == EXTRASAMPLE_UNSPECIFIED) ? 4 : 3;
        L->out_c = L->keep;
        L->premultiplied =
            L->keep == 4 && n_extra >= 1 && extra && extra[0] == EXTRASAMPLE_ASSOCALPHA;
        return 1;
    case PHOTOMETRIC_PALETTE:
        if (s != 1 || (b != 1 && b != 2 && b != 4 && b != 8)) return 0;
        if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &L->cmap[0], &L->cmap[1], &L->cmap[2])) return 0;
        L->out_c = 3;
        L->keep = 1;
        return 1;
    default: return 0;
    }
}

/* Reads every strip or tile of the first image into `raw`: plane p's row y
 * at raw + (p * h + y) * row_bytes (contiguous data: one plane). */
static int tiff_read_raw(TIFF *tif, const tiff_layout *L, uint8_t *raw, tiff_mem *m)
{
    int planes = L->planar == PLANARCONFIG_CONTIG ? 1 : L->spp;
    if (!TIFFIsTiled(tif)) {
        uint32_t rps = 0;
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
        if (rps == 0 || rps > (uint32_t)L->h) rps = (uint32_t)L->h;
        uint32_t per_plane = ((uint32_t)L->h + rps - 1) / rps;
        for (int p = 0; p < planes; p++) {
            for (uint32_t s = 0; s < per_plane; s++) {
                uint32_t y0 = s * rps, rows = (uint32_t)L->h - y0 < rps ? (uint32_t)L->h - y0 : rps;
                tmsize_t want = (tmsize_t)((size_t)rows * L->row_bytes);
                uint8_t *dst = raw + ((size_t)p * (size_t)L->h + y0) * L->row_bytes;
                tmsize_t got = TIFFReadEncodedStrip(tif, (uint32_t)p * per_plane + s, dst, want);
                if (got != want) {
                    if (!m->msg[0]) snprintf(m->msg, sizeof m->msg, "strip %u is short", s);
                    return 0;
                }
            }
        }
        return 1;
    }
    uint32_t tw = 0, th = 0;
    TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
    tmsize_t tile_size = TIFFTileSize(tif), tile_row = TIFFTileRowSize(tif);
    if (tw == 0 || th == 0 || tile_size <= 0 || tile_row <= 0 ||
        (uint64_t)tile_row * th > (uint64_t)tile_size) {
        if (!m->msg[0]) snprintf(m->msg, sizeof m->msg, "invalid tile size");
        return 0;
    }
    uint8_t *tile = _TIFFmalloc(tile_size);
    if (!tile) {
        if (!m->msg[0]) snprintf(m->msg, sizeof m->msg, "no memory for a tile");
        return 0;
    }
    int ok = 1;
    int bits = L->bps * (L->planar == PLANARCONFIG_CONTIG ? L->spp : 1);
    for (int p = 0; p < planes && ok; p++) {
        for (uint32_t ty = 0; ty < (uint32_t)L->h && ok; ty += th) {
            for (uint32_t tx = 0; tx < (uint32_t)L->w && ok; tx += tw) {
                if (TIFFReadTile(tif, tile, tx, ty, 0, (uint16_t)p) < 0) {
                    ok = 0;
                    break;
                }
                uint32_t cols = (uint32_t)L->w - tx < tw ? (uint32_t)L->w - tx : tw;
                uint32_t rows = (uint32_t)L->h - ty < th ? (uint32_t)L->h - ty : th;
                /* Tile widths are multiples of 16, so tiles start on bytes. */
                size_t at = (size_t)tx * (size_t)bits / 8;
                size_t n = ((size_t)cols * (size_t)bits + 7) / 8;
                for (uint32_t r = 0; r < rows; r++)
                    memcpy(raw + ((size_t)p * (size_t)L->h + ty + r) * L->row_bytes + at,
                           tile + (size_t)r * (size_t)tile_row, n);
            }
        }
    }
    _TIFFfree(tile);
    return ok;
}

graft_status graft_decode_tiff(const uint8_t *data, size_t size, const char *name,
                               const graft_decode_opts *o, graft_img *out)
{
    tiff_mem m = {data, size, 0, name, ""};
    graft_status st = GRAFT_OK;
    TIFF *tif = NULL;
    uint8_t *raw = NULL, *row = NULL;
    uint32_t *rgba = NULL;
    graft_img img = {0};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) return graft_fail(GRAFT_ENOMEM, "%s: cannot create a TIFF reader", name);
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, alloc_cap(o));
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_on_error, &m);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_on_warning, &m);
    /* "m": read through tm_read, never a mapping of the caller's buffer. */
    tif = TIFFClientOpenExt(name, "rm", &m, tm_read, tm_write, tm_seek, tm_close, tm_size, tm_map,
                            tm_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        return graft_fail(GRAFT_EFORMAT, "%s: bad TIFF: %s", name,
                          m.msg[0] ? m.msg : "cannot read the header");
    }
    tiff_layout L = {0};
    uint32_t w = 0, h = 0;
    uint16_t spp = 1, bps = 1, planar = PLANARCONFIG_CONTIG, photometric = 0;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h)) {
        st = graft_fail(GRAFT_EFORMAT, "%s: bad TIFF: no image size", name);
        goto done;
    }
    if ((st = graft_img_check_size(name, (long)w, (long)h, o)) != GRAFT_OK) goto done;
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric)) photometric = UINT16_MAX;
    L = (tiff_layout){.w = (int)w,
                      .h = (int)h,
                      .spp = spp,
                      .bps = bps,
                      .planar = planar,
                      .photometric = photometric};
    if ((st = graft_img_alloc(&img, (int)h, (int)w, o->channels, name)) != GRAFT_OK) goto done;

    if (spp >= 1 && spp <= 4 && tiff_native_layout(tif, &L)) {
        int planes = planar == PLANARCONFIG_CONTIG ? 1 : spp;
        size_t bits = (size_t)bps * (planar == PLANARCONFIG_CONTIG ? spp : 1), total;
        L.row_bytes = ((size_t)w * bits + 7) / 8;
        if (!graft_mul_ok(L.row_bytes, (size_t)h * (size_t)planes, &total)) {
            st = graft_fail(GRAFT_ENOMEM, "%s: %ux%u TIFF is too large", name, w, h);
            goto done;
        }
        raw = calloc(total ? total : 1, 1); /* whole even if libtiff were to write less */
        row = calloc((size_t)w, 4);
        if (!raw || !row) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a %ux%u TIFF", name, w, h);
            goto done;
        }
        if (!tiff_read_raw(tif, &L, raw, &m)) {
            st = graft_fail(GRAFT_EFORMAT, "%s: bad TIFF: %s", name,
                            m.msg[0] ? m.msg : "read error");
            goto done;
        }
        /* 8-bit contiguous samples are rows Pillow's convert reads as they are. */
        int direct = bps == 8 && planes == 1 && !L.premultiplied && L.keep == spp &&
                     photometric != PHOTOMETRIC_MINISWHITE;
        uint8_t pal[256 * 4], lut[256 * 4];
        if (direct && photometric == PHOTOMETRIC_PALETTE) {
            for (int i = 0; i < 256; i++) {
                for (int k = 0; k < 3; k++)
                    pal[4 * i + k] = (uint8_t)(L.cmap[k][i] >> 8);
                pal[4 * i + 3] = 255;
            }
            palette_lut(pal, o->channels, lut);
        }
        for (uint32_t y = 0; y < h; y++) {
            uint8_t *dst = img.px + (size_t)y * w * (size_t)o->channels;
            const uint8_t *src = raw + (size_t)y * L.row_bytes;
            if (direct && photometric == PHOTOMETRIC_PALETTE) {
                index_row(src, (int)w, lut, o->channels, dst);
            } else if (direct) {
                graft_img_convert_row(src, spp, dst, o->channels, (int)w);
            } else {
                const uint8_t *pl[4];
                for (int p = 0; p < planes; p++)
                    pl[p] = raw + ((size_t)p * h + y) * L.row_bytes;
                tiff_row(&L, pl, row);
                graft_img_convert_row(row, L.out_c, dst, o->channels, (int)w);
            }
        }
    } else {
        /* YCbCr, CMYK, CIELab, more samples: libtiff's RGBA conversion. */
        char why[1024];
        if (!TIFFRGBAImageOK(tif, why)) {
            st = graft_fail(GRAFT_EUNSUPPORTED, "%s: unsupported TIFF layout: %s", name, why);
            goto done;
        }
        rgba = _TIFFmalloc((tmsize_t)((size_t)w * h * sizeof *rgba));
        row = calloc((size_t)w, 4);
        if (!rgba || !row) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a %ux%u TIFF", name, w, h);
            goto done;
        }
        if (!TIFFReadRGBAImageOriented(tif, w, h, rgba, ORIENTATION_TOPLEFT, 0)) {
            st = graft_fail(GRAFT_EFORMAT, "%s: bad TIFF: %s", name,
                            m.msg[0] ? m.msg : "read error");
            goto done;
        }
        for (uint32_t y = 0; y < h; y++) {
            const uint32_t *s = rgba + (size_t)y * w;
            for (uint32_t x = 0; x < w; x++) {
                row[4 * x] = (uint8_t)TIFFGetR(s[x]);
                row[4 * x + 1] = (uint8_t)TIFFGetG(s[x]);
                row[4 * x + 2] = (uint8_t)TIFFGetB(s[x]);
                row[4 * x + 3] = (uint8_t)TIFFGetA(s[x]);
            }
            graft_img_convert_row(row, 4, img.px + (size_t)y * w * (size_t)o->channels, o->channels,
                                  (int)w);
        }
    }
    *out = img;
    img.px = NULL;
done:
    TIFFClose(tif);
    free(raw);
    free(row);
    if (rgba) _TIFFfree(rgba);
    graft_img_free(&img);
    return st;
}

/* ------------------------------------------------------------------- GIF */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
} gif_mem;

static int gif_read(GifFileType *g, GifByteType *buf, int n)
{
    gif_mem *m = g->UserData;
    if (n <= 0) return 0;
    size_t k = m->size - m->pos < (size_t)n ? m->size - m->pos : (size_t)n;
    memcpy(buf, m->data + m->pos, k);
    m->pos += k;
    return (int)k;
}

/* The first frame on Pillow's canvas: the logical screen, grown to hold a
 * frame that passes its edge, filled with the transparent index (index 0
 * without one); palette colours, alpha 0 at the transparent index. */
graft_status graft_decode_gif(const uint8_t *data, size_t size, const char *name,
                              const graft_decode_opts *o, graft_img *out)
{
    gif_mem m = {data, size, 0};
    int err = 0;
    GifFileType *g = DGifOpen(&m, gif_read, &err);
    if (!g) return graft_fail(GRAFT_EFORMAT, "%s: bad GIF: %s", name, GifErrorString(err));
    graft_status st = GRAFT_OK;
    uint8_t *idx = NULL;
    graft_img img = {0};
    int trans = -1;
    GifRecordType type;
    for (;;) {
        if (DGifGetRecordType(g, &type) == GIF_ERROR) goto bad;
        if (type == TERMINATE_RECORD_TYPE) {
            st = graft_fail(GRAFT_EFORMAT, "%s: bad GIF: no image in the file", name);
            goto done;
        }
        if (type == IMAGE_DESC_RECORD_TYPE) break;
        if (type != EXTENSION_RECORD_TYPE) continue;
        int code;
        GifByteType *ext;
        if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) goto bad;
        /* Graphic control: flags, delay (2 bytes), transparent index. */
        if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4)
            trans = (ext[1] & 1) ? ext[4] : -1;
        while (ext)
            if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) goto bad;
    }
    if (DGifGetImageDesc(g) == GIF_ERROR) goto bad;
    GifImageDesc *d = &g->Image;
    long fw = d->Width, fh = d->Height;
    long cw = d->Left + fw > g->SWidth ? d->Left + fw : g->SWidth;
    long ch = d->Top + fh > g->SHeight ? d->Top + fh : g->SHeight;
    if ((st = graft_img_check_size(name, cw, ch, o)) != GRAFT_OK) goto done;
    if (fw <= 0 || fh <= 0) {
        st = graft_fail(GRAFT_EFORMAT, "%s: bad GIF: empty frame", name);
        goto done;
    }
    idx = malloc((size_t)cw * (size_t)ch);
    if (!idx) {
        st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a %ldx%ld GIF", name, cw, ch);
        goto done;
    }
    memset(idx, trans >= 0 ? trans : 0, (size_t)cw * (size_t)ch);
    /* Interlaced frames arrive in four passes: rows 0, 4, 2, 1 mod 8, 8, 4, 2. */
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    for (int pass = 0; pass < (d->Interlace ? 4 : 1); pass++) {
        for (long y = d->Interlace ? start[pass] : 0; y < fh; y += d->Interlace ? step[pass] : 1) {
            uint8_t *dst = idx + (size_t)(d->Top + y) * (size_t)cw + (size_t)d->Left;
            if (DGifGetLine(g, dst, (int)fw) == GIF_ERROR) goto bad;
        }
    }
    const ColorMapObject *cmap = d->ColorMap ? d->ColorMap : g->SColorMap;
    uint8_t pal[256 * 4], lut[256 * 4];
    for (int i = 0; i < 256; i++) {
        uint8_t *p = pal + 4 * i;
        if (cmap && i < cmap->ColorCount) {
            p[0] = cmap->Colors[i].Red;
            p[1] = cmap->Colors[i].Green;
            p[2] = cmap->Colors[i].Blue;
        } else { /* no table (or past a short one): Pillow's gray ramp */
            p[0] = p[1] = p[2] = (uint8_t)i;
        }
        p[3] = i == trans ? 0 : 255;
    }
    palette_lut(pal, o->channels, lut);
    if ((st = graft_img_alloc(&img, (int)ch, (int)cw, o->channels, name)) != GRAFT_OK) goto done;
    for (long y = 0; y < ch; y++)
        index_row(idx + (size_t)y * (size_t)cw, (int)cw, lut, o->channels,
                  img.px + (size_t)y * (size_t)cw * (size_t)o->channels);
    *out = img;
    img.px = NULL;
    goto done;
bad:
    st = graft_fail(GRAFT_EFORMAT, "%s: bad GIF: %s", name, GifErrorString(g->Error));
done:
    DGifCloseFile(g, &err);
    free(idx);
    graft_img_free(&img);
    return st;
}

/* ------------------------------------------------------------------ WebP */

/* An animation's first frame on its canvas (w x h, checked by the caller),
 * as Pillow's WebPAnimDecoder gives it; without the alpha flag the image is
 * RGB, so its transparent canvas reads as opaque black. */
static graft_status webp_first_frame(const uint8_t *data, size_t size, const char *name,
                                     int has_alpha, const graft_decode_opts *o, graft_img *out)
{
    WebPAnimDecoderOptions ao;
    if (!WebPAnimDecoderOptionsInit(&ao))
        return graft_fail(GRAFT_EINVAL, "%s: libwebp's animation decoder does not match", name);
    ao.color_mode = MODE_RGBA;
    ao.use_threads = 0;
    WebPData wd = {data, size};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &ao);
    if (!dec) return graft_fail(GRAFT_EFORMAT, "%s: bad animated WebP", name);
    graft_status st = GRAFT_OK;
    graft_img img = {0};
    uint8_t *row = NULL, *buf = NULL;
    int ts = 0;
    WebPAnimInfo info;
    if (!WebPAnimDecoderGetInfo(dec, &info) || !WebPAnimDecoderGetNext(dec, &buf, &ts) || !buf) {
        st = graft_fail(GRAFT_EFORMAT, "%s: bad animated WebP: no first frame", name);
        goto done;
    }
    size_t w = info.canvas_width, h = info.canvas_height;
    if ((st = graft_img_check_size(name, (long)w, (long)h, o)) != GRAFT_OK) goto done;
    if ((st = graft_img_alloc(&img, (int)h, (int)w, o->channels, name)) != GRAFT_OK) goto done;
    row = malloc(w * 4);
    if (!row) {
        st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a WebP row", name);
        goto done;
    }
    for (size_t y = 0; y < h; y++) {
        memcpy(row, buf + y * w * 4, w * 4);
        if (!has_alpha)
            for (size_t x = 0; x < w; x++)
                row[4 * x + 3] = 255;
        graft_img_convert_row(row, 4, img.px + y * w * (size_t)o->channels, o->channels, (int)w);
    }
    *out = img;
    img.px = NULL;
done:
    WebPAnimDecoderDelete(dec);
    free(row);
    graft_img_free(&img);
    return st;
}

graft_status graft_decode_webp(const uint8_t *data, size_t size, const char *name,
                               const graft_decode_opts *o, graft_img *out)
{
    WebPBitstreamFeatures f;
    VP8StatusCode vs = WebPGetFeatures(data, size, &f);
    if (vs != VP8_STATUS_OK)
        return graft_fail(vs == VP8_STATUS_OUT_OF_MEMORY ? GRAFT_ENOMEM : GRAFT_EFORMAT,
                          "%s: bad WebP header (libwebp status %d)", name, (int)vs);
    graft_status st = graft_img_check_size(name, f.width, f.height, o);
    if (st != GRAFT_OK) return st;
    if (f.has_animation) return webp_first_frame(data, size, name, f.has_alpha, o, out);
    graft_img img = {0};
    uint8_t *tmp = NULL;
    if ((st = graft_img_alloc(&img, f.height, f.width, o->channels, name)) != GRAFT_OK) return st;
    size_t w = (size_t)f.width, h = (size_t)f.height;
    /* Straight into the image when it has the channels libwebp writes. */
    int c_in = f.has_alpha ? 4 : 3;
    uint8_t *dst = img.px;
    if (o->channels != c_in) {
        tmp = malloc(w * h * (size_t)c_in);
        if (!tmp) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory for a %zux%zu WebP", name, w, h);
            goto done;
        }
        dst = tmp;
    }
    size_t stride = w * (size_t)c_in;
    uint8_t *ok = c_in == 4 ? WebPDecodeRGBAInto(data, size, dst, stride * h, (int)stride)
                            : WebPDecodeRGBInto(data, size, dst, stride * h, (int)stride);
    if (!ok) {
        st = graft_fail(GRAFT_EFORMAT, "%s: bad WebP image data", name);
        goto done;
    }
    if (tmp)
        for (size_t y = 0; y < h; y++)
            graft_img_convert_row(tmp + y * stride, c_in, img.px + y * w * (size_t)o->channels,
                                  o->channels, (int)w);
    *out = img;
    img.px = NULL;
done:
    free(tmp);
    graft_img_free(&img);
    return st;
}
