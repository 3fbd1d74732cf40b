/*
 * xcon native fast path: AF_PACKET sockets with PACKET_VNET_HDR.
 *
 * Compiled in the same translation unit as xcon_native.c (build_native.py
 * includes both), whose byte-order helpers (get_be16, get_be32, put_be32)
 * and frame_rejected() it uses. xcon/native/backend_python.py holds the
 * pure-Python twin, which must give byte-for-byte identical results.
 *
 * A packet socket with PACKET_VNET_HDR delivers each packet as a struct
 * virtio_net_hdr (10 bytes, host byte order) and the frame as the sending
 * stack left it, which on a veth (or any device with offloads) may be:
 *
 *   - a frame whose transport checksum is partial
 *     (VIRTIO_NET_HDR_F_NEEDS_CSUM): the ones' complement sum of the
 *     pseudo-header is already in the checksum field, the rest is to be
 *     summed from csum_start to the end and stored at csum_start +
 *     csum_offset. SCTP (IP protocol 132, csum_offset 8) uses CRC32c
 *     instead, stored little-endian as the kernel does;
 *   - a TSO/GSO super-frame (gso_type != VIRTIO_NET_HDR_GSO_NONE) of up to
 *     64 KiB, cut here into frames of at most gso_size payload bytes each:
 *     TCP over IPv4 and IPv6 (ECN bit allowed) and UDP (UDP_L4, "USO").
 *     Every segment gets a copy of the L2/L3/L4 headers with the IPv4 total
 *     length, id (+1 per segment) and header checksum, or the IPv6 payload
 *     length, the TCP sequence number and flags (FIN and PSH only on the
 *     last segment, CWR only on the first) or the UDP length, and a full
 *     transport checksum with the pseudo-header.
 *
 * Everything else that carries an offload (an unknown gso_type, IPv6
 * extension headers or a tunnel under a super-frame, offsets that do not
 * match the frame) is dropped and counted, never forwarded half done.
 *
 * The offsets of the header refer to the frame as delivered, without the
 * VLAN tag the kernel moved into PACKET_AUXDATA; the tag is put back into
 * every output frame last.
 *
 * In-place layout (read_packets): a packet is received straight into the
 * output buffer, its frame at pos + 4 where its length prefix goes at pos.
 * A plain frame is finished there. A super-frame is first moved to the end
 * of the span its segments will occupy, then the segments are written from
 * pos onwards: each segment adds its headers ahead of the payload it copies,
 * so writing never overtakes the payload still to be read (see pk_emit).
 */
#include <errno.h>
#include <linux/if_packet.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "xcon_native.h"

#ifndef SOL_PACKET
#define SOL_PACKET 263
#endif
#ifndef TP_STATUS_VLAN_VALID
#define TP_STATUS_VLAN_VALID (1 << 4)
#endif
#ifndef TP_STATUS_VLAN_TPID_VALID
#define TP_STATUS_VLAN_TPID_VALID (1 << 6)
#endif

/* linux/virtio_net.h */
#define PK_F_NEEDS_CSUM 1
#define PK_GSO_NONE 0
#define PK_GSO_TCPV4 1
#define PK_GSO_TCPV6 4
#define PK_GSO_UDP_L4 5
#define PK_GSO_ECN 0x80

#define PK_TPID_8021AD 0x88a8u
#define PK_ETHERTYPE_IPV4 0x0800u
#define PK_ETHERTYPE_IPV6 0x86ddu
#define PK_PROTO_TCP 6
#define PK_PROTO_UDP 17
#define PK_PROTO_SCTP 132
#define PK_TCP_FIN 0x01u
#define PK_TCP_PSH 0x08u
#define PK_TCP_CWR 0x80u
#define PK_TAG_LEN 4
#define PK_MAX_TAGS 2          /* VLAN tags inside the frame walked to the IP header */
#define PK_MAX_EXT 8           /* IPv6 extension headers walked (to find SCTP) */
#define PK_TMPL_MAX 160        /* largest L2+L3+L4 header copied into each segment */

/* The counters of read_packets(), out[2 + PK_C_...]. */
enum { PK_C_TRUNCATED, PK_C_OUTGOING, PK_C_CSUM, PK_C_SPLIT, PK_C_GSO_DROPPED,
       PK_C_MALFORMED, PK_C_BAD_FRAME, PK_NCOUNTERS };

