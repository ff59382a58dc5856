/* The benchmark's load generator: AOI Clients and server apps, MQTT subscribers and
 * publishers, for the reference AOI Server and for Mosquitto alike.
 *
 *   loadgen aoi-clients  --host H --port P [--path /aoi] --first N --count M ...
 *   loadgen aoi-pusher   --host H --port P --key K --tokens FILE --connections C ...
 *   loadgen mqtt-clients --host H --port P --first N --count M --username U --password W ...
 *   loadgen mqtt-pusher  --host H --port P --username U --password W --topics-prefix X ...
 *
 * One process, one epoll loop, one recv per readable socket and one send per reply: what a
 * read brought is parsed in place, and the replies to it (all the acks of one read) leave in
 * one write. Nothing is allocated per message except, when recording, the id and two times
 * of each message. It is built by bench/loadgen.py (gcc, into a cache folder) and driven by
 * the benchmark's Python code over stdin and stdout:
 *
 * clients  print {"event":"ready",...} once every session is served (AOI: registered; MQTT:
 *          SUBACK) or failed, then ack what arrives. Lines on stdin: "window START END" (the
 *          counting window, CLOCK_MONOTONIC seconds, the clock of Python's time.monotonic),
 *          "stats" (answered with {"event":"stats",...}); end of stdin: {"event":"done",...}.
 *          --at T: every session connects at the instant T (a storm), prepared beforehand.
 * pushers  push (AOI: POST /v1/push/<token>, or with --batch N batches of N to POST /v1/push,
 *          one request in flight per keep-alive connection; MQTT:
 *          QoS 1 PUBLISH, --window in flight) round robin over the audience, in closed loop
 *          (--rate 0) or at --rate per second, from --begin until --end (a line "end T" on
 *          stdin moves it), then print {"event":"done",...}.
 *
 * A message's id is the notification id (AOI) or the publisher's sequence number (MQTT);
 * its payload starts with the send time ("<monotonic seconds> ..."), so latencies are
 * computed the same way for both systems.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define HANDSHAKES_AT_ONCE 256
#define READ_SIZE (256 * 1024)
#define MQTT_KEEPALIVE_S 270

/* --- small tools ------------------------------------------------------------------------ */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *why) {
    fprintf(stderr, "loadgen: %s: %s\n", why, strerror(errno));
    exit(2);
}

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("out of memory");
    b->cap = cap;
}

static void buf_add(buf_t *b, const void *p, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_printf(buf_t *b, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int n = vsnprintf(NULL, 0, format, args);
    va_end(args);
    buf_reserve(b, (size_t)n + 1);
    va_start(args, format);
    vsnprintf(b->data + b->len, (size_t)n + 1, format, args);
    va_end(args);
    b->len += (size_t)n;
}

static void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* A JSON string (RFC 8259 escapes) */
static void buf_json_string(buf_t *b, const char *s, size_t n) {
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char pair[2] = {'\\', (char)c};
            buf_add(b, pair, 2);
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_add(b, &s[i], 1);
        }
    }
    buf_add(b, "\"", 1);
}

static void emit(buf_t *b) {
    buf_add(b, "\n", 1);
    size_t at = 0;
    while (at < b->len) {
        ssize_t w = write(1, b->data + at, b->len - at);
        if (w < 0) {
            if (errno == EINTR) continue;
            exit(3); /* the parent is gone */
        }
        at += (size_t)w;
    }
    b->len = 0;
}

/* Errors by kind: why a session or a connection failed, and how often. */
typedef struct {
    char why[120];
    long n;
} tally_t;
static tally_t errors[64];
static int error_kinds;

static void count_error(const char *why) {
    for (int i = 0; i < error_kinds; i++)
        if (strcmp(errors[i].why, why) == 0) {
            errors[i].n++;
            return;
        }
    if (error_kinds == 64) why = "other";
    if (error_kinds < 64) {
        snprintf(errors[error_kinds].why, sizeof errors[0].why, "%s", why);
        errors[error_kinds++].n = 1;
    } else {
        errors[63].n++;
    }
}

static void buf_errors(buf_t *b) {
    buf_add(b, "{", 1);
    for (int i = 0; i < error_kinds; i++) {
        if (i) buf_add(b, ",", 1);
        buf_json_string(b, errors[i].why, strlen(errors[i].why));
        buf_printf(b, ":%ld", errors[i].n);
    }
    buf_add(b, "}", 1);
}

/* Strings kept for the run (ids, tokens): one arena, addressed by offset. */
static buf_t arena;

static uint32_t keep(const char *s, size_t n) {
    uint32_t at = (uint32_t)arena.len;
    buf_add(&arena, s, n);
    buf_add(&arena, "", 1);
    return at;
}

/* Room for one more item in a growing array */
static void *grow(void *items, size_t n, size_t *cap, size_t size) {
    if (n < *cap) return items;
    *cap = *cap ? 2 * *cap : 4096;
    items = realloc(items, *cap * size);
    if (!items) die("out of memory");
    return items;
}

/* Messages recorded by id (an arena offset) with one or two times */
typedef struct {
    uint32_t id;
    double first, second;
} stamp_t;
typedef struct {
    stamp_t *items;
    size_t n, cap;
} stamps_t;

static void stamp(stamps_t *s, uint32_t id, double first, double second) {
    s->items = grow(s->items, s->n, &s->cap, sizeof *s->items);
    s->items[s->n++] = (stamp_t){id, first, second};
}

/* {"id": first, ...} or, with both, {"id": [first, second], ...} */
static void buf_stamps(buf_t *b, const stamps_t *s, int both) {
    buf_add(b, "{", 1);
    for (size_t i = 0; i < s->n; i++) {
        const char *id = arena.data + s->items[i].id;
        if (i) buf_add(b, ",", 1);
        buf_json_string(b, id, strlen(id));
        if (both)
            buf_printf(b, ":[%.6f,%.6f]", s->items[i].first, s->items[i].second);
        else
            buf_printf(b, ":%.6f", s->items[i].first);
    }
    buf_add(b, "}", 1);
}

/* A set of strings (message ids seen), open addressing on offsets into the arena. */
static uint32_t *set_slots; /* offset + 1; 0 = empty */
static size_t set_cap, set_size;

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static void set_grow(void) {
    size_t old = set_cap;
    uint32_t *slots = set_slots;
    set_cap = old ? old * 2 : 1 << 16;
    set_slots = calloc(set_cap, sizeof *set_slots);
    if (!set_slots) die("out of memory");
    for (size_t i = 0; i < old; i++) {
        if (!slots[i]) continue;
        const char *s = arena.data + slots[i] - 1;
        size_t j = hash(s, strlen(s)) & (set_cap - 1);
        while (set_slots[j]) j = (j + 1) & (set_cap - 1);
        set_slots[j] = slots[i];
    }
    free(slots);
}

