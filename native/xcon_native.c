/*
 * xcon native fast path. See xcon_native.h for the common contract and
 * xcon/native.py for the Python-level API and the pure-Python twin that
 * must give byte-for-byte identical results.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* recvmmsg, sendmmsg, struct mmsghdr */
#endif
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "xcon_native.h"

#define ETH_MAC_LEN 12          /* destination + source MAC */
#define ETH_HDR_LEN 14          /* MACs + ethertype: shortest frame we forward */
#define VLAN_TAG_LEN 4          /* TPID + TCI */
#define VLAN_HDR_LEN (ETH_HDR_LEN + VLAN_TAG_LEN)
#define TPID_8021Q 0x8100u
#define VID_MASK 0x0fffu

static inline uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline unsigned int get_be16(const uint8_t *p)
{
    return ((unsigned int)p[0] << 8) | (unsigned int)p[1];
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * Length of the complete, valid frame whose header is at pos, or 0 when there
 * is none (header or payload incomplete before end, zero length, or a length
 * above XCON_MAX_FRAME). Requires pos <= end.
 */
static inline size_t frame_len_at(const uint8_t *buf, size_t pos, size_t end)
{
    size_t len;

    if (end - pos < XCON_HDR_LEN)
        return 0;
    len = get_be32(buf + pos);
    if (len == 0 || len > XCON_MAX_FRAME)
        return 0;
    if (end - pos - XCON_HDR_LEN < len)
        return 0;
    return len;
}

int xcon_scan(const uint8_t *buf, size_t start, size_t end, size_t out[])
{
    size_t pos = start, n = 0;
    int status = XCON_NEED_DATA;

    if (end < start)
        end = start;
    while (end - pos >= XCON_HDR_LEN) {
        size_t len = get_be32(buf + pos);

        if (len == 0) {
            status = XCON_ZERO;
            break;
        }
        if (len > XCON_MAX_FRAME) {
            status = XCON_TOO_BIG;
            break;
        }
        if (end - pos - XCON_HDR_LEN < len)
            break;
        pos += XCON_HDR_LEN + len;
        n++;
    }
    out[0] = pos;
    out[1] = n;
    return status;
}

int xcon_skip(const uint8_t *buf, size_t start, size_t end, size_t max_frames, size_t out[])
{
    size_t pos = start, n = 0;
    int status = XCON_NEED_DATA;

    if (end < start)
        end = start;
    while (n < max_frames && end - pos >= XCON_HDR_LEN) {
        size_t len = get_be32(buf + pos);

        if (len == 0) {
            status = XCON_ZERO;
            break;
        }
        if (len > XCON_MAX_FRAME) {
            status = XCON_TOO_BIG;
            break;
        }
        if (end - pos - XCON_HDR_LEN < len)
            break;
        pos += XCON_HDR_LEN + len;
        n++;
    }
    out[0] = pos;
    out[1] = n;
    return status;
}

void xcon_vlan_strip(const uint8_t *src, size_t start, size_t end, unsigned int vid,
                     uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[])
{
    size_t pos = start, w = dst_start, n = 0;
    size_t untagged = 0, other_vlan = 0, runt = 0;

    vid &= VID_MASK;
    if (end < start)
        end = start;
    if (dst_end < dst_start)
        dst_end = dst_start;
    for (;;) {
        size_t len = frame_len_at(src, pos, end);
        const uint8_t *f;

        if (len == 0)
            break;
        f = src + pos + XCON_HDR_LEN;
        if (len < ETH_HDR_LEN) {
            runt++;
        } else if (get_be16(f + ETH_MAC_LEN) != TPID_8021Q) {
            untagged++;
        } else if (len < VLAN_HDR_LEN) {
            runt++;
        } else if ((get_be16(f + ETH_MAC_LEN + 2) & VID_MASK) != vid) {
            other_vlan++;
        } else {
            size_t out_len = len - VLAN_TAG_LEN;
            uint8_t *o = dst + w;

            if (dst_end - w < XCON_HDR_LEN + out_len)
                break;
            put_be32(o, (uint32_t)out_len);
            memmove(o + XCON_HDR_LEN, f, ETH_MAC_LEN);
            memmove(o + XCON_HDR_LEN + ETH_MAC_LEN, f + ETH_MAC_LEN + VLAN_TAG_LEN,
                    len - ETH_MAC_LEN - VLAN_TAG_LEN);
            w += XCON_HDR_LEN + out_len;
            n++;
        }
        pos += XCON_HDR_LEN + len;
    }
    out[0] = pos;
    out[1] = w;
    out[2] = n;
    out[3] = untagged;
    out[4] = other_vlan;
    out[5] = runt;
}

void xcon_vlan_insert(const uint8_t *src, size_t start, size_t end, unsigned int vid,
                      uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[])
{
    size_t pos = start, w = dst_start, n = 0;
    size_t too_big = 0, runt = 0;

    vid &= VID_MASK;
    if (end < start)
        end = start;
    if (dst_end < dst_start)
        dst_end = dst_start;
    for (;;) {
        size_t len = frame_len_at(src, pos, end);
        const uint8_t *f;

        if (len == 0)
            break;
        f = src + pos + XCON_HDR_LEN;
        if (len < ETH_HDR_LEN) {
            runt++;
        } else if (len + VLAN_TAG_LEN > XCON_MAX_FRAME) {
            too_big++;
        } else {
            size_t out_len = len + VLAN_TAG_LEN;
            uint8_t *o = dst + w;

            if (dst_end - w < XCON_HDR_LEN + out_len)
                break;
            put_be32(o, (uint32_t)out_len);
            memmove(o + XCON_HDR_LEN, f, ETH_MAC_LEN);
            o[XCON_HDR_LEN + ETH_MAC_LEN + 0] = (uint8_t)(TPID_8021Q >> 8);
            o[XCON_HDR_LEN + ETH_MAC_LEN + 1] = (uint8_t)(TPID_8021Q & 0xff);
            o[XCON_HDR_LEN + ETH_MAC_LEN + 2] = (uint8_t)(vid >> 8);
            o[XCON_HDR_LEN + ETH_MAC_LEN + 3] = (uint8_t)(vid & 0xff);
            memmove(o + XCON_HDR_LEN + ETH_MAC_LEN + VLAN_TAG_LEN, f + ETH_MAC_LEN,
                    len - ETH_MAC_LEN);
            w += XCON_HDR_LEN + out_len;
            n++;
        }
        pos += XCON_HDR_LEN + len;
    }
    out[0] = pos;
    out[1] = w;
    out[2] = n;
    out[3] = too_big;
    out[4] = runt;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void xcon_capture_frames(const uint8_t *src, size_t start, size_t end,
                         uint8_t *dst, size_t dst_start, size_t dst_end,
                         uint32_t if_id, uint32_t flags, uint64_t ts, size_t snaplen,
                         size_t out[])
{
    size_t pos = start, w = dst_start, n = 0;
    size_t opts = flags ? XCON_EPB_FLAGS_OPT : 0;
    uint32_t ts_hi = (uint32_t)(ts >> 32), ts_lo = (uint32_t)ts;

    if (end < start)
        end = start;
    if (dst_end < dst_start)
        dst_end = dst_start;
    for (;;) {
        size_t len = frame_len_at(src, pos, end);
        size_t cap, padded, total;
        uint8_t *o;

        if (len == 0)
            break;
        cap = (snaplen && len > snaplen) ? snaplen : len;
        padded = (cap + 3) & ~(size_t)3;
        total = XCON_EPB_FIXED + padded + opts;
        if (dst_end - w < total)
            break;
        o = dst + w;
        put_le32(o, 6);
        put_le32(o + 4, (uint32_t)total);
        put_le32(o + 8, if_id);
        put_le32(o + 12, ts_hi);
        put_le32(o + 16, ts_lo);
        put_le32(o + 20, (uint32_t)cap);
        put_le32(o + 24, (uint32_t)len);
        memcpy(o + 28, src + pos + XCON_HDR_LEN, cap);
        o += 28 + cap;
        switch (padded - cap) {   /* zero padding, never stale bytes */
        case 3: *o++ = 0; /* fall through */
        case 2: *o++ = 0; /* fall through */
        case 1: *o++ = 0; /* fall through */
        default: break;
        }
        if (flags) {
            put_le32(o, 2u | (4u << 16));   /* epb_flags, 4 bytes */
            put_le32(o + 4, flags);
            put_le32(o + 8, 0);             /* opt_endofopt */
            o += XCON_EPB_FLAGS_OPT;
        }
        put_le32(o, (uint32_t)total);
        w += total;
        n++;
        pos += XCON_HDR_LEN + len;
    }
    out[0] = pos;
    out[1] = w;
    out[2] = n;
}

int xcon_read_frames(int fd, uint8_t *buf, size_t start, size_t end,
                     size_t max_frame, size_t max_count, size_t out[])
{
    size_t pos = start, n = 0;
    int err = 0;

    if (max_frame > XCON_MAX_FRAME)
        max_frame = XCON_MAX_FRAME;
    if (max_frame == 0) {
        err = EINVAL;
    } else if (end < start || end - start < XCON_HDR_LEN + max_frame) {
        err = ENOBUFS;
    } else {
        while (n < max_count && end - pos >= XCON_HDR_LEN + max_frame) {
            ssize_t r = read(fd, buf + pos + XCON_HDR_LEN, max_frame);

            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    err = errno;
                break;
            }
            if (r == 0) {
                err = XCON_READ_EOF;
                break;
            }
            put_be32(buf + pos, (uint32_t)r);
            pos += XCON_HDR_LEN + (size_t)r;
            n++;
        }
    }
    out[0] = pos;
    out[1] = n;
    return err;
}

/* Errors that reject one frame, not the device: drop it and go on. */
static inline int frame_rejected(int e)
{
    return e == EMSGSIZE || e == EINVAL || e == ENOBUFS;
}

/* Each frame of buf[start:end] with one system call, after prefix[0:prefix_len]
 * when prefix_len > 0 (writev); shared by write_frames and write_packets. */
static int write_each(int fd, const uint8_t *buf, size_t start, size_t end,
                      const uint8_t *prefix, size_t prefix_len, size_t out[])
{
    size_t pos = start, n = 0, dropped = 0;
    int err = 0;
    int have_prefix = prefix_len > 0;

    if (end < start)
        end = start;
    while (end - pos >= XCON_HDR_LEN) {
        size_t len = get_be32(buf + pos);
        struct iovec iov[2];
        ssize_t r;

        if (end - pos - XCON_HDR_LEN < len)
            break;
        if (len == 0 || len > XCON_MAX_FRAME) {
            dropped++;
            pos += XCON_HDR_LEN + len;
            continue;
        }
        iov[0].iov_base = (void *)prefix;
        iov[0].iov_len = prefix_len;
        iov[1].iov_base = (void *)(buf + pos + XCON_HDR_LEN);
        iov[1].iov_len = len;
        if (have_prefix)
            r = writev(fd, iov, 2);
        else
            r = write(fd, iov[1].iov_base, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (frame_rejected(errno)) {
                dropped++;
                pos += XCON_HDR_LEN + len;
                continue;
            }
            err = errno;
            break;
        }
        n++;
        pos += XCON_HDR_LEN + len;
    }
    out[0] = pos;
    out[1] = n;
    out[2] = dropped;
    return err;
}

int xcon_write_frames(int fd, const uint8_t *buf, size_t start, size_t end, size_t out[])
{
    return write_each(fd, buf, start, end, NULL, 0, out);
}

/* Room one receive slot takes: the length prefix, then the largest datagram. */
#define DGRAM_SLOT (XCON_HDR_LEN + XCON_MAX_DGRAM)

/* ::ffff:0:0/96, the IPv4-mapped IPv6 addresses. */
static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/*
 * Whether a received datagram's source address (msg_name) is peer: 4 bytes
 * for IPv4 (which an IPv4-mapped IPv6 source matches too), 16 for IPv6. The
 * port is not compared; a source that is not IP never matches.
 */
static int from_peer(const struct msghdr *h, const uint8_t *peer, size_t peer_len)
{
    const struct sockaddr *sa = h->msg_name;

    if (h->msg_namelen >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET)
        return peer_len == 4 &&
               memcmp(&((const struct sockaddr_in *)h->msg_name)->sin_addr, peer, 4) == 0;
    if (h->msg_namelen >= sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)h->msg_name)->sin6_addr.s6_addr;

        if (peer_len == 16)
            return memcmp(a, peer, 16) == 0;
        return memcmp(a, v4_mapped, sizeof v4_mapped) == 0 && memcmp(a + 12, peer, 4) == 0;
    }
    return 0;
}