struct pk_vnet {
    unsigned int flags, gso_type, gso_size, csum_start, csum_offset;
};

struct pk_ip {
    size_t l3, l4;            /* offsets of the IP and the transport header */
    unsigned int version, proto;
    int ext;                  /* IPv6 extension headers were walked */
};

enum { PK_IP_OK, PK_IP_OTHER, PK_IP_BAD };
enum { PK_CSUM_NONE, PK_CSUM_INET, PK_CSUM_CRC32C };

/* What one packet becomes: decided by pk_plan (reads only), done by pk_emit. */
struct pk_plan {
    size_t n;                 /* frame length as delivered */
    size_t taglen;            /* 0 or PK_TAG_LEN */
    uint8_t tag[PK_TAG_LEN];
    size_t out_len;           /* bytes of output, length prefixes included */
    int csum;                 /* plain frame: PK_CSUM_* */
    size_t cs, co;            /* its csum_start, csum_offset */
    int gso, tcp;             /* super-frame; TCP (else UDP) */
    struct pk_ip ip;
    size_t hlen;              /* L2 + L3 + L4 header bytes copied per segment */
    size_t gso_size, nseg;
};

static const uint8_t pk_zero_vnet[XCON_VNET_HDR_LEN];

static const uint32_t pk_crc32c_nibble[16] = {
    0x00000000u, 0x105ec76fu, 0x20bd8edeu, 0x30e349b1u, 0x417b1dbcu, 0x5125dad3u,
    0x61c69362u, 0x7198540du, 0x82f63b78u, 0x92a8fc17u, 0xa24bb5a6u, 0xb21572c9u,
    0xc38d26c4u, 0xd3d3e1abu, 0xe330a81au, 0xf36e6f75u,
};

static inline void put_be16(uint8_t *p, unsigned int v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline unsigned int get_host16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof v);
    return v;
}

static void pk_vnet_parse(const uint8_t *p, struct pk_vnet *v)
{
    v->flags = p[0];
    v->gso_type = p[1];
    /* p[2..3]: hdr_len, a hint only */
    v->gso_size = get_host16(p + 4);
    v->csum_start = get_host16(p + 6);
    v->csum_offset = get_host16(p + 8);
}

/* Sum of the big-endian 16-bit words of p[0:len] (a last odd byte padded
 * with zero), not yet folded: congruent modulo 0xffff with the ones'
 * complement sum, and 0 only for all-zero data. */
static uint64_t pk_sum(const uint8_t *p, size_t len)
{
    uint64_t s = 0;

    while (len >= 4) {
        s += get_be32(p);
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        s += get_be16(p);
        p += 2;
        len -= 2;
    }
    if (len)
        s += (uint64_t)p[0] << 8;
    return s;
}

/* The Internet checksum of an unfolded sum: ~(ones' complement sum). */
static unsigned int pk_csum(uint64_t s)
{
    while (s >> 16)
        s = (s & 0xffffu) + (s >> 16);
    return (unsigned int)~s & 0xffffu;
}

static uint32_t pk_crc32c(const uint8_t *p, size_t len)
{
    uint32_t c = 0xffffffffu;

    while (len--) {
        c = (c >> 4) ^ pk_crc32c_nibble[(c ^ *p) & 15u];
        c = (c >> 4) ^ pk_crc32c_nibble[(c ^ (*p >> 4)) & 15u];
        p++;
    }
    return c ^ 0xffffffffu;
}

/* Find the IP and transport headers of f[0:n]: after up to PK_MAX_TAGS VLAN
 * tags; IPv6 extension headers (hop-by-hop, routing, destination options)
 * are walked and flagged. PK_IP_OTHER: not IP, an IPv4 fragment, or too many
 * tags or extension headers; PK_IP_BAD: a header cut short or invalid. */