/* Adds the id; returns its offset, and whether it was there already in *seen. */
static uint32_t set_add(const char *s, size_t n, int *seen) {
    if (2 * (set_size + 1) > set_cap) set_grow();
    size_t j = hash(s, n) & (set_cap - 1);
    while (set_slots[j]) {
        const char *there = arena.data + set_slots[j] - 1;
        if (strncmp(there, s, n) == 0 && there[n] == 0) {
            *seen = 1;
            return set_slots[j] - 1;
        }
        j = (j + 1) & (set_cap - 1);
    }
    uint32_t at = keep(s, n);
    set_slots[j] = at + 1;
    set_size++;
    *seen = 0;
    return at;
}

/* --- JSON: the top-level fields of one object, in place ------------------------------- */

typedef struct {
    const char *p; /* the raw value: a string with its quotes */
    size_t n;
} span_t;

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static const char *skip_string(const char *p, const char *e) { /* p at the opening quote */
    for (p++; p < e; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *e) {
    if (p >= e) return NULL;
    if (*p == '"') return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < e) {
            if (*p == '"') {
                p = skip_string(p, e);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return NULL;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
    return p;
}

/* Fills out[i] with the value of keys[i] (n = 0 when absent); -1 when not an object. */
static int json_fields(const char *p, size_t n, const char *const *keys, span_t *out, int count) {
    const char *e = p + n;
    for (int i = 0; i < count; i++) out[i].n = 0;
    p = skip_ws(p, e);
    if (p >= e || *p != '{') return -1;
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}') return 0;
    while (p < e) {
        if (*p != '"') return -1;
        const char *key = p + 1, *after = skip_string(p, e);
        if (!after) return -1;
        size_t key_n = (size_t)(after - 1 - key);
        p = skip_ws(after, e);
        if (p >= e || *p != ':') return -1;
        p = skip_ws(p + 1, e);
        const char *end = skip_value(p, e);
        if (!end) return -1;
        for (int i = 0; i < count; i++)
            if (strlen(keys[i]) == key_n && memcmp(keys[i], key, key_n) == 0) {
                out[i].p = p;
                out[i].n = (size_t)(end - p);
            }
        p = skip_ws(end, e);
        if (p < e && *p == ',') {
            p = skip_ws(p + 1, e);
            continue;
        }
        return p < e && *p == '}' ? 0 : -1;
    }
    return -1;
}

static int is_string(span_t s) { return s.n >= 2 && s.p[0] == '"'; }

static int span_is(span_t s, const char *text) { /* a string value equal to text */
    size_t n = strlen(text);
    return is_string(s) && s.n == n + 2 && memcmp(s.p + 1, text, n) == 0;
}

/* --- options ------------------------------------------------------------------------------ */

static int argc_;
static char **argv_;

static const char *option(const char *name, const char *fallback) {
    for (int i = 2; i + 1 < argc_; i++)
        if (strcmp(argv_[i], name) == 0) return argv_[i + 1];
    return fallback;
}

static double number(const char *name, double fallback) {
    const char *v = option(name, NULL);
    return v ? strtod(v, NULL) : fallback;
}

static int flag(const char *name) {
    for (int i = 2; i < argc_; i++)
        if (strcmp(argv_[i], name) == 0) return 1;
    return 0;
}

static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

/* --- connections ------------------------------------------------------------------------ */

enum { CONNECTING, UPGRADING, HELLO, REGISTERING, SUBSCRIBING, SERVED, DEAD };

typedef struct conn {
    int fd, state;
    long index;          /* which client (first + i) or which connection */
    buf_t in, out;       /* bytes not parsed yet; bytes the kernel did not take yet */
    unsigned char mask[4];
    double began;        /* the instant its connect was issued (a storm: the storm's) */
    double sent_at;      /* AOI pusher: its push in flight since */
    int busy;            /* AOI pusher: a push in flight */
    long pushes;         /* AOI pusher: the notifications in it (a batch: several) */
    uint32_t token;      /* AOI: the token of its registration (arena offset + 1) */
    const char *source;
} conn_t;

static int poller;
static struct sockaddr_in server;
static char host_header[300];
static long live; /* connections not DEAD */

static void watch(conn_t *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(poller, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static int open_socket(const char *source) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source && *source) {
        struct sockaddr_in local = {.sin_family = AF_INET};
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (inet_pton(AF_INET, source, &local.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static int start_connect(conn_t *c) {
    if (connect(c->fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS)
        return -1;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

/* Sends now what the kernel takes, keeps the rest for EPOLLOUT; -1 when the peer is gone. */
static int conn_send(conn_t *c, const void *p, size_t n) {
    if (c->state == DEAD) return -1;
    if (c->out.len) {
        buf_add(&c->out, p, n);
        return 0;
    }
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        w = 0;
    }
    if ((size_t)w < n) {
        buf_add(&c->out, (const char *)p + w, n - (size_t)w);
        watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    }
    return 0;
}

static int conn_flush(conn_t *c) {
    ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
    if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    memmove(c->out.data, c->out.data + w, c->out.len - (size_t)w);
    c->out.len -= (size_t)w;
    if (!c->out.len) watch(c, EPOLLIN, EPOLL_CTL_MOD);
    return 0;
}

static void conn_close(conn_t *c) {
    if (c->state == DEAD) return;
    close(c->fd);
    c->state = DEAD;
    live--;
    buf_free(&c->in);
    buf_free(&c->out);
}

/* Reads once; calls parse(c, data, n, t) on what is there; keeps what it did not consume.
 * Returns -1 when the peer closed or failed (why in *why). */
static char *read_area;

static int conn_read(conn_t *c, size_t (*parse)(conn_t *, const char *, size_t, double),
                     const char **why) {
    ssize_t r = recv(c->fd, read_area, READ_SIZE, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        *why = "recv failed";
        return -1;
    }
    if (r == 0) {
        *why = "closed by the server";
        return -1;
    }
    double t = now();
    const char *data = read_area;
    size_t n = (size_t)r;
    if (c->in.len) {
        buf_add(&c->in, read_area, n);
        data = c->in.data;
        n = c->in.len;
    }
    size_t used = parse(c, data, n, t);
    if (c->state == DEAD) return 0;
    if (used == (size_t)-1) {
        *why = NULL; /* parse failed the session itself */
        return -1;
    }
    if (data == c->in.data) {
        memmove(c->in.data, c->in.data + used, n - used);
        c->in.len = n - used;
    } else if (used < n) {
        buf_add(&c->in, data + used, n - used);
    }
    return 0;
}

/* --- commands from the parent ------------------------------------------------------------ */

static double window_start = 1e300, window_end = 1e300, end_at;
static int stdin_closed;
static buf_t stdin_buf;

/* Reads stdin; calls on_line for each full line. */
static void read_commands(void (*on_line)(char *)) {
    char chunk[4096];
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r <= 0) {
        if (r < 0 && errno == EINTR) return;
        stdin_closed = 1;
        epoll_ctl(poller, EPOLL_CTL_DEL, 0, NULL);
        return;
    }
    buf_add(&stdin_buf, chunk, (size_t)r);
    char *nl;
    while ((nl = memchr(stdin_buf.data, '\n', stdin_buf.len))) {
        *nl = 0;
        on_line(stdin_buf.data);
        size_t used = (size_t)(nl + 1 - stdin_buf.data);
        memmove(stdin_buf.data, nl + 1, stdin_buf.len - used);
        stdin_buf.len -= used;
    }
}

static void watch_stdin(void) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(poller, EPOLL_CTL_ADD, 0, &ev) < 0) stdin_closed = 1; /* not a pipe */
}

/* --- percentiles, as bench.loadgen.percentiles ranks them ------------------------------ */

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void buf_percentiles(buf_t *b, double *values, size_t n) {
    if (!n) {
        buf_add(b, "{\"n\":0}", 7);
        return;
    }
    qsort(values, n, sizeof *values, compare);
    const double q[] = {0.5, 0.99, 0.999, 1.0};
    const char *names[] = {"p50", "p99", "p999", "max"};
    buf_add(b, "{", 1);
    for (int i = 0; i < 4; i++) {
        size_t at = (size_t)(q[i] * (double)n);
        if (at > n - 1) at = n - 1;
        buf_printf(b, "\"%s\":%.3f,", names[i], values[at] * 1000.0);
    }
    buf_printf(b, "\"n\":%zu}", n);
}

/* --- the clients: AOI Clients or MQTT subscribers that ack everything ------------------- */

static int mqtt; /* the protocol: 0 AOI (WebSocket, JSON), 1 MQTT 5 */
static conn_t *conns;
static long n_conns, first_client;
static const char *prefix, *secret_prefix, *app_id, *path_, *username, *password;
static char *sources[64];
static int n_sources;
static int record, subscribe = 1;
static double storm_at; /* 0: connect HANDSHAKES_AT_ONCE at a time */

static long served, failed, handshaking, next_to_connect, acked, acked_in_window, duplicates,
    lost;
static double *durations;
static long n_durations;
static stamps_t receipts; /* id -> received, sent */
static buf_t reply; /* the replies to one read */

static void fail(conn_t *c, const char *why) {
    if (c->state == DEAD) return;
    if (c->state == SERVED) {
        lost++;
    } else {
        failed++;
        handshaking--;
        count_error(why);
    }
    conn_close(c);
}

static void serve(conn_t *c, double t) {
    c->state = SERVED;
    served++;
    handshaking--;
    durations[n_durations++] = t - c->began;
}

/* One message received: its id, send stamp, at t. */
static void received(const char *id, size_t n, double sent, double t) {
    int seen;
    uint32_t at = set_add(id, n, &seen);
    duplicates += seen;
    acked++;
    if (window_start <= t && t < window_end) acked_in_window++;
    if (record) stamp(&receipts, at, t, sent);
}

/* AOI-2 over WebSocket ------------------------------------------------------------------ */

static void ws_frame(buf_t *b, int opcode, const char *payload, size_t n, const unsigned char *mask) {
    unsigned char head[14];
    size_t h = 0;
    head[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        head[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(n >> 8);
        head[h++] = (unsigned char)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) head[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    memcpy(head + h, mask, 4);
    h += 4;
    buf_add(b, head, h);
    buf_reserve(b, n);
    unsigned char *out = (unsigned char *)b->data + b->len;
    for (size_t i = 0; i < n; i++) out[i] = (unsigned char)payload[i] ^ mask[i & 3];
    b->len += n;
}

static void aoi_send_text(conn_t *c, buf_t *b, const char *text, size_t n) {
    ws_frame(b, 0x1, text, n, c->mask);
}

static void aoi_connected(conn_t *c) {
    buf_t b = {0};
    unsigned char key[16];
    for (int i = 0; i < 16; i++) key[i] = (unsigned char)rand();
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char encoded[25];
    for (int i = 0, o = 0; i < 16; i += 3) {
        uint32_t v = (uint32_t)key[i] << 16 | (i + 1 < 16 ? key[i + 1] << 8 : 0) |
                     (i + 2 < 16 ? key[i + 2] : 0);
        encoded[o++] = table[v >> 18 & 63];
        encoded[o++] = table[v >> 12 & 63];
        encoded[o++] = i + 1 < 16 ? table[v >> 6 & 63] : '=';
        encoded[o++] = i + 2 < 16 ? table[v & 63] : '=';
        encoded[o] = 0;
    }
    buf_printf(&b,
               "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: aoi.v1\r\n\r\n",
               path_, host_header, encoded);
    c->state = UPGRADING;
    if (conn_send(c, b.data, b.len) < 0) fail(c, "send failed");
    buf_free(&b);
}

static const char *const AOI_KEYS[] = {"type", "id", "payload", "token", "ts"};

static size_t aoi_parse(conn_t *c, const char *d, size_t n, double t) {
    size_t at = 0;
    reply.len = 0;
    if (c->state == UPGRADING) {
        const char *end = memmem(d, n, "\r\n\r\n", 4);
        if (!end) return 0;
        if (n < 12 || memcmp(d, "HTTP/1.1 101", 12) != 0) {
            char why[100];
            const char *eol = memmem(d, n, "\r\n", 2);
            snprintf(why, sizeof why, "%.*s", (int)(eol - d < 90 ? eol - d : 90), d);
            fail(c, why);
            return (size_t)-1;
        }
        at = (size_t)(end + 4 - d);
        char hello[512];
        int h = snprintf(hello, sizeof hello,
                         "{\"type\":\"hello\",\"version\":1,\"client_id\":\"%s%ld\","
                         "\"credential\":\"%s%ld\"}",
                         prefix, c->index, secret_prefix, c->index);
        aoi_send_text(c, &reply, hello, (size_t)h);
        c->state = HELLO;
    }
    size_t ack_start = 0, ids = 0;
    buf_t acks = {0};
    while (n - at >= 2) {
        unsigned char b0 = (unsigned char)d[at], b1 = (unsigned char)d[at + 1];
        if (!(b0 & 0x80) || (b1 & 0x80)) {
            fail(c, "fragmented or masked frame from the server");
            return (size_t)-1;
        }
        uint64_t len = b1 & 0x7F;
        size_t head = 2;
        if (len == 126) {
            if (n - at < 4) break;
            len = (uint64_t)(unsigned char)d[at + 2] << 8 | (unsigned char)d[at + 3];
            head = 4;
        } else if (len == 127) {
            if (n - at < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | (unsigned char)d[at + 2 + i];
            head = 10;
        }
        if (n - at - head < len) break;
        const char *payload = d + at + head;
        int opcode = b0 & 0x0F;
        at += head + (size_t)len;
        if (opcode == 0x9) { /* ping */
            buf_t pong = {0};
            ws_frame(&pong, 0xA, payload, (size_t)len, c->mask);
            buf_add(&reply, pong.data, pong.len);
            buf_free(&pong);
            continue;
        }
        if (opcode == 0x8) {
            char why[60];
            snprintf(why, sizeof why, "closed by the server %02x%02x",
                     len >= 2 ? (unsigned char)payload[0] : 0, len >= 2 ? (unsigned char)payload[1] : 0);
            fail(c, why);
            buf_free(&acks);
            return (size_t)-1;
        }
        if (opcode != 0x1) continue;
        span_t f[5];
        if (json_fields(payload, (size_t)len, AOI_KEYS, f, 5) < 0) {
            fail(c, "a frame that is not a JSON object");
            buf_free(&acks);
            return (size_t)-1;
        }
        if (span_is(f[0], "notify") && is_string(f[1])) {
            if (!ids) {
                buf_add(&acks, "{\"type\":\"ack\",\"ids\":[", 21);
                ack_start = 1;
            } else {
                buf_add(&acks, ",", 1);
            }
            buf_add(&acks, f[1].p, f[1].n);
            ids++;
            double sent = is_string(f[2]) ? strtod(f[2].p + 1, NULL) : 0.0;
            received(f[1].p + 1, f[1].n - 2, sent, t);
        } else if (span_is(f[0], "welcome") && c->state == HELLO) {
            char reg[300];
            int r = snprintf(reg, sizeof reg, "{\"type\":\"register\",\"req\":1,\"app_id\":\"%s\"}",
                             app_id);
            aoi_send_text(c, &reply, reg, (size_t)r);
            c->state = REGISTERING;
        } else if (span_is(f[0], "registered") && c->state == REGISTERING && is_string(f[3])) {
            c->token = keep(f[3].p + 1, f[3].n - 2) + 1;
            serve(c, t);
        } else if (span_is(f[0], "ping")) {
            char pong[200];
            int r = f[4].n && f[4].n < 150
                        ? snprintf(pong, sizeof pong, "{\"type\":\"pong\",\"ts\":%.*s}", (int)f[4].n, f[4].p)
                        : snprintf(pong, sizeof pong, "{\"type\":\"pong\"}");
            aoi_send_text(c, &reply, pong, (size_t)r);
        } else if (!span_is(f[0], "pong")) {
            char why[120];
            snprintf(why, sizeof why, "%.*s", (int)(len < 110 ? len : 110), payload);
            fail(c, why);
            buf_free(&acks);
            return (size_t)-1;
        }
    }
    if (ack_start) {
        buf_add(&acks, "]}", 2);
        aoi_send_text(c, &reply, acks.data, acks.len);
    }
    buf_free(&acks);
    if (reply.len && conn_send(c, reply.data, reply.len) < 0) {
        fail(c, "send failed");
        return (size_t)-1;
    }
    return at;
}

/* MQTT 5 ------------------------------------------------------------------------------------ */

static void mqtt_varint(buf_t *b, size_t value) {
    do {
        unsigned char byte = value & 0x7F;
        value >>= 7;
        if (value) byte |= 0x80;
        buf_add(b, &byte, 1);
    } while (value);
}

/* (value, position after it) of a variable byte integer at d[at]; 0 when incomplete. */
static int mqtt_read_varint(const unsigned char *d, size_t n, size_t at, size_t *value, size_t *after) {
    *value = 0;
    for (int i = 0; i < 4; i++) {
        if (at + (size_t)i >= n) return 0;
        *value |= (size_t)(d[at + i] & 0x7F) << (7 * i);
        if (d[at + i] < 0x80) {
            *after = at + (size_t)i + 1;
            return 1;
        }
    }
    return -1;
}

static void mqtt_string(buf_t *b, const char *s, size_t n) {
    unsigned char len[2] = {(unsigned char)(n >> 8), (unsigned char)n};
    buf_add(b, len, 2);
    buf_add(b, s, n);
}

static void mqtt_packet(buf_t *b, unsigned char first, buf_t *body) {
    buf_add(b, &first, 1);
    mqtt_varint(b, body->len);
    buf_add(b, body->data, body->len);
}

/* CONNECT: clean start, user name and password, keepalive, session expiry 3600 s. */
static void mqtt_connect(buf_t *b, const char *client_id) {
    buf_t body = {0};
    buf_add(&body, "\x00\x04MQTT\x05\xc2", 8);
    unsigned char keepalive[2] = {MQTT_KEEPALIVE_S >> 8, MQTT_KEEPALIVE_S & 0xFF};
    buf_add(&body, keepalive, 2);
    buf_add(&body, "\x05\x11\x00\x00\x0e\x10", 6); /* session expiry interval 3600 */
    mqtt_string(&body, client_id, strlen(client_id));
    mqtt_string(&body, username, strlen(username));
    mqtt_string(&body, password, strlen(password));
    mqtt_packet(b, 0x10, &body);
    buf_free(&body);
}

static void mqtt_client_id(conn_t *c, char *out, size_t size) {
    snprintf(out, size, "%s%ld", prefix, c->index);
}

static void mqtt_connected(conn_t *c) {
    buf_t b = {0};
    char id[200];
    mqtt_client_id(c, id, sizeof id);
    mqtt_connect(&b, id);
    c->state = HELLO;
    if (conn_send(c, b.data, b.len) < 0) fail(c, "send failed");
    buf_free(&b);
}

/* The properties of a CONNACK or SUBACK, skipped; -1 when malformed. Receive maximum: *rm */
static int mqtt_properties(const unsigned char *d, size_t at, size_t end, size_t *after, long *rm) {
    size_t len, p;
    if (mqtt_read_varint(d, end, at, &len, &p) != 1 || p + len > end) return -1;
    *after = p + len;
    while (p < *after) {
        unsigned char id = d[p++];
        switch (id) {
            case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
                p += 1; break;
            case 0x13: case 0x22: case 0x23: p += 2; break;
            case 0x21:
                if (rm && p + 2 <= end) *rm = d[p] << 8 | d[p + 1];
                p += 2;
                break;
            case 0x02: case 0x11: case 0x18: case 0x27: p += 4; break;
            case 0x0B: {
                size_t v;
                if (mqtt_read_varint(d, end, p, &v, &p) != 1) return -1;
                break;
            }
            case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1A:
            case 0x1C: case 0x1F:
                if (p + 2 > end) return -1;
                p += 2 + (size_t)(d[p] << 8 | d[p + 1]);
                break;
            case 0x26:
                for (int k = 0; k < 2; k++) {
                    if (p + 2 > end) return -1;
                    p += 2 + (size_t)(d[p] << 8 | d[p + 1]);
                }
                break;
            default: return -1;
        }
    }
    return p == *after ? 0 : -1;
}

static long receive_maximum = 65535;

static size_t mqtt_parse(conn_t *c, const char *data, size_t n, double t) {
    const unsigned char *d = (const unsigned char *)data;
    size_t at = 0;
    reply.len = 0;
    while (n - at >= 2) {
        size_t len, start;
        int got = mqtt_read_varint(d, n, at + 1, &len, &start);
        if (got < 0) {
            fail(c, "malformed remaining length");
            return (size_t)-1;
        }
        if (!got || start + len > n) break;
        size_t end = start + len;
        int kind = d[at] >> 4, flags = d[at] & 0x0F;
        at = end;
        if (kind == 3) { /* PUBLISH */
            size_t p = start + 2 + (size_t)(d[start] << 8 | d[start + 1]);
            if (flags & 0x06) {
                unsigned char ack[4] = {0x40, 0x02, d[p], d[p + 1]};
                buf_add(&reply, ack, 4);
                p += 2;
            }
            size_t skip;
            if (mqtt_read_varint(d, end, p, &skip, &p) != 1) {
                fail(c, "malformed PUBLISH");
                return (size_t)-1;
            }
            p += skip;
            /* the payload: "<stamp> <seq> xxx" */
            char text[64];
            size_t m = end - p < 63 ? end - p : 63;
            memcpy(text, d + p, m);
            text[m] = 0;
            char *rest;
            double sent = strtod(text, &rest);
            char *seq = rest + (*rest == ' ');
            size_t seq_n = strcspn(seq, " ");
            received(seq, seq_n, sent, t);
        } else if (kind == 2 && c->state == HELLO) { /* CONNACK */
            if (len < 2 || d[start + 1]) {
                char why[40];
                snprintf(why, sizeof why, "CONNACK 0x%02x", len < 2 ? 0xFF : d[start + 1]);
                fail(c, why);
                return (size_t)-1;
            }
            size_t after;
            if (len > 2) mqtt_properties(d, start + 2, end, &after, &receive_maximum);
            if (!subscribe) {
                serve(c, t);
                continue;
            }
            char id[200], topic[300];
            mqtt_client_id(c, id, sizeof id);
            int tn = snprintf(topic, sizeof topic, "aoi/%s/chat", id);
            buf_t body = {0};
            buf_add(&body, "\x00\x01\x00", 3); /* packet id 1, no properties */
            mqtt_string(&body, topic, (size_t)tn);
            buf_add(&body, "\x01", 1); /* QoS 1 */
            mqtt_packet(&reply, 0x82, &body);
            buf_free(&body);
            c->state = SUBSCRIBING;
        } else if (kind == 9 && c->state == SUBSCRIBING) { /* SUBACK */
            size_t after;
            if (len < 3 || mqtt_properties(d, start + 2, end, &after, NULL) < 0 ||
                end - after != 1 || d[after] != 1) {
                fail(c, "SUBACK refused");
                return (size_t)-1;
            }
            serve(c, t);
        } else if (kind == 14) { /* DISCONNECT */
            char why[40];
            snprintf(why, sizeof why, "DISCONNECT 0x%02x", len ? d[start] : 0);
            fail(c, why);
            return (size_t)-1;
        } else if (kind != 13) { /* PINGRESP is fine */
            char why[40];
            snprintf(why, sizeof why, "unexpected packet type %d", kind);
            fail(c, why);
            return (size_t)-1;
        }
    }
    if (reply.len && conn_send(c, reply.data, reply.len) < 0) {
        fail(c, "send failed");
        return (size_t)-1;
    }
    return at;
}

/* The clients' loop ---------------------------------------------------------------------- */

static void buf_counts(buf_t *b) {
    buf_printf(b,
               "\"acked\":%ld,\"acked_in_window\":%ld,\"distinct\":%zu,\"duplicates\":%ld,"
               "\"sessions_lost\":%ld",
               acked, acked_in_window, set_size, duplicates, lost);
}

static buf_t line;

static void clients_command(char *text) {
    double a, b;
    if (sscanf(text, "window %lf %lf", &a, &b) == 2) {
        window_start = a;
        window_end = b;
    } else if (strncmp(text, "stats", 5) == 0) {
        buf_add(&line, "{\"event\":\"stats\",", 17);
        buf_counts(&line);
        buf_add(&line, "}", 1);
        emit(&line);
    }
}

static void connect_next(double t) {
    while (next_to_connect < n_conns && (storm_at || handshaking < HANDSHAKES_AT_ONCE)) {
        conn_t *c = &conns[next_to_connect++];
        handshaking++;
        c->began = storm_at ? storm_at : t;
        if (c->fd < 0) c->fd = open_socket(c->source);
        if (c->fd < 0 || start_connect(c) < 0) {
            char why[80];
            snprintf(why, sizeof why, "connect: %s", strerror(errno));
            if (c->fd >= 0) close(c->fd);
            c->state = DEAD;
            live--;
            failed++;
            handshaking--;
            count_error(why);
        }
    }
}

/* epoll_wait with a timeout in seconds, to the microsecond (a paced pusher's next push) */
static int wait_events(struct epoll_event *events, double seconds) {
    if (seconds < 0) seconds = 0;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    int k = epoll_pwait2(poller, events, 1024, &ts, NULL);
    return k < 0 && errno == EINTR ? 0 : k;
}

static void sleep_until(double t) {
    double wait = t - now();
    if (wait <= 0) return;
    struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

static int run_clients(void) {
    double started = now(), timeout = number("--timeout", 60);
    n_conns = (long)number("--count", 0);
    first_client = (long)number("--first", 0);
    record = flag("--record");
    subscribe = !flag("--no-subscribe");
    storm_at = number("--at", 0);
    conns = calloc((size_t)n_conns + 1, sizeof *conns);
    durations = calloc((size_t)n_conns + 1, sizeof *durations);
    if (!conns || !durations) die("out of memory");
    live = n_conns;
    for (long i = 0; i < n_conns; i++) {
        conn_t *c = &conns[i];
        c->fd = -1;
        c->index = first_client + i;
        c->source = n_sources ? sources[(first_client + i) % n_sources] : NULL;
        for (int k = 0; k < 4; k++) c->mask[k] = (unsigned char)rand();
        if (storm_at) c->fd = open_socket(c->source); /* prepared before the storm */
    }
    if (storm_at) {
        buf_add(&line, "{\"event\":\"prepared\"}", 20);
        emit(&line);
        sleep_until(storm_at);
    }
    connect_next(now());
    struct epoll_event events[1024];
    int ready_sent = 0;
    double next_check = now() + 0.1, next_ping = now() + MQTT_KEEPALIVE_S / 2;
    while (!stdin_closed || !ready_sent) {
        int k = epoll_wait(poller, events, 1024, 100);
        double t = now();
        for (int i = 0; i < k; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c) {
                read_commands(clients_command);
                continue;
            }
            if (c->state == DEAD) continue;
            if (c->state == CONNECTING) {
                int code = 0;
                socklen_t size = sizeof code;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &code, &size);
                if (code || events[i].events & (EPOLLERR | EPOLLHUP)) {
                    char why[80];
                    snprintf(why, sizeof why, "connect: %s", code ? strerror(code) : "hang-up");
                    fail(c, why);
                    continue;
                }
                watch(c, EPOLLIN, EPOLL_CTL_MOD);
                if (mqtt)
                    mqtt_connected(c);
                else
                    aoi_connected(c);
                continue;
            }
            if (events[i].events & EPOLLOUT && c->out.len && conn_flush(c) < 0) {
                fail(c, "send failed");
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                const char *why = NULL;
                if (conn_read(c, mqtt ? mqtt_parse : aoi_parse, &why) < 0 && why) fail(c, why);
            }
        }
        connect_next(t);
        if (handshaking && t >= next_check) { /* sessions not served in time */
            next_check = t + 0.1;
            for (long i = 0; i < next_to_connect; i++) {
                conn_t *c = &conns[i];
                if (c->state != DEAD && c->state != SERVED && t - c->began > timeout)
                    fail(c, "timeout");
            }
        }
        if (mqtt && t >= next_ping) {
            next_ping = t + MQTT_KEEPALIVE_S / 2;
            for (long i = 0; i < n_conns; i++)
                if (conns[i].state == SERVED) conn_send(&conns[i], "\xc0\x00", 2);
        }
        if (!ready_sent && served + failed == n_conns) {
            ready_sent = 1;
            buf_add(&line, "{\"event\":\"ready\",\"tokens\":[", 27);
            int comma = 0;
            for (long i = 0; i < n_conns; i++) {
                if (conns[i].state != SERVED || !conns[i].token) continue;
                if (comma++) buf_add(&line, ",", 1);
                const char *token = arena.data + conns[i].token - 1;
                buf_json_string(&line, token, strlen(token));
            }
            buf_printf(&line, "],\"connected\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"errors\":", served,
                       failed, t - started);
            buf_errors(&line);
            buf_add(&line, ",\"durations\":[", 14);
            for (long i = 0; i < n_durations; i++)
                buf_printf(&line, i ? ",%.6f" : "%.6f", durations[i]);
            buf_printf(&line, "],\"done\":%.6f}", t);
            emit(&line);
        }
    }
    if (mqtt) /* end the sessions (session expiry 0), as a client leaving for good does */
        for (long i = 0; i < n_conns; i++)
            if (conns[i].state == SERVED) conn_send(&conns[i], "\xe0\x07\x00\x05\x11\x00\x00\x00\x00", 9);
    buf_add(&line, "{\"event\":\"done\",", 16);
    buf_counts(&line);
    buf_add(&line, ",\"receipts\":", 12);
    if (record)
        buf_stamps(&line, &receipts, 1);
    else
        buf_add(&line, "null", 4);
    buf_add(&line, "}", 1);
    emit(&line);
    return 0;
}

/* --- the pushers: AOI server apps or an MQTT publisher ----------------------------------- */

static double rate, begin_at;
static long push_limit; /* closed loop: stop after this many (0: no limit) */
static long pushes_sent, answers, accepted_in_window, late, lost_connections, in_flight;
static long statuses[1000];
static char **targets; /* AOI: tokens; MQTT: topics */
static long n_targets;
static const char *key;
static int payload_bytes;
static long batch_size; /* AOI: notifications per request; above 1, POST /v1/push batches */
static long window_slots; /* MQTT: publishes in flight at most */
static stamps_t accepted; /* id -> accepted at */
static double *round_trips, *mqtt_sent_at;
static size_t n_round_trips, cap_round_trips;
static long *seq_of_packet; /* MQTT: packet id -> sequence number */

static int more(void) { return !push_limit || pushes_sent < push_limit; }

static void answered(int status, const char *id, size_t id_n, double sent_at, double t) {
    statuses[status >= 0 && status < 1000 ? status : 999]++;
    answers++;
    if (window_start <= t && t < window_end) {
        accepted_in_window += status == 201 || (mqtt && status == 0);
        if (record) {
            round_trips = grow(round_trips, n_round_trips, &cap_round_trips, sizeof *round_trips);
            round_trips[n_round_trips++] = t - sent_at;
            if ((status == 201 || (mqtt && status == 0)) && id_n) {
                stamp(&accepted, keep(id, id_n), t, 0);
            }
        }
    }
}

/* AOI-3: POST /v1/push/<token> on keep-alive connections, one push in flight each */

static void aoi_push(conn_t *c, double t) {
    static const char pads[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    static buf_t body, b;
    int pad = payload_bytes - 18 > 0 ? payload_bytes - 18 : 0;
    if (pad > 1900) pad = 1900;
    long n = batch_size > 1 ? batch_size : 1;
    if (push_limit && push_limit - pushes_sent < n) n = push_limit - pushes_sent;
    body.len = b.len = 0;
    const char *token = targets[pushes_sent % n_targets];
    if (batch_size > 1) {
        buf_add(&body, "{\"notifications\":[", 18);
        for (long i = 0; i < n; i++)
            buf_printf(&body, "%s{\"token\":\"%s\",\"payload\":\"%.6f %.*s\",\"ttl_s\":600}",
                       i ? "," : "", targets[(pushes_sent + i) % n_targets], t, pad, pads);
        buf_add(&body, "]}", 2);
        buf_printf(&b, "POST /v1/push HTTP/1.1\r\n");
    } else {
        buf_printf(&body, "{\"payload\":\"%.6f %.*s\",\"ttl_s\":600}", t, pad, pads);
        buf_printf(&b, "POST /v1/push/%s HTTP/1.1\r\n", token);
    }
    buf_printf(&b, "Host: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n", host_header, key, body.len);
    buf_add(&b, body.data, body.len);
    pushes_sent += n;
    c->busy = 1;
    c->pushes = n;
    c->sent_at = t;
    in_flight++;
    if (conn_send(c, b.data, b.len) < 0) {
        lost_connections++;
        in_flight--;
        conn_close(c);
    }
}

static const char *const ID_KEY[] = {"id"};

static const char *const RESULTS_KEY[] = {"results"};
static const char *const RESULT_KEYS[] = {"status", "id"};

/* A batch's 200: each item of its results, as the answer of one push (a result missing or
 * unreadable counts as status 0) */
static void batch_answered(conn_t *c, const char *body, size_t n, double t) {
    span_t results = {0};
    long seen = 0;
    if (json_fields(body, n, RESULTS_KEY, &results, 1) == 0 && results.n && results.p[0] == '[') {
        const char *p = results.p + 1, *e = results.p + results.n;
        while ((p = skip_ws(p, e)) < e && *p != ']' && seen < c->pushes) {
            const char *after = skip_value(p, e);
            if (!after) break;
            span_t field[2];
            int status = 0;
            if (json_fields(p, (size_t)(after - p), RESULT_KEYS, field, 2) == 0 && field[0].n)
                status = atoi(field[0].p);
            int with_id = status == 201 && record && is_string(field[1]);
            answered(status, with_id ? field[1].p + 1 : NULL, with_id ? field[1].n - 2 : 0, c->sent_at, t);
            seen++;
            p = skip_ws(after, e);
            if (p < e && *p == ',') p++;
        }
    }
    for (; seen < c->pushes; seen++) answered(0, NULL, 0, c->sent_at, t);
}

static size_t http_parse(conn_t *c, const char *d, size_t n, double t) {
    size_t at = 0;
    while (at < n) {
        const char *end = memmem(d + at, n - at, "\r\n\r\n", 4);
        if (!end) break;
        size_t head_n = (size_t)(end - (d + at));
        long length = -1;
        for (const char *p = d + at; p < end; p++) {
            if ((*p == 'c' || *p == 'C') && (size_t)(end - p) > 15 &&
                strncasecmp(p, "content-length:", 15) == 0 && (p == d + at || p[-1] == '\n')) {
                length = strtol(p + 15, NULL, 10);
                break;
            }
        }
        if (length < 0) {
            count_error("response without content-length");
            return (size_t)-1;
        }
        if (n - at < head_n + 4 + (size_t)length) break;
        int status = head_n > 12 ? atoi(d + at + 9) : 0;
        const char *body = end + 4;
        span_t id = {0};
        in_flight--;
        c->busy = 0;
        if (batch_size > 1 && status == 200) {
            batch_answered(c, body, (size_t)length, t);
        } else if (batch_size > 1) { /* the batch refused as a whole: each push of it */
            for (long i = 0; i < c->pushes; i++) answered(status, NULL, 0, c->sent_at, t);
        } else {
            if (status == 201 && record) json_fields(body, (size_t)length, ID_KEY, &id, 1);
            answered(status, is_string(id) ? id.p + 1 : NULL, is_string(id) ? id.n - 2 : 0, c->sent_at, t);
        }
        at += head_n + 4 + (size_t)length;
        if (rate == 0 && t < end_at && more()) aoi_push(c, t);
    }
    return at;
}

/* MQTT: QoS 1 PUBLISH to the subscribers' topics, --window in flight */

static buf_t publishes;

static void mqtt_publish(conn_t *c, long count, double t) {
    static const unsigned char expiry[6] = {0x05, 0x02, 0x00, 0x00, 0x02, 0x58}; /* 600 s */
    publishes.len = 0;
    for (long i = 0; i < count; i++) {
        long seq = pushes_sent++;
        unsigned packet_id = (unsigned)(seq % 65535 + 1);
        seq_of_packet[packet_id] = seq;
        char payload[256];
        int pn = snprintf(payload, sizeof payload, "%.6f %ld ", t, seq);
        int size = payload_bytes > pn ? payload_bytes : pn;
        if (size > 250) size = 250;
        memset(payload + pn, 'x', (size_t)(size - pn));
        const char *topic = targets[seq % n_targets];
        size_t tn = strlen(topic), body = 2 + tn + 2 + sizeof expiry + (size_t)size;
        buf_add(&publishes, "\x32", 1);
        mqtt_varint(&publishes, body);
        mqtt_string(&publishes, topic, tn);
        unsigned char pid[2] = {(unsigned char)(packet_id >> 8), (unsigned char)packet_id};
        buf_add(&publishes, pid, 2);
        buf_add(&publishes, expiry, sizeof expiry);
        buf_add(&publishes, payload, (size_t)size);
        mqtt_sent_at[packet_id] = t;
        in_flight++;
    }
    if (publishes.len && conn_send(c, publishes.data, publishes.len) < 0) {
        lost_connections++;
        conn_close(c);
    }
}

static size_t puback_parse(conn_t *c, const char *data, size_t n, double t) {
    const unsigned char *d = (const unsigned char *)data;
    size_t at = 0;
    if (c->state != SERVED) { /* CONNACK of the publisher */
        size_t used = mqtt_parse(c, data, n, t);
        return used;
    }
    while (n - at >= 2) {
        size_t len, start;
        int got = mqtt_read_varint(d, n, at + 1, &len, &start);
        if (got < 0) return (size_t)-1;
        if (!got || start + len > n) break;
        int kind = d[at] >> 4;
        at = start + len;
        if (kind != 4 || len < 2) continue; /* PINGRESP and the like */
        unsigned packet_id = (unsigned)(d[start] << 8 | d[start + 1]);
        int reason = len > 2 ? d[start + 2] : 0;
        char id[24];
        int idn = snprintf(id, sizeof id, "%ld", seq_of_packet[packet_id]);
        in_flight--;
        answered(reason, id, (size_t)idn, mqtt_sent_at[packet_id], t);
    }
    if (rate == 0 && t < end_at && more()) {
        long free_slots = window_slots - in_flight;
        if (push_limit && free_slots > push_limit - pushes_sent) free_slots = push_limit - pushes_sent;
        if (free_slots > 0) mqtt_publish(c, free_slots, t);
    }
    return at;
}

static void pusher_command(char *text) {
    double t;
    if (sscanf(text, "end %lf", &t) == 1) end_at = t;
}

static void read_lines_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    char text[1024];
    long cap = 1024;
    targets = malloc((size_t)cap * sizeof *targets);
    while (fgets(text, sizeof text, f)) {
        text[strcspn(text, "\r\n")] = 0;
        if (!*text) continue;
        if (n_targets == cap) targets = realloc(targets, (size_t)(cap *= 2) * sizeof *targets);
        targets[n_targets++] = strdup(text);
    }
    fclose(f);
    if (!n_targets) {
        fprintf(stderr, "loadgen: %s lists no target\n", path);
        exit(2);
    }
}

static int run_pusher(void) {
    rate = number("--rate", 0);
    begin_at = number("--begin", 0);
    window_start = number("--start", 0);
    window_end = end_at = number("--end", 0);
    push_limit = (long)number("--count", 0);
    payload_bytes = (int)number("--payload-bytes", 64);
    batch_size = (long)number("--batch", 1);
    record = flag("--record");
    subscribe = 0;
    read_lines_file(option("--targets", ""));
    if (mqtt) {
        n_conns = 1;
        seq_of_packet = calloc(65536, sizeof *seq_of_packet);
        mqtt_sent_at = calloc(65536, sizeof *mqtt_sent_at);
    } else {
        n_conns = (long)number("--connections", 32);
        key = option("--key", "");
    }
    conns = calloc((size_t)n_conns, sizeof *conns);
    durations = calloc((size_t)n_conns + 1, sizeof *durations);
    live = n_conns;
    for (long i = 0; i < n_conns; i++) { /* connected (and MQTT: CONNACK) before --begin */
        conn_t *c = &conns[i];
        c->index = i;
        c->fd = open_socket(NULL);
        if (c->fd < 0 || start_connect(c) < 0) die("connect");
    }
    struct epoll_event events[1024];
    long up = 0;
    double deadline = now() + 30;
    while (up < n_conns) {
        int k = epoll_wait(poller, events, 1024, 100);
        if (now() > deadline) die("connecting the pusher");
        for (int i = 0; i < k; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c || c->state == DEAD) continue;
            if (c->state == CONNECTING) {
                int code = 0;
                socklen_t size = sizeof code;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &code, &size);
                if (code) {
                    errno = code;
                    die("connect");
                }
                watch(c, EPOLLIN, EPOLL_CTL_MOD);
                if (mqtt) {
                    mqtt_connected(c);
                } else {
                    c->state = SERVED;
                    up++;
                }
            } else {
                const char *why = NULL;
                if (conn_read(c, mqtt_parse, &why) < 0) {
                    fprintf(stderr, "loadgen: publisher: %s; %s\n", why ? why : "refused",
                            error_kinds ? errors[0].why : "");
                    exit(2);
                }
                if (c->state == SERVED) up++;
            }
        }
    }
    window_slots = receive_maximum;
    if (mqtt && number("--window", 0) > 0 && number("--window", 0) < window_slots)
        window_slots = (long)number("--window", 0);
    watch_stdin();
    sleep_until(begin_at);
    double t = now(), paced_from = t, stop_at = 0;
    long scheduled = 0;
    if (rate == 0) {
        if (mqtt)
            mqtt_publish(&conns[0], push_limit && push_limit < window_slots ? push_limit : window_slots, t);
        else
            for (long i = 0; i < n_conns && more(); i++) aoi_push(&conns[i], t);
    }
    for (;;) {
        t = now();
        if (rate > 0 && t < end_at) { /* the pushes due by now, on free slots; else late */
            long due = (long)((t - paced_from) * rate) + 1 - scheduled;
            for (long i = 0; i < due; i++) {
                scheduled++;
                if (mqtt) {
                    if (in_flight < window_slots && conns[0].state != DEAD)
                        mqtt_publish(&conns[0], 1, t);
                    else
                        late++;
                    continue;
                }
                conn_t *c = NULL;
                for (long j = 0; j < n_conns; j++)
                    if (conns[j].state != DEAD && !conns[j].busy) {
                        c = &conns[j];
                        break;
                    }
                if (c)
                    aoi_push(c, t);
                else
                    late++;
            }
        }
        int finished = push_limit && answers >= push_limit;
        if (t >= end_at || finished || !live) {
            if (!stop_at) stop_at = t;
            if (!in_flight || !live || t - stop_at > (finished ? 0 : 2.0)) break;
        }
        double wait = 0.05;
        if (rate > 0 && t < end_at) wait = paced_from + (double)scheduled / rate - t;
        int k = wait_events(events, wait);
        t = now();
        for (int i = 0; i < k; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c) {
                read_commands(pusher_command);
                continue;
            }
            if (c->state == DEAD) continue;
            if (events[i].events & EPOLLOUT && c->out.len && conn_flush(c) < 0) {
                lost_connections++;
                conn_close(c);
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                const char *why = NULL;
                int busy = c->busy;
                if (conn_read(c, mqtt ? puback_parse : http_parse, &why) < 0) {
                    lost_connections++;
                    if (busy && c->state != DEAD) in_flight--;
                    conn_close(c);
                }
            }
        }
    }
    buf_printf(&line, "{\"event\":\"done\",\"sent\":%ld,\"statuses\":{", pushes_sent);
    int comma = 0;
    for (int s = 0; s < 1000; s++)
        if (statuses[s]) buf_printf(&line, comma++ ? ",\"%d\":%ld" : "\"%d\":%ld", s, statuses[s]);
    buf_printf(&line, "},\"accepted_in_window\":%ld,\"late\":%ld,\"lost_connections\":%ld,"
                      "\"in_flight\":%ld,\"window\":%ld,\"accepted\":",
               accepted_in_window, late, lost_connections, in_flight, mqtt ? window_slots : n_conns);
    if (!record) {
        buf_add(&line, "null,\"round_trip_ms\":null}", 26);
    } else {
        buf_stamps(&line, &accepted, 0);
        buf_add(&line, ",\"round_trip_ms\":", 17);
        buf_percentiles(&line, round_trips, n_round_trips);
        buf_add(&line, "}", 1);
    }
    emit(&line);
    return 0;
}

/* --- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    argc_ = argc;
    argv_ = argv;
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen aoi-clients|aoi-pusher|mqtt-clients|mqtt-pusher --option value ...\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    srand((unsigned)(getpid() ^ (unsigned)(now() * 1e6)));
    read_area = malloc(READ_SIZE);
    poller = epoll_create1(EPOLL_CLOEXEC);
    if (!read_area || poller < 0) die("start");
    const char *role = argv[1];
    mqtt = strncmp(role, "mqtt-", 5) == 0;
    const char *host = option("--host", "127.0.0.1");
    int port = (int)number("--port", 0);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        return 2;
    }
    snprintf(host_header, sizeof host_header, "%s:%d", host, port);
    prefix = option("--prefix", mqtt ? "" : "dev-");
    secret_prefix = option("--secret-prefix", "secret-");
    app_id = option("--app-id", "com.example.bench");
    path_ = option("--path", "/aoi");
    username = option("--username", "");
    password = option("--password", "");
    char *list = strdup(option("--sources", ""));
    for (char *s = strtok(list, ","); s && n_sources < 64; s = strtok(NULL, ",")) sources[n_sources++] = s;
    if (strcmp(role, "aoi-clients") == 0 || strcmp(role, "mqtt-clients") == 0) {
        watch_stdin();
        return run_clients();
    }
    if (strcmp(role, "aoi-pusher") == 0 || strcmp(role, "mqtt-pusher") == 0) return run_pusher();
    fprintf(stderr, "loadgen: unknown role %s\n", role);
    return 2;
}
