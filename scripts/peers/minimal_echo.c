/*
 * minimal_echo: the floor for udpd's comparison -- the least user-space work
 * a batched UDP echo can do. Single-threaded, blocking recvmmsg
 * (MSG_WAITFORONE) then sendmmsg.
 *
 *   minimal_echo PORT MODE [BATCH] [THREADS]
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
 *   THREADS threads, each with its own SO_REUSEPORT socket on the port (default
 *           1; the comparison for udpd --workers N).
 *
 * udpd's socket features, off unless set in the environment (plain mode; they
 * tell what the features cost apart from what udpd's own code costs):
 *   MINIMAL_GRO_SOCKOPT=1  UDP_GRO on the socket (nothing coalesces in spread)
 *   MINIMAL_RCVBUF=BYTES   SO_RCVBUFFORCE (udpd's default asks for 512 KiB)
 *   MINIMAL_PKTINFO=1      IP_PKTINFO on every datagram received, and each reply
 *                          sent from the address its request came to
 *   MINIMAL_TIMESTAMPS=1   SO_TIMESTAMPNS on every datagram received (unread)
 *   MINIMAL_REUSEPORT=1    SO_REUSEPORT even with one thread (udpd sets it on
 *                          every worker socket)
 *
 * Binds 0.0.0.0:PORT, prints "listening on 0.0.0.0:PORT" (flushed), exits 0
 * on SIGTERM/SIGINT.  Build: gcc -O2 -pthread -o minimal_echo minimal_echo.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
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
#define FEATURE_CTL 256 /* receive control space with udpd's socket features on */

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

/* One thread's socket and batch arrays. */
struct worker {
    int fd;
    struct mmsghdr rmsg[MAXB], smsg[MAXB];
    struct iovec riov[MAXB], siov[MAXB];
    struct sockaddr_in raddr[MAXB];
    char rctl[MAXB][CMSG_SPACE(sizeof(int))];
    char sctl[MAXB][CMSG_SPACE(sizeof(uint16_t))];
    char feature_rctl[MAXB][FEATURE_CTL];
    char feature_sctl[MAXB][CMSG_SPACE(sizeof(struct in_pktinfo))];
};
static int mode, batch;
/* udpd's socket features (see the top); control buffers for them, one per message. */
static int with_gro_sockopt, with_pktinfo, with_timestamps, rcvbuf_force;

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

/* Sets `sm`'s source address to the one request `rm` was sent to (its IP_PKTINFO). */
static void reply_from_request_address(struct msghdr *sm, char *ctl, struct msghdr *rm) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(rm); c; c = CMSG_NXTHDR(rm, c)) {
        if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_PKTINFO) continue;
        struct in_pktinfo got, out = {0};
        memcpy(&got, CMSG_DATA(c), sizeof got);
        out.ipi_spec_dst = got.ipi_addr;
        sm->msg_control = ctl;
        sm->msg_controllen = CMSG_SPACE(sizeof out);
        struct cmsghdr *d = CMSG_FIRSTHDR(sm);
        d->cmsg_level = IPPROTO_IP;
        d->cmsg_type = IP_PKTINFO;
        d->cmsg_len = CMSG_LEN(sizeof out);
        memcpy(CMSG_DATA(d), &out, sizeof out);
        return;
    }
}

static int same_peer(const struct sockaddr_in *a, const struct sockaddr_in *b) {
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* Send smsg[0..n); retry on partial sends, drop the rest on hard errors. */
static void flush(struct worker *w, int n) {
    int off = 0;
    while (off < n && !stop) {
        int r = sendmmsg(w->fd, w->smsg + off, n - off, 0);
        if (r > 0) { off += r; continue; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == ENOBUFS || errno == EAGAIN)) continue;
        off++; /* EIO/EINVAL etc: skip that message */
    }
}

/* A socket bound to 0.0.0.0:port (SO_REUSEPORT when several threads share it); -1 on error. */
static int open_socket(int port, int reuseport) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        perror("SO_REUSEPORT");
        return -1;
    }
    if (mode == 2 && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) {
        perror("UDP_GRO");
        return -1;
    }
    if ((with_gro_sockopt && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0)
        || (with_pktinfo && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0)
        || (with_timestamps && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0)
        || (rcvbuf_force
            && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_force, sizeof rcvbuf_force) < 0)) {
        perror("feature setsockopt");
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return -1; }
    return fd;
}

