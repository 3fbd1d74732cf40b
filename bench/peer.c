/* Load generator for the xcon benchmark: a fast stand-in for qemu socket netdevs.
 *
 * One thread, epoll, any number of endpoints.  A stream endpoint (TCP or unix
 * socket) either listens like qemu (one client at a time, listens again when it
 * leaves) or connects (like qemu connect=), and carries length-prefixed frames.
 * A datagram endpoint (UDP, packet socket, tap) carries one frame per datagram
 * or write, without the length.  It sends frames as fast as the socket takes
 * them or at a set rate, and/or receives and checks them.
 *
 * Every frame carries, after its Ethernet header (and 802.1Q tag if any):
 *   u32 magic 'XCB1', u32 stream id, u64 sequence, u64 CLOCK_MONOTONIC ns (0 = not stamped)
 * Saturated senders stamp the first frame of every write; paced senders stamp
 * every frame.  Receivers record now - stamp (same host, same clock) and count
 * sequence gaps per (endpoint, stream).
 *
 * usage: peer [options] EP...
 *   EP       l:HOST:PORT:ROLE | c:HOST:PORT:ROLE | L:HOST:PORT0:COUNT:ROLE  (ROLE s, r or sr)
 *            lu:PATH:ROLE | cu:PATH:ROLE        unix stream socket: listen on / connect to PATH
 *            d:LHOST:LPORT:RHOST:RPORT:ROLE     UDP bound to LHOST:LPORT, sending to RHOST:RPORT
 *                                               (RPORT 0: receive only), one frame per datagram
 *            p:IFNAME:ROLE                      packet socket on IFNAME (frames without the
 *                                               magic, the device's own traffic, are ignored)
 *            t:TAPNAME:ROLE                     the existing tap TAPNAME, one frame per write
 *   -s SIZE  frame size in bytes, or 0 for IMIX (64/576/1500, 7:4:1)   (default 1500)
 *   -r FPS   total paced rate over all sending endpoints, taken in turn (default 0: saturate)
 *   -v VID   send 802.1Q-tagged frames (tag included in SIZE)
 *   -i ID    first stream id (endpoint k sends stream ID+k)
 *   -o FILE  where to write the recorded delays (int64 ns, native endian)
 *   -b KIB   per-endpoint send buffer (default 256, 64 with more than 8 endpoints)
 *   -t SEC   exit after SEC seconds whatever happens (default 900)
 * stdout (one line each, flushed):  ready NS | up N NS | down N NS | first NS |
 *   snap NS FRAMES BYTES LOST REORDER BAD TAGGED NDELAYS ACTIVE_EPS SOCKDROPS
 *   (SOCKDROPS: datagrams the kernel dropped at this peer's full receive queues)
 * SIGUSR1 toggles delay recording (on: cleared; off: written to -o), then prints a snap.
 * SIGTERM prints a snap and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/sock_diag.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x58434231u
#define NSLOT 8
#define MAXDELAYS (4u << 20)
#define DBATCH 64                /* datagrams per recvmmsg/sendmmsg */
#define DSLOT 65536              /* room per received datagram */
#define DGRAM_SOCKBUF (4 << 20)  /* socket buffers of datagram endpoints */
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

enum kind { K_TCP, K_UNIX, K_UDP, K_PKT, K_TAP };

struct slot { uint32_t stream; int used; uint64_t last; };

struct ep {
    int idx, kind, listen_mode, role, lfd, fd;
    char host[64];
    int port;
    char path[108];              /* unix path, interface or tap name */
    char rhost[64]; int rport;   /* UDP: where datagrams go */
    unsigned char *sbuf; size_t soff, slen; uint64_t seq; size_t cursor;
    unsigned char *rbuf; size_t rlen, rcap;
    uint64_t frames, frames_snap;
    struct slot slots[NSLOT];
};

