/*
 * netrelay.c — link delay and loss for the multi-host lab, in user space.
 *
 * This kernel has no netem qdisc (LAB.md), so delay is emulated here: the
 * relay opens one TAP device inside each given network namespace and
 * forwards Ethernet frames between them through a learning switch
 * (relay_core.h), holding every frame for --delay-us and dropping frames at
 * random with --loss percent. With two namespaces it is a point-to-point
 * link; with N it is one shared segment. lab.sh gives the TAPs addresses on
 * a second subnet so MPI's TCP BTL can be pointed at the slow link while
 * ORTE's out-of-band channel stays on the fast bridge.
 *
 * Each TAP is born in its namespace: the relay setns()-es into the namespace
 * before opening /dev/net/tun (the tun driver takes the namespace of the
 * opener) and before TUNSETIFF, then returns to its own namespace. The TAPs
 * are not persistent: they disappear when the relay exits, so a killed relay
 * leaves nothing behind.
 *
 * Timing: one thread, ppoll() with a nanosecond timeout until the earliest
 * queued frame is due (timer slack set to 1 us). Frames are stamped with the
 * time they were read, so the added one-way delay is >= --delay-us.
 *
 * usage: netrelay [--delay-us N] [--loss PCT] [--seed N] [--ifname NAME]
 *                 [--queue-frames N] [--pidfile PATH] NETNS NETNS [NETNS...]
 * NETNS is a name under /run/netns or a path to a namespace file. The pid
 * file is written once every TAP exists (a readiness signal for scripts) and
 * removed on a clean exit. SIGTERM/SIGINT/SIGHUP stop the relay cleanly; it
 * prints its counters to stderr and exits 0. Exit 1 on errors, 2 on usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "deploy/lab/relay_core.h"

#define READ_BATCH_FRAMES 64     /* per port per loop turn, for fairness */

typedef struct relay_port {
    const char  *netns;
    int          fd;
    bool         write_blocked;   /* last write hit EAGAIN: wait for POLLOUT */
    relay_queue  out;             /* frames waiting to be written to this TAP */
} relay_port;

typedef struct relay_counters {
    unsigned long long rx, forwarded, lost, queue_full, oversize, write_errors;
} relay_counters;

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char usage_text[] =
    "usage: netrelay [--delay-us N] [--loss PCT] [--seed N] [--ifname NAME]\n"
    "                [--queue-frames N] [--pidfile PATH] NETNS NETNS [NETNS...]\n"
    "Joins a TAP device in each network namespace into one link that delays\n"
    "every frame by N microseconds (default 0, max 10 s) and drops PCT percent\n"
    "of frames at random (default 0). TAP name default dly0; queue default 4096\n"
    "frames per port. Stops cleanly on SIGTERM/SIGINT and prints its counters.\n";

static int parse_u64(const char *option, const char *text, unsigned long long max,
                     unsigned long long *out, us_err *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
        return us_err_set(err, US_EINVAL, "%s: '%s' is not a non-negative integer",
                          option, text);
    if (v > max)
        return us_err_set(err, US_EINVAL, "%s: %llu is above %llu", option, v, max);
    *out = v;
    return US_OK;
}

static int parse_percent(const char *option, const char *text, double *out, us_err *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0.0 && v <= 100.0))
        return us_err_set(err, US_EINVAL, "%s: '%s' is not a percentage in [0, 100]",
                          option, text);
    *out = v;
    return US_OK;
}

/* Opens a TAP named ifname inside netns (a name under /run/netns or a
 * path) and returns its non-blocking fd in *fd_out. The calling thread is
 * back in its original namespace on return, on success and on error. */
static int open_tap_in_netns(const char *netns, const char *ifname, int *fd_out,
                             us_err *err)
{
    char path[512];
    if (strchr(netns, '/') != NULL)
        snprintf(path, sizeof path, "%s", netns);
    else
        snprintf(path, sizeof path, "/run/netns/%s", netns);

    int rc = US_OK;
    int home_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_fd < 0)
        return us_err_set(err, US_EIO, "open /proc/self/ns/net: %s", strerror(errno));
    int ns_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) {
        rc = us_err_set(err, US_ENOTFOUND, "network namespace %s: open %s: %s",
                        netns, path, strerror(errno));
        goto close_home;
    }
    if (setns(ns_fd, CLONE_NEWNET) != 0) {
        rc = us_err_set(err, US_EIO, "network namespace %s: setns: %s",
                        netns, strerror(errno));
        goto close_ns;
    }
    /* From here on we are inside netns: every exit path goes back home. */
    int tap_fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (tap_fd < 0) {
        int e = errno;
        rc = us_err_set(err, e == ENOENT || e == ENODEV ? US_EUNSUPP : US_EIO,
                        "network namespace %s: open /dev/net/tun: %s%s", netns,
                        strerror(e), e == ENOENT || e == ENODEV
                            ? " (no TUN/TAP support on this machine: delay emulation unavailable)" : "");
        goto go_home;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(tap_fd, TUNSETIFF, &ifr) != 0) {
        rc = us_err_set(err, US_EIO, "network namespace %s: TUNSETIFF %s: %s",
                        netns, ifname, strerror(errno));
        close(tap_fd);
        goto go_home;
    }
    *fd_out = tap_fd;