static void *serve(void *arg) {
    struct worker *w = arg;
    size_t bsz = mode == 2 ? GRO_BUF : PLAIN_BUF;
    char *bufs = malloc((size_t)batch * bsz);
    if (!bufs) { perror("malloc"); return NULL; }
    for (int i = 0; i < batch; i++) {
        w->riov[i].iov_base = bufs + (size_t)i * bsz;
        w->riov[i].iov_len = bsz;
    }

    while (!stop) {
        for (int i = 0; i < batch; i++) {
            struct msghdr *m = &w->rmsg[i].msg_hdr;
            m->msg_name = &w->raddr[i];
            m->msg_namelen = sizeof w->raddr[i];
            m->msg_iov = &w->riov[i];
            m->msg_iovlen = 1;
            int features = with_gro_sockopt || with_pktinfo || with_timestamps;
            m->msg_control = mode == 2 ? w->rctl[i] : features ? w->feature_rctl[i] : NULL;
            m->msg_controllen = mode == 2 ? sizeof w->rctl[i] : features ? FEATURE_CTL : 0;
            m->msg_flags = 0;
        }
        int n = recvmmsg(w->fd, w->rmsg, batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return NULL;
        }
        int k = 0; /* outgoing messages */
        for (int i = 0; i < n; i++) {
            struct msghdr *rm = &w->rmsg[i].msg_hdr;
            unsigned len = w->rmsg[i].msg_len;
            if (rm->msg_flags & MSG_TRUNC) continue; /* never echo a cut copy */
            if (mode == 2) {
                /* The whole buffer echoed back in place: a GRO train of
                 * segments of size seg (last may be shorter) becomes one GSO
                 * train of the same segments. */
                int seg = gro_size(rm);
                struct msghdr *sm = &w->smsg[k].msg_hdr;
                memset(sm, 0, sizeof *sm);
                sm->msg_name = &w->raddr[i];
                sm->msg_namelen = sizeof w->raddr[i];
                w->siov[k].iov_base = w->riov[i].iov_base;
                w->siov[k].iov_len = len;
                sm->msg_iov = &w->siov[k];
                sm->msg_iovlen = 1;
                if (seg > 0 && (unsigned)seg < len) set_gso(sm, w->sctl[k], (uint16_t)seg);
                k++;
                continue;
            }
            if (mode == 1 && k > 0) {
                /* Extend the previous train (same peer, same size, the last
                 * one may be shorter and closes it); one iovec per segment,
                 * the kernel cuts at the UDP_SEGMENT size. */
                struct msghdr *pm = &w->smsg[k - 1].msg_hdr;
                size_t first = ((struct iovec *)pm->msg_iov)[0].iov_len;
                size_t last = ((struct iovec *)pm->msg_iov)[pm->msg_iovlen - 1].iov_len;
                if (same_peer(pm->msg_name, &w->raddr[i]) && first > 0 && len > 0
                    && len <= first && last == first && pm->msg_iovlen < MAX_GSO_SEGS
                    && pm->msg_iovlen * first + len <= 65507) {
                    /* iovecs of a train are consecutive in w->siov: the train
                     * starting at pm->msg_iov grows by one, and w->siov[k..] is
                     * not yet used by another message. */
                    ((struct iovec *)pm->msg_iov)[pm->msg_iovlen].iov_base = w->riov[i].iov_base;
                    ((struct iovec *)pm->msg_iov)[pm->msg_iovlen].iov_len = len;
                    pm->msg_iovlen++;
                    if (pm->msg_iovlen == 2) set_gso(pm, w->sctl[k - 1], (uint16_t)first);
                    continue;
                }
            }
            struct msghdr *sm = &w->smsg[k].msg_hdr;
            memset(sm, 0, sizeof *sm);
            sm->msg_name = &w->raddr[i];
            sm->msg_namelen = sizeof w->raddr[i];
            sm->msg_iov = &w->siov[i]; /* train iovecs start at the datagram's index */
            w->siov[i].iov_base = w->riov[i].iov_base;
            w->siov[i].iov_len = len;
            sm->msg_iovlen = 1;
            if (with_pktinfo) reply_from_request_address(sm, w->feature_sctl[k], rm);
            k++;
        }
        if (k) flush(w, k);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT plain|gso|grogso [BATCH] [THREADS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    mode = !strcmp(argv[2], "plain") ? 0 : !strcmp(argv[2], "gso") ? 1
         : !strcmp(argv[2], "grogso") ? 2 : -1;
    batch = argc > 3 ? atoi(argv[3]) : 64;
    int threads = argc > 4 ? atoi(argv[4]) : 1;
    if (mode < 0 || batch < 1 || batch > MAXB || port < 0 || port > 65535 || threads < 1
        || threads > 64) {
        fprintf(stderr, "usage: %s PORT plain|gso|grogso [BATCH] [THREADS]\n", argv[0]);
        return 2;
    }
    with_gro_sockopt = getenv("MINIMAL_GRO_SOCKOPT") != NULL;
    with_pktinfo = getenv("MINIMAL_PKTINFO") != NULL;
    with_timestamps = getenv("MINIMAL_TIMESTAMPS") != NULL;
    rcvbuf_force = getenv("MINIMAL_RCVBUF") ? atoi(getenv("MINIMAL_RCVBUF")) : 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_sig; /* no SA_RESTART: recvmmsg returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd = open_socket(port, threads > 1 || getenv("MINIMAL_REUSEPORT") != NULL);
    if (fd < 0) return 1;
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    port = ntohs(a.sin_port);
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) { perror("calloc"); return 1; }
    workers[0].fd = fd;
    for (int t = 1; t < threads; t++)
        if ((workers[t].fd = open_socket(port, 1)) < 0) return 1;
    printf("listening on 0.0.0.0:%d\n", port);
    fflush(stdout);
    /* Only the main thread takes SIGTERM/SIGINT, so its blocked recvmmsg is the one interrupted. */
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    pthread_sigmask(SIG_BLOCK, &term, &old);
    pthread_t ids[64];
    for (int t = 1; t < threads; t++) pthread_create(&ids[t], NULL, serve, &workers[t]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    serve(&workers[0]);
    return 0;
}
