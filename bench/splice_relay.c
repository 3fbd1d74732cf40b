/* The ceiling for any relay: connect to two TCP endpoints and move bytes both
 * ways with splice() through a pipe (no copy to user space, no framing).
 * usage: splice_relay HOST1 PORT1 HOST2 PORT2 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static int dial(const char *host, int port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad host\n"); exit(2); }
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(fd, F_SETFL, O_NONBLOCK);
            return fd;
        }
        close(fd);
        usleep(10000);
    }
    perror("connect");
    exit(1);
}

struct dir { int src, dst, p[2]; size_t inpipe; };

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: splice_relay H1 P1 H2 P2\n"); return 2; }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int a = dial(argv[1], atoi(argv[2])), b = dial(argv[3], atoi(argv[4]));
    struct dir d[2] = {{a, b, {0, 0}, 0}, {b, a, {0, 0}, 0}};
    for (int i = 0; i < 2; i++) {
        if (pipe2(d[i].p, O_NONBLOCK) < 0) { perror("pipe"); return 1; }
        fcntl(d[i].p[1], F_SETPIPE_SZ, CHUNK);
    }
    for (;;) {
        struct pollfd pf[2] = {{a, 0, 0}, {b, 0, 0}};
        for (int i = 0; i < 2; i++) {
            struct pollfd *ps = &pf[i], *pd = &pf[1 - i];
            if (d[i].inpipe < CHUNK) ps->events |= POLLIN;
            if (d[i].inpipe) pd->events |= POLLOUT;
        }
        if (poll(pf, 2, -1) < 0) { if (errno == EINTR) continue; return 1; }
        for (int i = 0; i < 2; i++) {
            struct dir *x = &d[i];
            for (int k = 0; k < 4; k++) {
                ssize_t n = 0;
                if (x->inpipe < CHUNK) {
                    n = splice(x->src, NULL, x->p[1], NULL, CHUNK - x->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                    if (n == 0) return 0;
                    if (n < 0 && errno != EAGAIN) return 1;
                    if (n > 0) x->inpipe += n;
                }
                ssize_t m = 0;
                if (x->inpipe) {
                    m = splice(x->p[0], NULL, x->dst, NULL, x->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                    if (m < 0 && errno != EAGAIN) return 1;
                    if (m > 0) x->inpipe -= m;
                }
                if (n <= 0 && m <= 0) break;
            }
        }
    }
}