go_home:
    if (setns(home_fd, CLONE_NEWNET) != 0 && rc == US_OK) {
        rc = us_err_set(err, US_EIO, "cannot return from network namespace %s: %s",
                        netns, strerror(errno));
        close(*fd_out);
    }
close_ns:
    close(ns_fd);
close_home:
    close(home_fd);
    return rc;
}

/* Writes every due frame of port p; stops at EAGAIN (kept for POLLOUT). */
static void flush_due(relay_port *p, uint64_t now_ns, relay_counters *c)
{
    const relay_frame *f;
    while (!p->write_blocked && (f = relay_queue_head(&p->out)) != NULL
           && f->due_ns <= now_ns) {
        ssize_t w = write(p->fd, f->data, f->len);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            p->write_blocked = true;
            return;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            c->write_errors++;      /* e.g. interface down: the frame is lost */
        else
            c->forwarded++;
        relay_queue_pop(&p->out);
    }
}

/* Reads up to READ_BATCH_FRAMES frames from port `in` and queues them. */
static int read_port(relay_port *ports, int in, relay_switch *sw, relay_loss *loss,
                     uint64_t delay_ns, relay_counters *c, us_err *err)
{
    uint8_t buf[65536];
    for (int n = 0; n < READ_BATCH_FRAMES; n++) {
        ssize_t r = read(ports[in].fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return US_OK;
            if (errno == EINTR)
                return US_OK;
            return us_err_set(err, US_EIO, "read TAP in %s: %s",
                              ports[in].netns, strerror(errno));
        }
        c->rx++;
        if (r > RELAY_FRAME_MAX_BYTES) {
            c->oversize++;
            continue;
        }
        if (relay_loss_drop(loss)) {
            c->lost++;
            continue;
        }
        uint64_t due_ns = monotonic_ns() + delay_ns;
        uint32_t mask = relay_switch_route(sw, in, buf, (uint32_t)r);
        for (int p = 0; p < sw->n_ports; p++)
            if ((mask & (1u << p))
                && relay_queue_push(&ports[p].out, buf, (uint32_t)r, due_ns, NULL) != US_OK)
                c->queue_full++;
    }
    return US_OK;
}

static int relay_loop(relay_port *ports, int n_ports, relay_switch *sw, relay_loss *loss,
                      uint64_t delay_ns, const sigset_t *wait_mask, relay_counters *c,
                      us_err *err)
{
    struct pollfd pfds[RELAY_MAX_PORTS];
    while (!stop_signal) {
        uint64_t now = monotonic_ns();
        uint64_t earliest = UINT64_MAX;
        for (int p = 0; p < n_ports; p++) {
            flush_due(&ports[p], now, c);
            const relay_frame *f = relay_queue_head(&ports[p].out);
            if (!ports[p].write_blocked && f != NULL && f->due_ns < earliest)
                earliest = f->due_ns;
            pfds[p].fd = ports[p].fd;
            pfds[p].events = POLLIN | (ports[p].write_blocked ? POLLOUT : 0);
            pfds[p].revents = 0;
        }
        struct timespec timeout, *tp = NULL;
        if (earliest != UINT64_MAX) {
            uint64_t wait = relay_wait_ns(earliest, monotonic_ns());
            timeout.tv_sec = (time_t)(wait / 1000000000ull);
            timeout.tv_nsec = (long)(wait % 1000000000ull);
            tp = &timeout;
        }
        int ready = ppoll(pfds, (nfds_t)n_ports, tp, wait_mask);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return us_err_set(err, US_EIO, "ppoll: %s", strerror(errno));
        }
        for (int p = 0; p < n_ports; p++) {
            if (pfds[p].revents & (POLLERR | POLLNVAL))
                return us_err_set(err, US_EIO, "TAP in %s: poll error (revents 0x%x)",
                                  ports[p].netns, (unsigned)pfds[p].revents);
            if (pfds[p].revents & POLLOUT)
                ports[p].write_blocked = false;
            if (pfds[p].revents & POLLIN) {
                int rc = read_port(ports, p, sw, loss, delay_ns, c, err);
                if (rc != US_OK)
                    return rc;
            }
        }
    }
    return US_OK;
}