static struct ep *eps; static int neps;
static unsigned char *tmpl; static size_t tmpl_len; static size_t *foff; static size_t nfr;
static size_t bufcap; static int vid = -1; static int fsize = 1500; static double rate;
static uint32_t stream0; static const char *outpath;
static int epfd, tfd = -1; static int nsend;
static volatile sig_atomic_t got_usr1, got_term;
static uint64_t tot_frames, tot_bytes, lost, reorder, bad, tagged_n, first_seen;
static int64_t *delays; static size_t ndel; static int recording;
static uint64_t t_start_pace; static uint64_t paced_sent; static int pace_next;
static int nup;
static uint64_t send_err;

static uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}
static void die(const char *m) { perror(m); exit(1); }
static void on_usr1(int s) { (void)s; got_usr1 = 1; }
static void on_term(int s) { (void)s; got_term = 1; }

static int hdr_len(void) { return vid >= 0 ? 18 : 14; }

static void build_template(void) {
    static const int imix[12] = {64, 64, 64, 64, 64, 64, 64, 576, 576, 576, 576, 1500};
    size_t cap = bufcap, pos = 0, n = 0, k = 0;
    tmpl = malloc(cap); foff = malloc(sizeof(size_t) * (cap / 46 + 2));
    if (!tmpl || !foff) die("malloc");
    for (;;) {
        int sz = fsize ? fsize : imix[k++ % 12];
        if (pos + 4 + sz > cap) break;
        unsigned char *f = tmpl + pos;
        uint32_t be = htonl(sz); memcpy(f, &be, 4);
        unsigned char *e = f + 4;
        memset(e, 0, sz);
        static const unsigned char dst[6] = {0x52, 0x54, 0, 0, 0, 2}, src[6] = {0x52, 0x54, 0, 0, 0, 1};
        memcpy(e, dst, 6); memcpy(e + 6, src, 6);
        int h = 12;
        if (vid >= 0) { e[12] = 0x81; e[13] = 0; e[14] = (vid >> 8) & 0x0f; e[15] = vid & 0xff; h = 16; }
        e[h] = 0x88; e[h + 1] = 0xb5;
        uint32_t m = MAGIC; memcpy(e + h + 2, &m, 4);
        for (int i = h + 26; i < sz; i++) e[i] = (unsigned char)i;
        foff[n++] = pos; pos += 4 + sz;
    }
    if (!n) { fprintf(stderr, "frame does not fit the buffer\n"); exit(1); }
    nfr = n; tmpl_len = pos;
}

static inline void stamp(unsigned char *f, uint32_t stream, uint64_t seq, uint64_t ts) {
    unsigned char *p = f + 4 + hdr_len() + 4;
    memcpy(p, &stream, 4); memcpy(p + 4, &seq, 8); memcpy(p + 12, &ts, 8);
}

static void set_nb(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void ep_mod(struct ep *e) {
    if (e->fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)e->idx << 1};
    if ((e->role & 1) && (rate <= 0 || e->slen > e->soff)) ev.events |= EPOLLOUT;
    epoll_ctl(epfd, EPOLL_CTL_MOD, e->fd, &ev);
}

static int is_dgram(const struct ep *e) { return e->kind >= K_UDP; }

static void conn_up(struct ep *e, int fd) {
    int one = 1;
    if (e->kind == K_TCP) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nb(fd);
    e->fd = fd; e->rlen = 0; e->soff = e->slen = 0;
    for (int i = 0; i < NSLOT; i++) e->slots[i].used = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)e->idx << 1};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    ep_mod(e);
    nup++;
    printf("up %d %llu\n", nup, (unsigned long long)now_ns()); fflush(stdout);
}

static void conn_down(struct ep *e) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
    close(e->fd); e->fd = -1; nup--;
    printf("down %d %llu\n", nup, (unsigned long long)now_ns()); fflush(stdout);
    if (!e->listen_mode) { got_term = 1; }
}

static struct sockaddr_in resolve(const char *host, int port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); exit(1); }
    return sa;
}

