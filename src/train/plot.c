/* plot.c -- minimal PNG line plots for training curves (see plot.h). Owned by the training
 * engineer. */
#include "train/plot.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { W = 800, H = 480, ML = 70, MR = 20, MT = 20, MB = 40 };

static const unsigned palette[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf};
unsigned ds3_plot_color(int i) { return palette[i % 8]; }

/* 3x5 glyphs, rows top to bottom, 3 bits each (MSB left) */
static const char *GL = "0123456789.-e+k";
static const unsigned char FONT[][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7},
    {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}, {0, 0, 0, 0, 2}, {0, 0, 7, 0, 0},
    {0, 7, 5, 6, 7}, {0, 2, 7, 2, 0}, {4, 5, 6, 5, 5}};

typedef struct { unsigned char *px; } canvas;
static void put(canvas *c, int x, int y, unsigned rgb) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    unsigned char *p = c->px + ((size_t)y * W + x) * 3;
    p[0] = rgb >> 16, p[1] = (rgb >> 8) & 255, p[2] = rgb & 255;
}
static void line(canvas *c, int x0, int y0, int x1, int y1, unsigned rgb, int thick) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        for (int a = 0; a < thick; a++)
            for (int b = 0; b < thick; b++) put(c, x0 + a, y0 + b, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, x0 += sx;
        if (e2 <= dx) e += dx, y0 += sy;
    }
}
static void text(canvas *c, int x, int y, const char *s, unsigned rgb) { /* scale 2 */
    for (; *s; s++, x += 8) {
        const char *g = strchr(GL, *s);
        if (!g) continue;
        const unsigned char *f = FONT[g - GL];
        for (int r = 0; r < 5; r++)
            for (int b = 0; b < 3; b++)
                if (f[r] & (4 >> b))
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) put(c, x + 2 * b + i, y + 2 * r + j, rgb);
    }
}
static void fmt(char *b, size_t n, double v) {
    if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-3)) snprintf(b, n, "%.1e", v);
    else snprintf(b, n, "%.4g", v);
}

int ds3_plot_png(const char *path, const char *title, const char *xlabel, const ds3_plot_series *s, int ns,
                 const double *ylim, int logy) {
    (void)title, (void)xlabel;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
#define TY(v) (logy ? log10(fmax(v, 1e-12)) : (v))
    for (int k = 0; k < ns; k++)
        for (long i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i])) continue;
            x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, TY(s[k].y[i])), y1 = fmax(y1, TY(s[k].y[i]));
        }
    if (!(x1 >= x0)) return -1;
    if (ylim) y0 = TY(ylim[0]), y1 = TY(ylim[1]);
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1;
    const double pad = (y1 - y0) * 0.05;
    if (!ylim) y0 -= pad, y1 += pad;
    canvas c = {malloc((size_t)W * H * 3)};
    if (!c.px) return -1;
    memset(c.px, 255, (size_t)W * H * 3);
    const int pw = W - ML - MR, ph = H - MT - MB;
#define PX(v) (ML + (int)lround(((v) - x0) / (x1 - x0) * pw))
#define PY(v) (MT + ph - (int)lround(((v) - y0) / (y1 - y0) * ph))
    char b[32];
    for (int i = 0; i <= 5; i++) {
        double yv = y0 + (y1 - y0) * i / 5, xv = x0 + (x1 - x0) * i / 5;
        int yy = PY(yv), xx = PX(xv);
        line(&c, ML, yy, W - MR, yy, 0xe0e0e0, 1);
        line(&c, xx, MT, xx, H - MB, 0xe0e0e0, 1);
        fmt(b, sizeof b, logy ? pow(10, yv) : yv);
        text(&c, 4, yy - 5, b, 0x000000);
        fmt(b, sizeof b, xv);
        text(&c, xx - 4 * (int)strlen(b), H - MB + 8, b, 0x000000);
    }
    line(&c, ML, MT, ML, H - MB, 0, 1);
    line(&c, ML, H - MB, W - MR, H - MB, 0, 1);
    for (int k = 0; k < ns; k++) {
        const unsigned col = s[k].rgb ? s[k].rgb : ds3_plot_color(k);
        int px = -1, py = -1;
        for (long i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i])) continue;
            double yv = TY(s[k].y[i]);
            if (yv < y0) yv = y0;
            if (yv > y1) yv = y1;
            int xx = PX(s[k].x[i]), yy = PY(yv);
            if (px >= 0) line(&c, px, py, xx, yy, col, 2);
            else if (s[k].n == 1) line(&c, xx - 2, yy, xx + 2, yy, col, 2);
            px = xx, py = yy;
        }
        for (int i = 0; i < 14; i++) line(&c, W - MR - 40, MT + 8 + 14 * k + i % 6, W - MR - 10, MT + 8 + 14 * k + i % 6, col, 1);
    }
#undef PX
#undef PY
#undef TY
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) { free(c.px); return -1; }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f), free(c.px), unlink(tmp);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, c.px + (size_t)y * W * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fflush(f), fsync(fileno(f)), fclose(f), free(c.px);
    return rename(tmp, path) ? -1 : 0;
}
