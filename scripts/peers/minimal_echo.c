/*
 * minimal_echo: the floor for udpd's comparison -- the least user-space work
 * a batched UDP echo can do. Single-threaded, blocking recvmmsg
 * (MSG_WAITFORONE) then sendmmsg.
 *
 *   minimal_echo PORT MODE [BATCH]
 *
 *   MODE plain   recvmmsg/sendmmsg, one message per datagram, no offloads.
 *        gso     replies to the same destination that are consecutive and of
 *                the same size (a shorter last one allowed) leave as one
 *                sendmmsg message carrying UDP_SEGMENT.
 *        grogso  UDP_GRO on the socket: each 64 KiB receive buffer may hold a
 *                train of datagrams from one sender, split by the UDP_GRO
 *                cmsg segment size; the replies to one buffer go back as one
 *                GSO train (the buffer is echoed in place).
 *   BATCH   messages per recvmmsg (default 64).
 *
 * Binds 0.0.0.0:PORT, prints "listening on 0.0.0.0:PORT" (flushed), exits 0
 * on SIGTERM/SIGINT.  Build: gcc -O2 -o minimal_echo minimal_echo.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define MAXB 1024
#define PLAIN_BUF 65536 /* never truncate, whatever the mode */
#define GRO_BUF 65536
#define MAX_GSO_SEGS 64 /* kernel UDP_MAX_SEGMENTS */

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static struct mmsghdr rmsg[MAXB], smsg[MAXB];
static struct iovec riov[MAXB], siov[MAXB];
static struct sockaddr_in raddr[MAXB];
static char rctl[MAXB][CMSG_SPACE(sizeof(int))];
static char sctl[MAXB][CMSG_SPACE(sizeof(uint16_t))];

static void set_gso(struct msghdr *m, char *ctl, uint16_t seg) {
    m->msg_control = ctl;
    m->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
    struct cmsghdr *c = CMSG_FIRSTHDR(m);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &seg, sizeof seg);
}

static int gro_size(struct msghdr *m) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof v);
            return v;
        }
    return 0;
}

static int same_peer(const struct sockaddr_in *a, const struct sockaddr_in *b) {
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* Send smsg[0..n); retry on partial sends, drop the rest on hard errors. */
static void flush(int fd, int n) {
    int off = 0;
    while (off < n && !stop) {
        int r = sendmmsg(fd, smsg + off, n - off, 0);
        if (r > 0) { off += r; continue; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == ENOBUFS || errno == EAGAIN)) continue;
        off++; /* EIO/EINVAL etc: skip that message */
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT plain|gso|grogso [BATCH]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int mode = !strcmp(argv[2], "plain") ? 0 : !strcmp(argv[2], "gso") ? 1
             : !strcmp(argv[2], "grogso") ? 2 : -1;
    int batch = argc > 3 ? atoi(argv[3]) : 64;
    if (mode < 0 || batch < 1 || batch > MAXB || port < 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT plain|gso|grogso [BATCH]\n", argv[0]);
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_sig; /* no SA_RESTART: recvmmsg returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (mode == 2 && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) {
        perror("UDP_GRO");
        return 1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    printf("listening on 0.0.0.0:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    size_t bsz = mode == 2 ? GRO_BUF : PLAIN_BUF;
    char *bufs = malloc((size_t)batch * bsz);
    if (!bufs) { perror("malloc"); return 1; }
    for (int i = 0; i < batch; i++) {
        riov[i].iov_base = bufs + (size_t)i * bsz;
        riov[i].iov_len = bsz;
    }

    while (!stop) {
        for (int i = 0; i < batch; i++) {
            struct msghdr *m = &rmsg[i].msg_hdr;
            m->msg_name = &raddr[i];
            m->msg_namelen = sizeof raddr[i];
            m->msg_iov = &riov[i];
            m->msg_iovlen = 1;
            m->msg_control = mode == 2 ? rctl[i] : NULL;
            m->msg_controllen = mode == 2 ? sizeof rctl[i] : 0;
            m->msg_flags = 0;
        }
        int n = recvmmsg(fd, rmsg, batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return 1;
        }
        int k = 0; /* outgoing messages */
        for (int i = 0; i < n; i++) {
            struct msghdr *rm = &rmsg[i].msg_hdr;
            unsigned len = rmsg[i].msg_len;
            if (rm->msg_flags & MSG_TRUNC) continue; /* never echo a cut copy */
            if (mode == 2) {
                /* The whole buffer echoed back in place: a GRO train of
                 * segments of size seg (last may be shorter) becomes one GSO
                 * train of the same segments. */
                int seg = gro_size(rm);
                struct msghdr *sm = &smsg[k].msg_hdr;
                memset(sm, 0, sizeof *sm);
                sm->msg_name = &raddr[i];
                sm->msg_namelen = sizeof raddr[i];
                siov[k].iov_base = riov[i].iov_base;
                siov[k].iov_len = len;
                sm->msg_iov = &siov[k];
                sm->msg_iovlen = 1;
                if (seg > 0 && (unsigned)seg < len) set_gso(sm, sctl[k], (uint16_t)seg);
                k++;
                continue;
            }
            if (mode == 1 && k > 0) {
                /* Extend the previous train (same peer, same size, the last
                 * one may be shorter and closes it); one iovec per segment,
                 * the kernel cuts at the UDP_SEGMENT size. */
                struct msghdr *pm = &smsg[k - 1].msg_hdr;
                size_t first = ((struct iovec *)pm->msg_iov)[0].iov_len;
                size_t last = ((struct iovec *)pm->msg_iov)[pm->msg_iovlen - 1].iov_len;
                if (same_peer(pm->msg_name, &raddr[i]) && first > 0 && len > 0
                    && len <= first && last == first && pm->msg_iovlen < MAX_GSO_SEGS
                    && pm->msg_iovlen * first + len <= 65507) {
                    /* iovecs of a train are consecutive in siov: the train
                     * starting at pm->msg_iov grows by one, and siov[k..] is
                     * not yet used by another message. */
                    ((struct iovec *)pm->msg_iov)[pm->msg_iovlen].iov_base = riov[i].iov_base;
                    ((struct iovec *)pm->msg_iov)[pm->msg_iovlen].iov_len = len;
                    pm->msg_iovlen++;
                    if (pm->msg_iovlen == 2) set_gso(pm, sctl[k - 1], (uint16_t)first);
                    continue;
                }
            }
            struct msghdr *sm = &smsg[k].msg_hdr;
            memset(sm, 0, sizeof *sm);
            sm->msg_name = &raddr[i];
            sm->msg_namelen = sizeof raddr[i];
            sm->msg_iov = &siov[i]; /* train iovecs start at the datagram's index */
            siov[i].iov_base = riov[i].iov_base;
            siov[i].iov_len = len;
            sm->msg_iovlen = 1;
            k++;
        }
        if (k) flush(fd, k);
    }
    return 0;
}
