/*
 * xcon native fast path. See xcon_native.h for the common contract and
 * xcon/native.py for the Python-level API and the pure-Python twin that
 * must give byte-for-byte identical results.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

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

int xcon_write_frames(int fd, const uint8_t *buf, size_t start, size_t end, size_t out[])
{
    size_t pos = start, n = 0, dropped = 0;
    int err = 0;

    if (end < start)
        end = start;
    while (end - pos >= XCON_HDR_LEN) {
        size_t len = get_be32(buf + pos);
        ssize_t r;

        if (end - pos - XCON_HDR_LEN < len)
            break;
        if (len == 0 || len > XCON_MAX_FRAME) {
            dropped++;
            pos += XCON_HDR_LEN + len;
            continue;
        }
        r = write(fd, buf + pos + XCON_HDR_LEN, len);
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
