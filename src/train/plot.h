/* plot.h -- line plots as PNG (libpng) for the training curves: white canvas, axes with numeric
 * tick labels (a built-in 3x5 pixel digit font), one colour per series; no text labels, so
 * callers document which colour is which (docs/training.md: series colours in order are blue,
 * red, green, orange, purple, ...). */
#ifndef DS3_PLOT_H
#define DS3_PLOT_H

typedef struct {
    const char *name;     /* not drawn; for callers' documentation */
    const double *x, *y;
    long n;
    unsigned rgb;         /* 0xRRGGBB; 0 picks the palette colour of the series index */
} ds3_plot_series;

/* title, xlabel are not drawn (no font); ylim: NULL or {lo, hi}. logy: log10 y axis.
 * Returns 0 or -1. The file is written atomically. */
int ds3_plot_png(const char *path, const char *title, const char *xlabel, const ds3_plot_series *s, int n_series,
                 const double *ylim, int logy);
unsigned ds3_plot_color(int i);

#endif