static socklen_t ep_addr(struct ep *e, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    if (e->kind == K_UNIX) {
        struct sockaddr_un *su = (struct sockaddr_un *)ss;
        su->sun_family = AF_UNIX;
        snprintf(su->sun_path, sizeof su->sun_path, "%s", e->path);
        return sizeof *su;
    }
    struct sockaddr_in sa = resolve(e->host, e->port);
    memcpy(ss, &sa, sizeof sa);
    return sizeof sa;
}

static void big_buffers(int fd) {
    int v = DGRAM_SOCKBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

static int dgram_open(struct ep *e) {
    int fd = -1, one = 1;
    if (e->kind == K_UDP) {
        struct sockaddr_in la = resolve(e->host, e->port);
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        big_buffers(fd);
        if (bind(fd, (struct sockaddr *)&la, sizeof la) < 0) {
            fprintf(stderr, "bind udp %s:%d: %s\n", e->host, e->port, strerror(errno)); exit(1);
        }
        if (e->rport) {
            struct sockaddr_in ra = resolve(e->rhost, e->rport);
            if (connect(fd, (struct sockaddr *)&ra, sizeof ra) < 0) die("connect udp");
        }
    } else if (e->kind == K_PKT) {
        fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
        if (fd < 0) die("packet socket");
        big_buffers(fd);
        setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
        struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                                 .sll_ifindex = (int)if_nametoindex(e->path)};
        if (!ll.sll_ifindex || bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) {
            fprintf(stderr, "packet socket on %s: %s\n", e->path, strerror(errno)); exit(1);
        }
    } else {
        struct ifreq ifr = {0};
        fd = open("/dev/net/tun", O_RDWR);
        if (fd < 0) die("/dev/net/tun");
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
        memcpy(ifr.ifr_name, e->path, strnlen(e->path, IFNAMSIZ - 1));
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) { fprintf(stderr, "tap %s: %s\n", e->path, strerror(errno)); exit(1); }
    }
    return fd;
}

static void ep_open(struct ep *e) {
    if (is_dgram(e)) { conn_up(e, dgram_open(e)); return; }
    struct sockaddr_storage ss;
    socklen_t sl = ep_addr(e, &ss);
    int fam = e->kind == K_UNIX ? AF_UNIX : AF_INET;
    const char *what = e->kind == K_UNIX ? e->path : e->host;
    if (e->listen_mode) {
        int fd = socket(fam, SOCK_STREAM, 0), one = 1;
        if (e->kind == K_UNIX) unlink(e->path);
        else setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
            fprintf(stderr, "bind %s:%d: %s\n", what, e->port, strerror(errno)); exit(1);
        }
        if (listen(fd, 1) < 0) die("listen");
        set_nb(fd);
        e->lfd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)e->idx << 1) | 1};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    } else {
        for (int tries = 0;; tries++) {
            int fd = socket(fam, SOCK_STREAM, 0);
            if (connect(fd, (struct sockaddr *)&ss, sl) == 0) { conn_up(e, fd); break; }
            close(fd);
            if (tries > 500) { fprintf(stderr, "connect %s:%d: %s\n", what, e->port, strerror(errno)); exit(1); }
            usleep(10000);
        }
    }
}

static void do_accept(struct ep *e) {
    int fd = accept(e->lfd, NULL, NULL);
    if (fd < 0) return;
    if (e->fd >= 0) { close(fd); return; }
    conn_up(e, fd);
}

static void fill_saturated(struct ep *e) {
    uint32_t st = stream0 + e->idx;
    for (size_t i = 0; i < nfr; i++) stamp(e->sbuf + foff[i], st, e->seq++, 0);
    stamp(e->sbuf, st, e->seq - nfr, now_ns());
    e->soff = 0; e->slen = tmpl_len;
}

