/*
 * xcon native fast path: per-frame work over batches of length-prefixed frames.
 *
 * Wire format: every frame is a 4-byte big-endian length followed by that
 * many bytes of Ethernet frame (no FCS). A length of 0 is a "zero" frame, a
 * length above XCON_MAX_FRAME is a protocol error (qemu closes the link).
 *
 * Every function works on caller-owned memory between offsets; the caller
 * guarantees start <= end <= size of the buffer (the Python wrapper checks
 * it). Nothing here allocates, and no length read from the data is ever used
 * to size anything: every access is checked against the given end offsets.
 *
 * native/build_native.py hands this header to cffi as it is (comments, the
 * guard and the includes left out, each #define's value left to the
 * compiler), so it holds only what cffi can declare: prototypes and
 * object-like #defines, no #if.
 */
#ifndef XCON_NATIVE_H
#define XCON_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* Bumped on every change of the functions below; xcon/native/backend_c.py
 * refuses a compiled module built from other sources. */
#define XCON_API_VERSION 4

#define XCON_MAX_FRAME 69632
#define XCON_HDR_LEN 4

/* scan() status: why the walk stopped. */
#define XCON_NEED_DATA 0
#define XCON_ZERO 1
#define XCON_TOO_BIG 2

/* read_frames(): a read returned 0 bytes (end of file / peer closed). */
#define XCON_READ_EOF (-1)

/* read_frames(): default cap on frames per call, so one busy fd cannot
 * starve the others. */
#define XCON_READ_BATCH 1024

/* recv_datagrams(): a receive slot takes a datagram of up to XCON_MAX_DGRAM
 * bytes after its header (UDP's largest payload fits), behind room for the
 * length prefix, so no datagram is ever cut. */
#define XCON_MAX_DGRAM 65535

/* recv/send_datagrams(): messages per recvmmsg/sendmmsg call at most. */
#define XCON_DGRAM_BATCH 64

/* recv/send_datagrams(): the longest header before a datagram's frame. */
#define XCON_MAX_PREFIX 64

/*
 * Results go to out[]: a caller-owned array of XCON_OUT_LEN size_t, one per
 * calling thread (the calls release the GIL), filled as listed per function.
 */
#define XCON_OUT_LEN 8

/* out: [0] pos, [1] nframes. Returns the status. */
int xcon_scan(const uint8_t *buf, size_t start, size_t end, size_t out[]);

/* scan() that passes at most max_frames frames (the impairment's skip to the
 * next frame a draw picked). out: [0] pos, [1] nframes. Returns the status. */
int xcon_skip(const uint8_t *buf, size_t start, size_t end, size_t max_frames, size_t out[]);

/* out: [0] consumed, [1] written, [2] nout, [3] untagged, [4] other_vlan, [5] runt. */
void xcon_vlan_strip(const uint8_t *src, size_t start, size_t end, unsigned int vid,
                     uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[]);

/* out: [0] consumed, [1] written, [2] nout, [3] too_big, [4] runt. */
void xcon_vlan_insert(const uint8_t *src, size_t start, size_t end, unsigned int vid,
                      uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[]);

/* out: [0] written position, [1] nframes. Returns 0, XCON_READ_EOF or an errno. */
int xcon_read_frames(int fd, uint8_t *buf, size_t start, size_t end,
                     size_t max_frame, size_t max_count, size_t out[]);

/* out: [0] consumed, [1] nframes, [2] ndropped. Returns 0 or an errno. */
int xcon_write_frames(int fd, const uint8_t *buf, size_t start, size_t end, size_t out[]);

/* out: [0] written position, [1] nframes, [2] bad_header, [3] foreign, [4] truncated.
 * expect/mask: prefix_len bytes each; peer: peer_len (0, 4 or 16) bytes.
 * Returns 0 or an errno. */
int xcon_recv_datagrams(int fd, uint8_t *buf, size_t start, size_t end, size_t max_count,
                        const uint8_t *expect, const uint8_t *mask, size_t prefix_len,
                        const uint8_t *peer, size_t peer_len, size_t out[]);

/* out: [0] consumed, [1] nframes, [2] ndropped. addr: a sockaddr of addrlen
 * bytes, addrlen 0 for a connected socket. Returns 0 or an errno. */