static int pk_parse_ip(const uint8_t *f, size_t n, struct pk_ip *ip)
{
    size_t off = ETH_MAC_LEN, l3;
    unsigned int et;
    int tags = 0;

    if (n < ETH_HDR_LEN)
        return PK_IP_BAD;
    et = get_be16(f + off);
    while (et == TPID_8021Q || et == PK_TPID_8021AD) {
        if (tags++ == PK_MAX_TAGS)
            return PK_IP_OTHER;
        if (n - off < PK_TAG_LEN + 2)
            return PK_IP_BAD;
        off += PK_TAG_LEN;
        et = get_be16(f + off);
    }
    l3 = off + 2;
    ip->l3 = l3;
    ip->ext = 0;
    if (et == PK_ETHERTYPE_IPV4) {
        size_t ihl;

        if (n - l3 < 20)
            return PK_IP_BAD;
        ihl = (size_t)(f[l3] & 15u) * 4;
        if ((f[l3] >> 4) != 4 || ihl < 20 || n - l3 < ihl)
            return PK_IP_BAD;
        if (get_be16(f + l3 + 6) & 0x3fffu)
            return PK_IP_OTHER;
        ip->version = 4;
        ip->proto = f[l3 + 9];
        ip->l4 = l3 + ihl;
        return PK_IP_OK;
    }
    if (et == PK_ETHERTYPE_IPV6) {
        size_t l4 = l3 + 40;
        unsigned int nh;
        int i = 0;

        if (n - l3 < 40 || (f[l3] >> 4) != 6)
            return PK_IP_BAD;
        nh = f[l3 + 6];
        while (nh == 0 || nh == 43 || nh == 60) {
            if (i++ == PK_MAX_EXT)
                return PK_IP_OTHER;
            if (n - l4 < 8)
                return PK_IP_BAD;
            nh = f[l4];
            l4 += ((size_t)f[l4 + 1] + 1) * 8;
            if (l4 > n)
                return PK_IP_BAD;
            ip->ext = 1;
        }
        ip->version = 6;
        ip->proto = nh;
        ip->l4 = l4;
        return PK_IP_OK;
    }
    return PK_IP_OTHER;
}

/* Decide what the packet (header v, frame f[0:n], VLAN tag tpid/tci with
 * tpid 0 for none) becomes, reading only. Returns the verdict; for
 * FORWARDED, CSUM and SPLIT p->out_len is the room its output needs. */