/* (hdr[i] & mask[i]) == expect[i] for every i < len. */
static inline int header_matches(const uint8_t *hdr, const uint8_t *expect,
                                 const uint8_t *mask, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if ((hdr[i] & mask[i]) != expect[i])
            return 0;
    return 1;
}

/*
 * Each recvmmsg call gets as many slots of DGRAM_SLOT bytes as fit in
 * buf[w:end] (at most XCON_DGRAM_BATCH, and no more than the frames still
 * allowed): message i reads its header into heads[i] (when prefix_len > 0)
 * and its frame into slot i after room for the length prefix. The frames
 * kept are then moved down to w one after the other, each behind its length;
 * w never passes the slot being moved (a kept frame takes at most one slot),
 * and a moved frame ends before the next slot. Calls go on until EAGAIN, the
 * frame cap, or no room for one slot.
 */
int xcon_recv_datagrams(int fd, uint8_t *buf, size_t start, size_t end, size_t max_count,
                        const uint8_t *expect, const uint8_t *mask, size_t prefix_len,
                        const uint8_t *peer, size_t peer_len, size_t out[])
{
    struct mmsghdr msgs[XCON_DGRAM_BATCH];
    struct iovec iov[XCON_DGRAM_BATCH][2];
    struct sockaddr_storage names[XCON_DGRAM_BATCH];
    uint8_t heads[XCON_DGRAM_BATCH][XCON_MAX_PREFIX];
    size_t w = start, n = 0, bad_header = 0, foreign = 0, truncated = 0;
    int err = 0;

    if (end < start)
        end = start;
    if (prefix_len > XCON_MAX_PREFIX || (peer_len != 0 && peer_len != 4 && peer_len != 16)) {
        err = EINVAL;
    } else if (end - start < DGRAM_SLOT) {
        err = ENOBUFS;
    } else {
        while (n < max_count && end - w >= DGRAM_SLOT) {
            size_t base = w, k = (end - w) / DGRAM_SLOT, i;
            int r;

            if (k > XCON_DGRAM_BATCH)
                k = XCON_DGRAM_BATCH;
            if (k > max_count - n)
                k = max_count - n;
            for (i = 0; i < k; i++) {
                struct msghdr *h = &msgs[i].msg_hdr;
                struct iovec *v = iov[i];

                memset(h, 0, sizeof *h);
                if (prefix_len > 0) {
                    v->iov_base = heads[i];
                    v->iov_len = prefix_len;
                    v++;
                }
                v->iov_base = buf + base + i * DGRAM_SLOT + XCON_HDR_LEN;
                v->iov_len = XCON_MAX_DGRAM;
                h->msg_iov = iov[i];
                h->msg_iovlen = (size_t)(v - iov[i]) + 1;
                if (peer_len > 0) {
                    h->msg_name = &names[i];
                    h->msg_namelen = sizeof names[i];
                }
            }
            r = recvmmsg(fd, msgs, (unsigned int)k, MSG_DONTWAIT, NULL);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    err = errno;
                break;
            }
            if (r == 0)
                break;
            for (i = 0; i < (size_t)r; i++) {
                const struct msghdr *h = &msgs[i].msg_hdr;
                size_t got = msgs[i].msg_len, len;
                uint8_t *slot = buf + base + i * DGRAM_SLOT;

                if (peer_len > 0 && !from_peer(h, peer, peer_len)) {
                    foreign++;
                    continue;
                }
                if (h->msg_flags & MSG_TRUNC) {
                    truncated++;
                    continue;
                }
                if (got < prefix_len + ETH_HDR_LEN ||
                    !header_matches(heads[i], expect, mask, prefix_len)) {
                    bad_header++;
                    continue;
                }
                len = got - prefix_len;
                if (buf + w != slot)
                    memmove(buf + w + XCON_HDR_LEN, slot + XCON_HDR_LEN, len);
                put_be32(buf + w, (uint32_t)len);
                w += XCON_HDR_LEN + len;
                n++;
            }
        }
    }
    out[0] = w;
    out[1] = n;
    out[2] = bad_header;
    out[3] = foreign;
    out[4] = truncated;
    return err;
}