static void fill_paced(struct ep *e, uint64_t want) {
    uint32_t st = stream0 + e->idx;
    uint64_t ts = now_ns();
    size_t pos = 0;
    while (want) {
        size_t o = foff[e->cursor];
        size_t end = e->cursor + 1 < nfr ? foff[e->cursor + 1] : tmpl_len;
        size_t len = end - o;
        if (pos + len > bufcap) break;
        memcpy(e->sbuf + pos, tmpl + o, len);
        stamp(e->sbuf + pos, st, e->seq++, ts);
        pos += len; want--; paced_sent++;
        e->cursor = (e->cursor + 1) % nfr;
    }
    e->soff = 0; e->slen = pos;
}

static inline uint32_t frame_len(const unsigned char *p) { uint32_t be; memcpy(&be, p, 4); return ntohl(be); }

/* Datagram endpoints: one frame of the length-prefixed buffer per datagram or write. */
static void send_dgrams(struct ep *e) {
    struct mmsghdr mm[DBATCH]; struct iovec iov[DBATCH];
    for (int rounds = 0; rounds < 64; rounds++) {
        if (e->soff >= e->slen) {
            if (rate > 0) { e->soff = e->slen = 0; ep_mod(e); return; }
            fill_saturated(e);
        }
        if (e->kind == K_TAP) {
            uint32_t len = frame_len(e->sbuf + e->soff);
            if (write(e->fd, e->sbuf + e->soff + 4, len) < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                if (errno == EBADFD) { conn_down(e); return; }
                send_err++;
            }
            e->soff += 4 + len;
            continue;
        }
        int k = 0;
        for (size_t o = e->soff; k < DBATCH && o < e->slen; k++) {
            uint32_t len = frame_len(e->sbuf + o);
            iov[k] = (struct iovec){e->sbuf + o + 4, len};
            mm[k].msg_hdr = (struct msghdr){.msg_iov = &iov[k], .msg_iovlen = 1};
            o += 4 + len;
        }
        int n = sendmmsg(e->fd, mm, k, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            if (errno == ECONNREFUSED) continue; /* an ICMP error of an earlier datagram */
            send_err++; n = 1;                   /* this one cannot go: skip it */
        }
        for (int i = 0; i < n; i++) e->soff += 4 + frame_len(e->sbuf + e->soff);
    }
}

static void do_send(struct ep *e) {
    if (is_dgram(e)) { send_dgrams(e); return; }
    for (int rounds = 0; rounds < 8; rounds++) {
        if (e->soff >= e->slen) {
            if (rate > 0) { e->soff = e->slen = 0; ep_mod(e); return; }
            fill_saturated(e);
        }
        ssize_t n = send(e->fd, e->sbuf + e->soff, e->slen - e->soff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            conn_down(e); return;
        }
        e->soff += n;
        if (e->soff < e->slen) return;
    }
}

static void pace_tick(void) {
    uint64_t t = now_ns();
    if (!t_start_pace) t_start_pace = t;
    uint64_t due = (uint64_t)((double)(t - t_start_pace) * rate / 1e9);
    if (due <= paced_sent) return;
    uint64_t owe = due - paced_sent;
    if (!nsend) return;
    uint64_t per = owe / nsend ? owe / nsend : 1;
    /* Round the endpoints from where the last tick stopped: at one frame per
     * tick every endpoint gets its share, not only the first. */
    int i = pace_next;
    for (int k = 0; k < neps && paced_sent < due; k++, i = (i + 1) % neps) {
        struct ep *e = &eps[i];
        if (!(e->role & 1) || e->fd < 0) continue;
        if (e->slen > e->soff) continue;
        fill_paced(e, per);
        do_send(e);
        if (e->fd >= 0) ep_mod(e);
    }
    pace_next = i;
    if (paced_sent < due && due - paced_sent > (uint64_t)(rate / 10 + 1)) paced_sent = due;
}

/* One received frame: count it, check its sequence, record its delay.  Frames
 * without the magic are counted as bad, or skipped when ``strict`` is 0 (a
 * packet socket also sees what the device itself sends and receives). */