static int pk_plan(const struct pk_vnet *v, const uint8_t *f, size_t n, unsigned int tpid,
                   unsigned int tci, struct pk_plan *p)
{
    unsigned int type;
    size_t thl, payload, seg, iplen;
    int r;

    memset(p, 0, sizeof *p);
    p->n = n;
    if (tpid) {
        p->taglen = PK_TAG_LEN;
        put_be16(p->tag, tpid);
        put_be16(p->tag + 2, tci);
    }
    if (n == 0 || n > XCON_MAX_FRAME)
        return XCON_PKT_BAD_FRAME;
    if (p->taglen && (n < ETH_MAC_LEN || n + PK_TAG_LEN > XCON_MAX_FRAME))
        return XCON_PKT_BAD_FRAME;

    if (v->gso_type == PK_GSO_NONE) {
        size_t cs = v->csum_start, co = v->csum_offset;
        struct pk_ip ip;

        p->out_len = XCON_HDR_LEN + p->taglen + n;
        if (!(v->flags & PK_F_NEEDS_CSUM))
            return XCON_PKT_FORWARDED;
        if (cs > n || co > n - cs || n - cs - co < 2)
            return XCON_PKT_MALFORMED;
        p->cs = cs;
        p->co = co;
        p->csum = PK_CSUM_INET;
        if (co == 8 && pk_parse_ip(f, n, &ip) == PK_IP_OK && ip.proto == PK_PROTO_SCTP &&
            ip.l4 == cs) {
            if (n - cs - co < 4)
                return XCON_PKT_MALFORMED;
            p->csum = PK_CSUM_CRC32C;
        }
        return XCON_PKT_CSUM;
    }

    type = v->gso_type & ~(unsigned int)PK_GSO_ECN;
    if (type == PK_GSO_TCPV4 || type == PK_GSO_TCPV6)
        p->tcp = 1;
    else if (type != PK_GSO_UDP_L4 || (v->gso_type & PK_GSO_ECN))
        return XCON_PKT_UNSUPPORTED;
    if (v->gso_size == 0)
        return XCON_PKT_MALFORMED;
    r = pk_parse_ip(f, n, &p->ip);
    if (r == PK_IP_BAD)
        return XCON_PKT_MALFORMED;
    if (r != PK_IP_OK || p->ip.ext)
        return XCON_PKT_UNSUPPORTED;
    if ((type == PK_GSO_TCPV4 && p->ip.version != 4) ||
        (type == PK_GSO_TCPV6 && p->ip.version != 6) ||
        p->ip.proto != (p->tcp ? PK_PROTO_TCP : PK_PROTO_UDP))
        return XCON_PKT_UNSUPPORTED;
    if (p->tcp) {
        if (n - p->ip.l4 < 20)
            return XCON_PKT_MALFORMED;
        thl = (size_t)(f[p->ip.l4 + 12] >> 4) * 4;
        if (thl < 20 || n - p->ip.l4 < thl)
            return XCON_PKT_MALFORMED;
    } else {
        thl = 8;
        if (n - p->ip.l4 < thl)
            return XCON_PKT_MALFORMED;
    }
    if ((v->flags & PK_F_NEEDS_CSUM) &&
        (v->csum_start != p->ip.l4 || v->csum_offset != (p->tcp ? 16u : 6u)))
        return XCON_PKT_MALFORMED;
    p->hlen = p->ip.l4 + thl;
    payload = n - p->hlen;
    if (payload == 0)
        return XCON_PKT_MALFORMED;
    if (p->hlen > PK_TMPL_MAX)
        return XCON_PKT_UNSUPPORTED;
    seg = v->gso_size < payload ? v->gso_size : payload;
    iplen = p->hlen - p->ip.l3 + seg - (p->ip.version == 6 ? 40 : 0);
    if (iplen > 0xffffu)
        return XCON_PKT_MALFORMED;
    p->gso = 1;
    p->gso_size = v->gso_size;
    p->nseg = payload / p->gso_size + (payload % p->gso_size != 0);
    p->out_len = p->nseg * (XCON_HDR_LEN + p->taglen + p->hlen) + payload;
    return XCON_PKT_SPLIT;
}

/* Carry out plan p on the frame at buf[pos + 4:pos + 4 + p->n]: the output
 * goes to buf[pos:pos + p->out_len], which the caller made sure exists.
 * Returns the frames written.
 *
 * Splitting in place: the super-frame is moved so that it ends at
 * pos + out_len. With O = 4 + taglen + hlen bytes of prefix and headers per
 * segment, segment k (0-based) starts at pos + k * (O + gso_size) and its
 * payload is read from pos + nseg * O + k * gso_size: the write position
 * stays at least (nseg - k) * O behind that, so no segment overwrites
 * payload not yet copied, and the headers come from a copy made first. */
