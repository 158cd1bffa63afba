#pragma once
// A free TCP port of 127.0.0.1, for the etcd servers that the cluster
// tests and the cluster benchmark start.

namespace packlock::test {

// A port nobody listens on now (the kernel's choice for port 0).
int free_loopback_port();

}  // namespace packlock::test