static void count_frame(struct ep *e, const unsigned char *f, uint32_t len, uint64_t t, int strict) {
    int h = 14, tag = 0;
    if (len >= 14 && f[12] == 0x81 && f[13] == 0) { h = 18; tag = 1; }
    uint32_t m = 0;
    if (len >= (uint32_t)h + 24) memcpy(&m, f + h, 4);
    if (m != MAGIC && !strict) return;
    tot_frames++; tot_bytes += len; e->frames++; tagged_n += tag;
    if (!first_seen) { first_seen = t; printf("first %llu\n", (unsigned long long)t); fflush(stdout); }
    if (m == MAGIC) {
        uint32_t st; uint64_t seq, ts;
        memcpy(&st, f + h + 4, 4); memcpy(&seq, f + h + 8, 8); memcpy(&ts, f + h + 16, 8);
        struct slot *s = NULL;
        for (int i = 0; i < NSLOT; i++)
            if (e->slots[i].used && e->slots[i].stream == st) { s = &e->slots[i]; break; }
        if (!s)
            for (int i = 0; i < NSLOT; i++)
                if (!e->slots[i].used) { s = &e->slots[i]; s->used = 1; s->stream = st; s->last = seq - 1; break; }
        if (s) {
            if (seq > s->last + 1) lost += seq - s->last - 1;
            else if (seq <= s->last) reorder++;
            s->last = seq;
        }
        if (ts && recording && ndel < MAXDELAYS) delays[ndel++] = (int64_t)(t - ts);
    } else {
        bad++;
    }
}

static void parse_frames(struct ep *e, uint64_t t) {
    size_t p = 0;
    unsigned char *b = e->rbuf;
    while (e->rlen - p >= 4) {
        uint32_t len = frame_len(b + p);
        if (len > 69632) { fprintf(stderr, "bad length %u\n", len); exit(3); }
        if (e->rlen - p < 4 + (size_t)len) break;
        count_frame(e, b + p + 4, len, t, 1);
        p += 4 + len;
    }
    if (p) { memmove(b, b + p, e->rlen - p); e->rlen -= p; }
}

static void recv_dgrams(struct ep *e) {
    struct mmsghdr mm[DBATCH]; struct iovec iov[DBATCH];
    for (int rounds = 0; rounds < 16; rounds++) {
        int n;
        if (e->kind == K_TAP) {
            ssize_t r = read(e->fd, e->rbuf, DSLOT);
            n = r < 0 ? -1 : 1;
            mm[0].msg_len = r < 0 ? 0 : (unsigned)r;
        } else {
            for (int k = 0; k < DBATCH; k++) {
                iov[k] = (struct iovec){e->rbuf + (size_t)k * DSLOT, DSLOT};
                mm[k].msg_hdr = (struct msghdr){.msg_iov = &iov[k], .msg_iovlen = 1};
            }
            n = recvmmsg(e->fd, mm, DBATCH, MSG_DONTWAIT, NULL);
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED) return;
            if (errno == EBADFD || errno == ENETDOWN) { conn_down(e); return; }
            return;
        }
        uint64_t t = now_ns();
        if (e->role & 2)
            for (int k = 0; k < n; k++)
                count_frame(e, e->rbuf + (size_t)k * DSLOT, mm[k].msg_len, t, e->kind != K_PKT);
        if (e->kind != K_TAP && n < DBATCH) return;
    }
}

static void do_recv(struct ep *e) {
    if (is_dgram(e)) { recv_dgrams(e); return; }
    for (int rounds = 0; rounds < 4; rounds++) {
        ssize_t n = recv(e->fd, e->rbuf + e->rlen, e->rcap - e->rlen, 0);
        if (n == 0) { conn_down(e); return; }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            conn_down(e); return;
        }
        uint64_t t = now_ns();
        if (!first_seen) { first_seen = t; printf("first %llu\n", (unsigned long long)t); fflush(stdout); }
        if (e->role & 2) { e->rlen += n; parse_frames(e, t); }
        if ((size_t)n < e->rcap / 2) return;
    }
}

