#!/usr/bin/env python3
"""Prints the first of N consecutive free loopback ports, below the kernel's ephemeral range so
that no outgoing connection of another test can be holding one (the deploy tests' servers).

  free_ports.py N        exit 1 when no such run is found
"""
import random
import socket
import sys

n = int(sys.argv[1])
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    base = random.randrange(20000, low - n)
    held = []
    try:
        for port in range(base, base + n):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
        print(base)
        sys.exit(0)
    except OSError:
        pass
    finally:
        for s in held:
            s.close()
sys.exit(1)