static size_t pk_emit(const struct pk_plan *p, uint8_t *buf, size_t pos)
{
    uint8_t *f = buf + pos + XCON_HDR_LEN;
    const size_t n = p->n, taglen = p->taglen;
    uint8_t tmpl[PK_TMPL_MAX];
    size_t hlen, l3, l4, g, payload, src, w, k;
    uint32_t seq = 0;
    unsigned int id = 0, flags = 0;

    if (!p->gso) {
        if (p->csum == PK_CSUM_INET) {
            unsigned int c = pk_csum(pk_sum(f + p->cs, n - p->cs));

            put_be16(f + p->cs + p->co, c ? c : 0xffffu);
        } else if (p->csum == PK_CSUM_CRC32C) {
            uint8_t *field = f + p->cs + p->co;
            uint32_t c;

            memset(field, 0, 4);
            c = pk_crc32c(f + p->cs, n - p->cs);
            field[0] = (uint8_t)c;
            field[1] = (uint8_t)(c >> 8);
            field[2] = (uint8_t)(c >> 16);
            field[3] = (uint8_t)(c >> 24);
        }
        if (taglen) {
            memmove(f + ETH_MAC_LEN + taglen, f + ETH_MAC_LEN, n - ETH_MAC_LEN);
            memcpy(f + ETH_MAC_LEN, p->tag, taglen);
        }
        put_be32(buf + pos, (uint32_t)(n + taglen));
        return 1;
    }

    hlen = p->hlen;
    l3 = p->ip.l3;
    l4 = p->ip.l4;
    g = p->gso_size;
    payload = n - hlen;
    memcpy(tmpl, f, hlen);
    src = pos + p->out_len - n;
    memmove(buf + src, f, n);
    if (p->tcp) {
        seq = get_be32(tmpl + l4 + 4);
        flags = tmpl[l4 + 13];
    }
    if (p->ip.version == 4)
        id = get_be16(tmpl + l3 + 4);
    w = pos;
    for (k = 0; k < p->nseg; k++) {
        size_t len = payload - k * g < g ? payload - k * g : g;
        size_t l4len = hlen - l4 + len;
        uint8_t *fr = buf + w + XCON_HDR_LEN;
        uint8_t *h = fr + taglen; /* from ETH_MAC_LEN on, the offsets of the untagged frame */
        uint64_t s;
        unsigned int c;

        put_be32(buf + w, (uint32_t)(hlen + taglen + len));
        memcpy(fr, tmpl, ETH_MAC_LEN);
        memcpy(fr + ETH_MAC_LEN, p->tag, taglen);
        memcpy(h + ETH_MAC_LEN, tmpl + ETH_MAC_LEN, hlen - ETH_MAC_LEN);
        memmove(h + hlen, buf + src + hlen + k * g, len);
        if (p->ip.version == 4) {
            put_be16(h + l3 + 2, (unsigned int)(hlen - l3 + len));
            put_be16(h + l3 + 4, (id + (unsigned int)k) & 0xffffu);
            put_be16(h + l3 + 10, 0);
            put_be16(h + l3 + 10, pk_csum(pk_sum(h + l3, l4 - l3)));
            s = pk_sum(h + l3 + 12, 8);
        } else {
            put_be16(h + l3 + 4, (unsigned int)(hlen - l3 - 40 + len));
            s = pk_sum(h + l3 + 8, 32);
        }
        s += (p->tcp ? PK_PROTO_TCP : PK_PROTO_UDP) + l4len;
        if (p->tcp) {
            unsigned int fl = flags;

            put_be32(h + l4 + 4, (uint32_t)(seq + (uint32_t)(k * g)));
            if (k + 1 < p->nseg)
                fl &= ~(PK_TCP_FIN | PK_TCP_PSH);
            if (k)
                fl &= ~PK_TCP_CWR;
            h[l4 + 13] = (uint8_t)fl;
            put_be16(h + l4 + 16, 0);
            c = pk_csum(s + pk_sum(h + l4, l4len));
            put_be16(h + l4 + 16, c);
        } else {
            put_be16(h + l4 + 4, (unsigned int)l4len);
            put_be16(h + l4 + 6, 0);
            c = pk_csum(s + pk_sum(h + l4, l4len));
            put_be16(h + l4 + 6, c ? c : 0xffffu);
        }
        w += XCON_HDR_LEN + taglen + hlen + len;
    }
    return p->nseg;
}

int xcon_offload_frame(const uint8_t *vnet, const uint8_t *frame, size_t len,
                       unsigned int tpid, unsigned int tci,
                       uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[])
{
    struct pk_vnet v;
    struct pk_plan plan;
    size_t w = dst_start, nout = 0;
    int verdict;

    if (dst_end < dst_start)
        dst_end = dst_start;
    pk_vnet_parse(vnet, &v);
    verdict = pk_plan(&v, frame, len, tpid & 0xffffu, tci & 0xffffu, &plan);
    if (verdict <= XCON_PKT_SPLIT) {
        if (plan.out_len > dst_end - dst_start) {
            verdict = XCON_PKT_NO_ROOM;
        } else {
            memcpy(dst + dst_start + XCON_HDR_LEN, frame, len);
            nout = pk_emit(&plan, dst, dst_start);
            w = dst_start + plan.out_len;
        }
    }
    out[0] = w;
    out[1] = nout;
    return verdict;
}