/* What the kernel dropped for want of room in the datagram endpoints' receive queues. */
static uint64_t sock_drops(void) {
    uint64_t n = 0;
    for (int i = 0; i < neps; i++) {
        uint32_t mi[SK_MEMINFO_VARS]; socklen_t l = sizeof mi;
        if (is_dgram(&eps[i]) && eps[i].kind != K_TAP && eps[i].fd >= 0 &&
            getsockopt(eps[i].fd, SOL_SOCKET, SO_MEMINFO, mi, &l) == 0 && l > SK_MEMINFO_DROPS * 4)
            n += mi[SK_MEMINFO_DROPS];
    }
    return n;
}

static void snap(void) {
    int active = 0;
    for (int i = 0; i < neps; i++) { if (eps[i].frames != eps[i].frames_snap) active++; eps[i].frames_snap = eps[i].frames; }
    printf("snap %llu %llu %llu %llu %llu %llu %llu %zu %d %llu\n", (unsigned long long)now_ns(),
           (unsigned long long)tot_frames, (unsigned long long)tot_bytes, (unsigned long long)lost,
           (unsigned long long)reorder, (unsigned long long)bad, (unsigned long long)tagged_n, ndel, active,
           (unsigned long long)sock_drops());
    fflush(stdout);
}

static void toggle_recording(void) {
    if (!recording) { ndel = 0; recording = 1; return; }
    recording = 0;
    if (outpath) {
        FILE *f = fopen(outpath, "wb");
        if (f) { fwrite(delays, sizeof(int64_t), ndel, f); fclose(f); }
    }
}

static struct ep *add_ep(int kind, int listen_mode, const char *host, int port, const char *role) {
    eps = realloc(eps, sizeof(struct ep) * (neps + 1));
    struct ep *e = &eps[neps];
    memset(e, 0, sizeof *e);
    e->idx = neps++; e->kind = kind; e->listen_mode = listen_mode; e->lfd = e->fd = -1;
    snprintf(e->host, sizeof e->host, "%s", host); e->port = port;
    e->role = (strchr(role, 's') ? 1 : 0) | (strchr(role, 'r') ? 2 : 0);
    return e;
}

/* lu:PATH:ROLE and cu:PATH:ROLE (a path may hold ':', the role is after the last one). */
static int add_unix(const char *arg) {
    const char *colon = strrchr(arg, ':');
    size_t plen = colon ? (size_t)(colon - arg) - 3 : 0;
    if (!colon || colon < arg + 3 || !plen || plen >= sizeof eps->path) return 0;
    struct ep *e = add_ep(K_UNIX, arg[0] == 'l', "", 0, colon + 1);
    memcpy(e->path, arg + 3, plen); e->path[plen] = 0;
    return 1;
}