/* Errors that reject one datagram, not the socket: drop it and go on. */
static inline int datagram_rejected(int e)
{
    return e == EMSGSIZE || e == ENOBUFS || e == EINVAL || e == ECONNREFUSED ||
           e == EHOSTUNREACH || e == ENETUNREACH || e == EPERM;
}

/*
 * One sendmmsg call per batch: the run of complete frames of valid length
 * from pos, at most XCON_DGRAM_BATCH, message i being [prefix, frame i] (to
 * addr when addrlen > 0). Invalid lengths before the run are dropped while it
 * is gathered; one after it ends the run (the next batch drops it). When the
 * call fails for its first message, errno tells what to do with it; when
 * only r < k messages went, the kernel has dropped the errno of message r,
 * so that message heads the next call, which reports it.
 */
int xcon_send_datagrams(int fd, const uint8_t *buf, size_t start, size_t end,
                        const uint8_t *prefix, size_t prefix_len,
                        const uint8_t *addr, size_t addrlen, size_t out[])
{
    struct mmsghdr msgs[XCON_DGRAM_BATCH];
    struct iovec iov[XCON_DGRAM_BATCH][2];
    size_t heads[XCON_DGRAM_BATCH + 1];
    size_t pos = start, n = 0, dropped = 0;
    int err = 0;

    if (end < start)
        end = start;
    if (prefix_len > XCON_MAX_PREFIX || addrlen > sizeof(struct sockaddr_storage))
        err = EINVAL;
    while (err == 0) {
        size_t k = 0, next = pos;
        int r;

        while (k < XCON_DGRAM_BATCH && end - next >= XCON_HDR_LEN) {
            size_t len = get_be32(buf + next);
            struct msghdr *h;
            struct iovec *v;

            if (end - next - XCON_HDR_LEN < len)
                break;
            if (len == 0 || len > XCON_MAX_FRAME) {
                if (k > 0)
                    break;
                dropped++;
                next += XCON_HDR_LEN + len;
                pos = next;
                continue;
            }
            h = &msgs[k].msg_hdr;
            v = iov[k];
            memset(h, 0, sizeof *h);
            if (prefix_len > 0) {
                v->iov_base = (void *)prefix;
                v->iov_len = prefix_len;
                v++;
            }
            v->iov_base = (void *)(buf + next + XCON_HDR_LEN);
            v->iov_len = len;
            h->msg_iov = iov[k];
            h->msg_iovlen = (size_t)(v - iov[k]) + 1;
            if (addrlen > 0) {
                h->msg_name = (void *)addr;
                h->msg_namelen = (socklen_t)addrlen;
            }
            heads[k++] = next;
            next += XCON_HDR_LEN + len;
        }
        heads[k] = next;
        if (k == 0)
            break;
        r = sendmmsg(fd, msgs, (unsigned int)k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (datagram_rejected(errno)) {
                dropped++;
                pos = heads[1];
                continue;
            }
            err = errno;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        pos = heads[r];
    }
    out[0] = pos;
    out[1] = n;
    out[2] = dropped;
    return err;
}