int xcon_read_packets(int fd, uint8_t *buf, size_t start, size_t end, size_t max_count,
                      int vnet_hdr, size_t out[])
{
    static const struct pk_vnet no_offload;
    size_t pos = start, nframes = 0, count = 0, i;
    size_t counters[PK_NCOUNTERS] = {0};
    uint8_t vh[XCON_VNET_HDR_LEN];
    union {
        struct cmsghdr align;
        uint8_t bytes[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } control;
    int err = 0;

    if (end < start || end - start < XCON_PKT_ROOM)
        err = ENOBUFS;
    while (!err && count < max_count && end - pos >= XCON_PKT_ROOM) {
        struct sockaddr_ll sll;
        struct iovec iov[2];
        struct msghdr msg;
        struct cmsghdr *cm;
        struct pk_vnet v;
        struct pk_plan plan;
        unsigned int tpid = 0, tci = 0;
        size_t n;
        ssize_t r;
        int verdict;

        iov[0].iov_base = vh;
        iov[0].iov_len = sizeof vh;
        iov[1].iov_base = buf + pos + XCON_HDR_LEN;
        iov[1].iov_len = XCON_MAX_FRAME;
        memset(&msg, 0, sizeof msg);
        memset(&sll, 0, sizeof sll);
        msg.msg_name = &sll;
        msg.msg_namelen = sizeof sll;
        msg.msg_iov = vnet_hdr ? iov : iov + 1;
        msg.msg_iovlen = vnet_hdr ? 2 : 1;
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        r = recvmsg(fd, &msg, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINVAL && vnet_hdr) {
                /* The kernel could not describe the packet's offload in a
                 * virtio_net_hdr (a tunnel, SCTP GSO...): it is gone. */
                count++;
                counters[PK_C_GSO_DROPPED]++;
                continue;
            }
            err = errno;
            break;
        }
        count++;
        if (msg.msg_flags & MSG_TRUNC) {
            counters[PK_C_TRUNCATED]++;
            continue;
        }
        if (sll.sll_pkttype == PACKET_OUTGOING) {
            counters[PK_C_OUTGOING]++;
            continue;
        }
        for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_PACKET && cm->cmsg_type == PACKET_AUXDATA &&
                cm->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata))) {
                struct tpacket_auxdata aux;

                memcpy(&aux, CMSG_DATA(cm), sizeof aux);
                if (aux.tp_status & TP_STATUS_VLAN_VALID) {
                    tpid = aux.tp_vlan_tpid;
                    if (!(aux.tp_status & TP_STATUS_VLAN_TPID_VALID) || !tpid)
                        tpid = TPID_8021Q;
                    tci = aux.tp_vlan_tci;
                }
                break;
            }
        }
        if (vnet_hdr) {
            if ((size_t)r < XCON_VNET_HDR_LEN) {
                counters[PK_C_BAD_FRAME]++;
                continue;
            }
            pk_vnet_parse(vh, &v);
            n = (size_t)r - XCON_VNET_HDR_LEN;
        } else {
            v = no_offload;
            n = (size_t)r;
        }
        verdict = pk_plan(&v, buf + pos + XCON_HDR_LEN, n, tpid, tci, &plan);
        if (verdict <= XCON_PKT_SPLIT && plan.out_len > end - pos)
            verdict = XCON_PKT_NO_ROOM;
        switch (verdict) {
        case XCON_PKT_CSUM:
            counters[PK_C_CSUM]++;
            break;
        case XCON_PKT_SPLIT:
            counters[PK_C_SPLIT]++;
            break;
        case XCON_PKT_UNSUPPORTED:
        case XCON_PKT_NO_ROOM:
            counters[PK_C_GSO_DROPPED]++;
            break;
        case XCON_PKT_MALFORMED:
            counters[PK_C_MALFORMED]++;
            break;
        case XCON_PKT_BAD_FRAME:
            counters[PK_C_BAD_FRAME]++;
            break;
        default:
            break;
        }
        if (verdict <= XCON_PKT_SPLIT) {
            nframes += pk_emit(&plan, buf, pos);
            pos += plan.out_len;
        }
    }
    out[0] = pos;
    out[1] = nframes;
    for (i = 0; i < PK_NCOUNTERS; i++)
        out[2 + i] = counters[i];
    return err;
}

int xcon_write_packets(int fd, const uint8_t *buf, size_t start, size_t end, size_t out[])
{
    return write_each(fd, buf, start, end, pk_zero_vnet, sizeof pk_zero_vnet, out);
}