static int write_pidfile(const char *path, us_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return us_err_set(err, US_EIO, "pid file %s: %s", tmp, strerror(errno));
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return us_err_set(err, US_EIO, "pid file %s: %s", path, strerror(e));
    }
    return US_OK;
}

int main(int argc, char **argv)
{
    unsigned long long delay_us = 0, seed = 1, queue_frames = 4096;
    double loss_percent = 0.0;
    const char *ifname = "dly0", *pidfile = NULL;
    us_err err = {0};
    static const struct option long_opts[] = {
        { "delay-us", required_argument, 0, 'd' },
        { "loss", required_argument, 0, 'l' },
        { "seed", required_argument, 0, 's' },
        { "ifname", required_argument, 0, 'i' },
        { "queue-frames", required_argument, 0, 'q' },
        { "pidfile", required_argument, 0, 'p' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        int rc = US_OK;
        switch (ch) {
        case 'd': rc = parse_u64("--delay-us", optarg, 10000000ull, &delay_us, &err); break;
        case 'l': rc = parse_percent("--loss", optarg, &loss_percent, &err); break;
        case 's': rc = parse_u64("--seed", optarg, UINT64_MAX, &seed, &err); break;
        case 'q': rc = parse_u64("--queue-frames", optarg, 1u << 20, &queue_frames, &err);
                  break;
        case 'i':
            if (optarg[0] == '\0' || strlen(optarg) >= IFNAMSIZ)
                rc = us_err_set(&err, US_EINVAL, "--ifname: '%s' must be 1..%d characters",
                                optarg, IFNAMSIZ - 1);
            ifname = optarg;
            break;
        case 'p': pidfile = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default:  fputs(usage_text, stderr); return 2;
        }
        if (rc != US_OK) {
            fprintf(stderr, "netrelay: %s\n\n%s", err.msg, usage_text);
            return 2;
        }
    }
    int n_ports = argc - optind;
    if (n_ports < 2 || n_ports > RELAY_MAX_PORTS) {
        fprintf(stderr, "netrelay: need 2..%d network namespaces, got %d\n\n%s",
                RELAY_MAX_PORTS, n_ports, usage_text);
        return 2;
    }

    /* Stop signals are blocked except inside ppoll, so a signal can never be
     * lost between the stop_signal check and the wait. */
    sigset_t block, wait_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGHUP);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);   /* ns; default 50 us blurs the delay */

    relay_port ports[RELAY_MAX_PORTS];
    relay_switch sw;
    relay_loss loss;
    relay_counters counters = {0};
    int status = 1, opened = 0, rc;
    memset(ports, 0, sizeof ports);
    if ((rc = relay_switch_init(&sw, n_ports, &err)) != US_OK
        || (rc = relay_loss_init(&loss, loss_percent, seed, &err)) != US_OK)
        goto report;
    for (; opened < n_ports; opened++) {
        relay_port *p = &ports[opened];
        p->netns = argv[optind + opened];
        p->fd = -1;
        if ((rc = relay_queue_init(&p->out, (uint32_t)queue_frames, &err)) != US_OK)
            goto close_ports;
        if ((rc = open_tap_in_netns(p->netns, ifname, &p->fd, &err)) != US_OK) {
            relay_queue_free(&p->out);
            goto close_ports;
        }
    }
    if (pidfile != NULL && (rc = write_pidfile(pidfile, &err)) != US_OK)
        goto close_ports;
    fprintf(stderr, "netrelay: %d ports (%s in each namespace), delay %llu us, "
            "loss %g%%, seed %llu, queue %llu frames\n",
            n_ports, ifname, delay_us, loss_percent, seed, queue_frames);

    rc = relay_loop(ports, n_ports, &sw, &loss, delay_us * 1000ull, &wait_mask,
                    &counters, &err);
    fprintf(stderr, "netrelay: %s: rx %llu frames, forwarded %llu, lost %llu, "
            "queue-full %llu, oversize %llu, write-errors %llu\n",
            rc == US_OK ? "stopped" : "failed", counters.rx, counters.forwarded,
            counters.lost, counters.queue_full, counters.oversize, counters.write_errors);
    if (pidfile != NULL)
        unlink(pidfile);
    if (rc == US_OK)
        status = 0;
close_ports:
    while (opened-- > 0) {
        close(ports[opened].fd);
        relay_queue_free(&ports[opened].out);
    }
report:
    if (status != 0)
        fprintf(stderr, "netrelay: error: %s (%s)\n", err.msg, us_code_name(err.code));
    return status;
}