int xcon_send_datagrams(int fd, const uint8_t *buf, size_t start, size_t end,
                        const uint8_t *prefix, size_t prefix_len,
                        const uint8_t *addr, size_t addrlen, size_t out[]);

/* ---- capture: pcapng Enhanced Packet Blocks --------------------------------
 *
 * Each whole frame of src[start:end] becomes one pcapng Enhanced Packet Block
 * in dst from dst_start, little-endian (the section header says so): block
 * type 6, total length, interface if_id, timestamp ts (high and low 32 bits,
 * in the interface's units), captured length min(len, snaplen), original
 * length len, the captured bytes padded to 4, an epb_flags option with
 * flags and the end of options (when flags is not 0), the total length again.
 * Stops at the first header scan() would not pass and before the first block
 * that does not fit in dst[w:dst_end]. snaplen 0 means whole frames.
 * out: [0] consumed (source offset after the last frame written), [1] written
 * (destination offset), [2] frames written. */
#define XCON_EPB_FIXED 32      /* block header, ids, timestamp, lengths, total */
#define XCON_EPB_FLAGS_OPT 12  /* epb_flags option and end of options */
void xcon_capture_frames(const uint8_t *src, size_t start, size_t end,
                         uint8_t *dst, size_t dst_start, size_t dst_end,
                         uint32_t if_id, uint32_t flags, uint64_t ts, size_t snaplen,
                         size_t out[]);

/* ---- AF_PACKET sockets with PACKET_VNET_HDR (xcon_packet.c) ----------------
 *
 * A packet socket with PACKET_VNET_HDR delivers every packet as a 10-byte
 * struct virtio_net_hdr (host byte order) followed by the frame as the stack
 * left it: the checksum may still be partial (VIRTIO_NET_HDR_F_NEEDS_CSUM)
 * and the frame may be a TSO/GSO super-frame (gso_type, gso_size). These
 * functions turn each packet into finished frames (checksum completed,
 * super-frame split into segments, VLAN tag from PACKET_AUXDATA restored),
 * and send frames with a zero header in front.
 *
 * Results go to out[]: a caller-owned array of XCON_PKT_OUT_LEN size_t.
 */
#define XCON_VNET_HDR_LEN 10
/* read_packets(): a packet is read only while this much room is left (a
 * 64 KiB super-frame cut into segments of 200 bytes or more fits, with a
 * VLAN tag added to each). */
#define XCON_PKT_ROOM 98304
#define XCON_PKT_OUT_LEN 12

/* offload_frame() verdicts: what became of one packet. */
#define XCON_PKT_FORWARDED 0    /* as it was (VLAN tag restored) */
#define XCON_PKT_CSUM 1         /* partial checksum completed */
#define XCON_PKT_SPLIT 2        /* super-frame split into segments */
#define XCON_PKT_UNSUPPORTED 3  /* dropped: an offload this code does not split */
#define XCON_PKT_MALFORMED 4    /* dropped: offload fields inconsistent with the frame */
#define XCON_PKT_BAD_FRAME 5    /* dropped: empty, or no room for the VLAN tag */
#define XCON_PKT_NO_ROOM 6      /* dropped: the output does not fit */

/* The frame frame[0:len] with the header vnet[0:XCON_VNET_HDR_LEN] and VLAN
 * tag (tpid, tci; tpid 0: none) as length-prefixed output frames in
 * dst[dst_start:dst_end]. out: [0] written position, [1] frames written.
 * Returns the verdict. */
int xcon_offload_frame(const uint8_t *vnet, const uint8_t *frame, size_t len,
                       unsigned int tpid, unsigned int tci,
                       uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[]);

/* out: [0] written position, [1] frames written, [2] truncated, [3] outgoing,
 * [4] csum_completed, [5] gso_split, [6] gso_dropped, [7] malformed,
 * [8] bad_frame. Returns 0 or an errno. */
int xcon_read_packets(int fd, uint8_t *buf, size_t start, size_t end, size_t max_count,
                      int vnet_hdr, size_t out[]);

/* write_frames() with a zero struct virtio_net_hdr before each frame.
 * out: [0] consumed, [1] nframes, [2] ndropped. Returns 0 or an errno. */
int xcon_write_packets(int fd, const uint8_t *buf, size_t start, size_t end, size_t out[]);


#endif
