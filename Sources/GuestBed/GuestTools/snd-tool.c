/* snd-tool: plays, captures and sets a mixer control through the ALSA kernel interface directly
 * (no alsa-lib in the guest): SNDRV_PCM_IOCTL_HW_PARAMS, SW_PARAMS, PREPARE, WRITEI_FRAMES /
 * READI_FRAMES, DRAIN on /dev/snd/pcmC*D*[pc], SNDRV_CTL_IOCTL_ELEM_WRITE on /dev/snd/controlC*.
 * Stereo S16_LE at 48 kHz, periods of 1024 frames, a buffer of 8 periods (171 ms). Linux fails a
 * write with EIO when no period completes within 1.1 buffer times (at least 100 ms): a buffer of
 * 4 periods left a daemon under ThreadSanitizer on a busy machine 94 ms, which it sometimes missed.
 *   snd-tool play PCM SECONDS FREQUENCY   a sine of amplitude 16000 on both channels
 *   snd-tool capture PCM FRAMES           the captured frames on stdout
 *   snd-tool volume CONTROL NAME VALUE    an integer mixer control's value
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <sound/asound.h>

enum { CHANNELS = 2, RATE = 48000, PERIOD = 1024, PERIODS = 8 };

/* sin(x) without libm (GuestTools link no libraries): reduced to -pi..pi, Taylor series to x^15. */
static double sine(double x) {
    const double pi = 3.14159265358979323846;
    x -= 2 * pi * (double)(long)(x / (2 * pi));
    if (x > pi) x -= 2 * pi;
    if (x < -pi) x += 2 * pi;
    double term = x, sum = x;
    for (int n = 1; n <= 7; n++) { term *= -x * x / ((2 * n) * (2 * n + 1)); sum += term; }
    return sum;
}

static void die(const char *what) { fprintf(stderr, "snd-tool: %s: %s\n", what, strerror(errno)); exit(1); }

static void set_mask(struct snd_pcm_hw_params *p, int param, unsigned bit) {
    struct snd_mask *m = &p->masks[param - SNDRV_PCM_HW_PARAM_FIRST_MASK];
    memset(m, 0, sizeof *m);
    m->bits[bit / 32] = 1u << (bit % 32);
}

static void set_interval(struct snd_pcm_hw_params *p, int param, unsigned value) {
    struct snd_interval *i = &p->intervals[param - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];
    memset(i, 0, sizeof *i);
    i->min = i->max = value;
    i->integer = 1;
}

static int open_pcm(const char *path, int capture) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) die(path);
    struct snd_pcm_hw_params hw;
    memset(&hw, 0, sizeof hw);
    for (int m = 0; m <= SNDRV_PCM_HW_PARAM_LAST_MASK - SNDRV_PCM_HW_PARAM_FIRST_MASK; m++)
        memset(&hw.masks[m], 0xff, sizeof hw.masks[m]);
    for (int i = 0; i <= SNDRV_PCM_HW_PARAM_LAST_INTERVAL - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL; i++)
        hw.intervals[i].max = ~0u;
    hw.rmask = ~0u;
    set_mask(&hw, SNDRV_PCM_HW_PARAM_ACCESS, SNDRV_PCM_ACCESS_RW_INTERLEAVED);
    set_mask(&hw, SNDRV_PCM_HW_PARAM_FORMAT, SNDRV_PCM_FORMAT_S16_LE);
    set_mask(&hw, SNDRV_PCM_HW_PARAM_SUBFORMAT, SNDRV_PCM_SUBFORMAT_STD);
    set_interval(&hw, SNDRV_PCM_HW_PARAM_CHANNELS, CHANNELS);
    set_interval(&hw, SNDRV_PCM_HW_PARAM_RATE, RATE);
    set_interval(&hw, SNDRV_PCM_HW_PARAM_PERIOD_SIZE, PERIOD);
    set_interval(&hw, SNDRV_PCM_HW_PARAM_BUFFER_SIZE, PERIOD * PERIODS);
    if (ioctl(fd, SNDRV_PCM_IOCTL_HW_PARAMS, &hw) < 0) die("HW_PARAMS");
    struct snd_pcm_sw_params sw;
    memset(&sw, 0, sizeof sw);
    sw.period_step = 1;
    sw.avail_min = PERIOD;
    /* Playback starts once the buffer is full; capture at once. */
    sw.start_threshold = capture ? 1 : PERIOD * PERIODS;
    sw.stop_threshold = PERIOD * PERIODS;
    if (ioctl(fd, SNDRV_PCM_IOCTL_SW_PARAMS, &sw) < 0) die("SW_PARAMS");
    if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) < 0) die("PREPARE");
    return fd;
}

static int play(const char *path, double seconds, double frequency) {
    int fd = open_pcm(path, 0);
    long total = (long)(seconds * RATE), done = 0;
    static short frames[PERIOD * CHANNELS];
    /* Whole periods only: the tail of the last one is silence. */
    long padded = (total + PERIOD - 1) / PERIOD * PERIOD;
    while (done < padded) {
        long n = PERIOD;
        for (long f = 0; f < n; f++) {
            double y = done + f < total ? 16000 * sine(2 * 3.14159265358979323846 * frequency * (double)(done + f) / RATE) : 0;
            short v = (short)(y >= 0 ? y + 0.5 : y - 0.5);
            for (int c = 0; c < CHANNELS; c++) frames[f * CHANNELS + c] = v;
        }
        struct snd_xferi x = { .buf = frames, .frames = n };
        if (ioctl(fd, SNDRV_PCM_IOCTL_WRITEI_FRAMES, &x) < 0) {
            if (errno == EPIPE) { fprintf(stderr, "snd-tool: underrun at frame %ld\n", done); if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) < 0) die("PREPARE"); continue; }
            die("WRITEI_FRAMES");
        }
        done += x.result;
    }
    if (ioctl(fd, SNDRV_PCM_IOCTL_DRAIN) < 0) die("DRAIN");
    close(fd);
    return 0;
}

static int capture(const char *path, long total) {
    int fd = open_pcm(path, 1);
    static short frames[PERIOD * CHANNELS];
    if (ioctl(fd, SNDRV_PCM_IOCTL_START) < 0) die("START");
    for (long done = 0; done < total;) {
        long n = total - done < PERIOD ? total - done : PERIOD;
        struct snd_xferi x = { .buf = frames, .frames = n };
        if (ioctl(fd, SNDRV_PCM_IOCTL_READI_FRAMES, &x) < 0) die("READI_FRAMES");
        if (fwrite(frames, CHANNELS * sizeof(short), x.result, stdout) != (size_t)x.result) die("stdout");
        done += x.result;
    }
    ioctl(fd, SNDRV_PCM_IOCTL_DROP);
    close(fd);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int volume(const char *path, const char *name, long value) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) die(path);
    struct snd_ctl_elem_value v;
    memset(&v, 0, sizeof v);
    v.id.iface = SNDRV_CTL_ELEM_IFACE_MIXER;
    strncpy((char *)v.id.name, name, sizeof v.id.name - 1);
    v.value.integer.value[0] = value;
    if (ioctl(fd, SNDRV_CTL_IOCTL_ELEM_WRITE, &v) < 0) die("ELEM_WRITE");
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "play")) return play(argv[2], atof(argv[3]), atof(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "capture")) return capture(argv[2], atol(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "volume")) return volume(argv[2], argv[3], atol(argv[4]));
    fprintf(stderr, "usage: snd-tool play PCM SECONDS HZ | capture PCM FRAMES | volume CONTROL NAME VALUE\n");
    return 2;
}