int main(int argc, char **argv) {
    int opt, kib = 0, maxsec = 900;
    while ((opt = getopt(argc, argv, "s:r:v:i:o:b:t:")) != -1) {
        switch (opt) {
        case 's': fsize = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'v': vid = atoi(optarg); break;
        case 'i': stream0 = (uint32_t)atoi(optarg); break;
        case 'o': outpath = optarg; break;
        case 'b': kib = atoi(optarg); break;
        case 't': maxsec = atoi(optarg); break;
        default: fprintf(stderr, "bad option\n"); return 2;
        }
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_TIMERSLACK, 1UL);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1; sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_term; sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL);
    alarm(maxsec);
    for (int i = optind; i < argc; i++) {
        if (!strncmp(argv[i], "lu:", 3) || !strncmp(argv[i], "cu:", 3)) {
            if (!add_unix(argv[i])) { fprintf(stderr, "bad endpoint %s\n", argv[i]); return 2; }
            continue;
        }
        char buf[256]; snprintf(buf, sizeof buf, "%s", argv[i]);
        char *f[7]; int nf = 0;
        for (char *s = strtok(buf, ":"); s && nf < 7; s = strtok(NULL, ":")) f[nf++] = s;
        if (nf == 4 && !f[0][1] && (f[0][0] == 'l' || f[0][0] == 'c')) add_ep(K_TCP, f[0][0] == 'l', f[1], atoi(f[2]), f[3]);
        else if (nf == 5 && !strcmp(f[0], "L"))
            for (int k = 0; k < atoi(f[3]); k++) add_ep(K_TCP, 1, f[1], atoi(f[2]) + k, f[4]);
        else if (nf == 6 && !strcmp(f[0], "d")) {
            struct ep *e = add_ep(K_UDP, 0, f[1], atoi(f[2]), f[5]);
            snprintf(e->rhost, sizeof e->rhost, "%s", f[3]); e->rport = atoi(f[4]);
        } else if (nf == 3 && (!strcmp(f[0], "p") || !strcmp(f[0], "t")) && strlen(f[1]) < IFNAMSIZ)
            snprintf(add_ep(f[0][0] == 'p' ? K_PKT : K_TAP, 0, "", 0, f[2])->path, IFNAMSIZ, "%s", f[1]);
        else { fprintf(stderr, "bad endpoint %s\n", argv[i]); return 2; }
    }
    if (!neps) { fprintf(stderr, "no endpoints\n"); return 2; }
    if (fsize && (fsize < hdr_len() + 26 || fsize > 69632)) { fprintf(stderr, "bad size\n"); return 2; }
    bufcap = (size_t)(kib ? kib : (neps > 8 ? 64 : 256)) * 1024;
    if (bufcap < 2 * (69632 + 4)) bufcap = fsize > 16384 || !fsize ? 2 * (69632 + 4) : bufcap;
    if (fsize && bufcap < (size_t)fsize + 4) bufcap = fsize + 4;
    build_template();
    delays = malloc(sizeof(int64_t) * MAXDELAYS);
    epfd = epoll_create1(0);
    for (int i = 0; i < neps; i++) {
        struct ep *e = &eps[i];
        if (e->role & 1) {
            nsend++;
            e->sbuf = malloc(bufcap);
            memcpy(e->sbuf, tmpl, tmpl_len);
        }
        e->rcap = 2 * (69632 + 4) > bufcap ? 2 * (69632 + 4) : bufcap;
        if (is_dgram(e)) e->rcap = (size_t)DBATCH * DSLOT;
        e->rbuf = malloc(e->rcap);
        if (!e->rbuf || ((e->role & 1) && !e->sbuf)) die("malloc");
    }
    if (rate > 0) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        double tick = 1.0 / rate;
        if (tick < 20e-6) tick = 20e-6;
        if (tick > 1e-3) tick = 1e-3;
        long ns = (long)(tick * 1e9);
        struct itimerspec its = {{0, ns}, {0, ns}};
        timerfd_settime(tfd, 0, &its, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ~0ull};
        epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
    }
    /* What others send to (listeners, datagram endpoints) is open before "ready". */
    for (int i = 0; i < neps; i++) if (eps[i].listen_mode || is_dgram(&eps[i])) ep_open(&eps[i]);
    printf("ready %llu\n", (unsigned long long)now_ns()); fflush(stdout);
    for (int i = 0; i < neps; i++) if (!eps[i].listen_mode && !is_dgram(&eps[i])) ep_open(&eps[i]);
    struct epoll_event evs[256];
    while (!got_term) {
        if (got_usr1) { got_usr1 = 0; toggle_recording(); snap(); }
        int n = epoll_wait(epfd, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == ~0ull) { uint64_t x; if (read(tfd, &x, 8) > 0) pace_tick(); continue; }
            struct ep *e = &eps[d >> 1];
            if (d & 1) { do_accept(e); continue; }
            if (e->fd < 0) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) do_recv(e);
            if (e->fd >= 0 && (evs[i].events & EPOLLOUT)) do_send(e);
        }
    }
    snap();
    if (recording) toggle_recording();
    for (int i = 0; i < neps; i++) if (eps[i].kind == K_UNIX && eps[i].listen_mode) unlink(eps[i].path);
    if (send_err) fprintf(stderr, "%llu frames could not be sent\n", (unsigned long long)send_err);
    return 0;
}
