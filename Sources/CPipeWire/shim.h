// What Swift cannot express of libpipewire: the SPA pod builder macros for the stream's format,
// and the stream's event table (a versioned struct of callbacks).
#include <pipewire/pipewire.h>
#include <spa/param/audio/format-utils.h>

/// Creates a stream on `loop`'s thread loop (call with the loop locked) and connects it for
/// `format` (an enum spa_audio_format), `channels` and `rate`: playback (`capture` 0) or capture,
/// to the node named `target` (NULL: wherever the session manager puts it). `process` runs on the
/// loop's thread, with the loop locked, given `data`. NULL on failure.
static inline struct pw_stream *vhu_pw_stream_open(struct pw_thread_loop *loop, const char *name, const char *target,
                                                   int capture, uint32_t format, uint32_t channels, uint32_t rate,
                                                   uint32_t quantum, void (*process)(void *), void *data) {
    static struct pw_stream_events events;
    events.version = PW_VERSION_STREAM_EVENTS;
    events.process = process;
    char latency[32];
    snprintf(latency, sizeof latency, "%u/%u", quantum, rate);
    struct pw_properties *props = pw_properties_new(PW_KEY_MEDIA_TYPE, "Audio", PW_KEY_MEDIA_CATEGORY,
                                                    capture ? "Capture" : "Playback", PW_KEY_MEDIA_ROLE, "Game",
                                                    PW_KEY_NODE_LATENCY, latency, PW_KEY_NODE_NAME, name, NULL);
    if (target) pw_properties_set(props, PW_KEY_TARGET_OBJECT, target);
    // One port per channel from the start, as a session manager would configure them: the ports
    // can be linked by a session manager or by hand (pw-link) alike.
    pw_properties_set(props, "adapter.auto-port-config", "{ mode = dsp monitor = false position = preserve }");
    struct pw_stream *stream = pw_stream_new_simple(pw_thread_loop_get_loop(loop), name, props, &events, data);
    if (!stream) return NULL;
    uint8_t buffer[1024];
    struct spa_pod_builder builder = SPA_POD_BUILDER_INIT(buffer, sizeof buffer);
    struct spa_audio_info_raw info = { .format = format, .channels = channels, .rate = rate };
    const struct spa_pod *params[1] = { spa_format_audio_raw_build(&builder, SPA_PARAM_EnumFormat, &info) };
    if (pw_stream_connect(stream, capture ? PW_DIRECTION_INPUT : PW_DIRECTION_OUTPUT, PW_ID_ANY,
                          PW_STREAM_FLAG_AUTOCONNECT | PW_STREAM_FLAG_MAP_BUFFERS,
                          params, 1) < 0) {
        pw_stream_destroy(stream);
        return NULL;
    }
    return stream;
}
