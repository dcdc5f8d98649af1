/* common.c -- error messages, allocation, whole-file I/O and atomic writes.
 * Owns nothing beyond the buffers it returns (callers free them). */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ds3_panic(const char *file, int line, const char *what) {
    fprintf(stderr, "ds3: internal error at %s:%d: assertion '%s' failed\n", file, line, what);
    abort();
}

int ds3_seterr(char *err, size_t errlen, int status, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        /* Keep it one line: messages may embed names taken from hostile files. */
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return status;
}

void *ds3_calloc(size_t n, size_t size) {
    if (n == 0 || size == 0) return calloc(1, 1);
    return calloc(n, size);
}

/* Buffers of a few MB or more (weights read with --no-mmap, caches, optimizer state) are
 * aligned to 2 MB and their whole 2 MB pages offered to transparent huge pages: streaming 0.5 GB
 * of weights per token through 4 KB pages costs a TLB walk every 4 KB. The tail past the last
 * whole 2 MB stays in 4 KB pages, so resident memory does not grow by rounding (a sharded
 * checkpoint has one buffer per shard). The zeroing below faults the pages in after the
 * advice, so they arrive huge where the kernel has them. */
#define HUGE_ALIGN ((size_t)2 << 20)
void *ds3_alloc_aligned(size_t bytes) {
    void *p = NULL;
    size_t b = (bytes + 63) & ~(size_t)63;
    if (b == 0) b = 64;
    if (b >= 2 * HUGE_ALIGN) {
        if (posix_memalign(&p, HUGE_ALIGN, b) != 0) return NULL;
#ifdef MADV_HUGEPAGE
        (void)madvise(p, b & ~(HUGE_ALIGN - 1), MADV_HUGEPAGE); /* advice only: failure leaves 4 KB pages */
#endif
    } else if (posix_memalign(&p, 64, b) != 0)
        return NULL;
    memset(p, 0, b);
    return p;
}

char *ds3_read_file(const char *path, size_t *len_out, size_t max_len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        ds3_seterr(err, errlen, DS3_ERR_IO, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    if ((uint64_t)st.st_size > max_len) {
        ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: file too large (%lld bytes, limit %zu)", path,
                   (long long)st.st_size, max_len);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, n);
        fclose(f);
        return NULL;
    }
    if (fread(buf, 1, n, f) != n) {
        ds3_seterr(err, errlen, DS3_ERR_IO, "%s: short read", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (len_out) *len_out = n;
    return buf;
}

int ds3_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return ds3_seterr(err, errlen, DS3_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: fsync/close failed: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: rename failed: %s", path, strerror(e));
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return DS3_OK;
}

int ds3_path_join(char *out, size_t outlen, const char *dir, const char *name) {
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

double ds3_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ds3_n_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
