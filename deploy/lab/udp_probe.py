"""udp_probe.py — end-to-end datagram loss between two lab hosts.

  udp_probe.py recv PORT IDLE_S     print "ready", then count datagrams on
                                    UDP PORT until none arrives for IDLE_S
                                    seconds (after the first); print the count
  udp_probe.py send ADDR PORT N GAP_US
                                    send N numbered datagrams to ADDR:PORT,
                                    GAP_US microseconds apart

Used by tests/integration/lab_3hosts.sh to check the relay's loss rate from
outside the relay (its own counters are checked too). Standard library only;
run with /usr/bin/python3.
"""
import socket
import sys
import time


def recv(port, idle_s):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # A big receive buffer, so a receiver descheduled on a loaded machine
    # does not drop datagrams itself (that would look like link loss).
    # SO_RCVBUFFORCE (root) may exceed net.core.rmem_max; fall back quietly.
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    seen = set()
    sock.settimeout(30.0)          # generous wait for the first datagram
    while True:
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            break
        seen.add(data)
        sock.settimeout(idle_s)
    print(len(seen), flush=True)


def send(addr, port, n, gap_us):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(n):
        sock.sendto(b"probe %08d" % i, (addr, port))
        time.sleep(gap_us / 1e6)


def main(argv):
    if len(argv) == 4 and argv[1] == "recv":
        recv(int(argv[2]), float(argv[3]))
    elif len(argv) == 6 and argv[1] == "send":
        send(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
