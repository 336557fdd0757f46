// Netlab: test hosts in Linux network namespaces, so that process-level tests
// can cut, partition and slow down the network between a ps_server and its
// workers as a real network would, with real TCP underneath gRPC.
//
// Every host is a namespace of its own with one veth link (eth0, address
// 10.99.<i>.2) to a router namespace, which forwards between them. Faults are
// made in the router, out of the hosts' sight: iptables DROP rules in its
// FORWARD chain (packets vanish silently: a pulled cable, a partition, a
// half-open connection), and, for latency and loss, every forwarded packet
// routed through tests/netem_relay (the kernels these tests run on lack the
// netem qdisc).
//
// Needs root, iproute2 and iptables. Namespaces are named fx<pid>-<host>; a
// Netlab also deletes the namespaces a crashed test run left behind.
// Not thread-safe; the destructor deletes the namespaces (processes still
// inside keep theirs until they exit).
#ifndef FULCRUM_TESTS_NETLAB_H_
#define FULCRUM_TESTS_NETLAB_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/subprocess.h"

namespace fulcrum {

class Netlab {
 public:
  // Makes the router and one namespace per name in `hosts`. UNAVAILABLE, with
  // the reason, when this machine cannot (not root, no iproute2/iptables,
  // namespaces refused): callers skip their test with it.
  static absl::StatusOr<std::unique_ptr<Netlab>> Create(const std::vector<std::string>& hosts);
  ~Netlab();
  Netlab(const Netlab&) = delete;
  Netlab& operator=(const Netlab&) = delete;

  // The host's address ("10.99.1.2").
  std::string Address(const std::string& host) const;
  // The argv prefix that runs a program on `host` (`ip netns exec NS`).
  std::vector<std::string> Launcher(const std::string& host) const;

  // Every packet to or from `host` is dropped until Reconnect. These four
  // are NOT_FOUND for a host the lab was not made with.
  absl::Status Cut(const std::string& host);
  absl::Status Reconnect(const std::string& host);
  // Packets between `a` and `b`, both ways, are dropped until Unblock; the
  // other paths stay up.
  absl::Status Block(const std::string& a, const std::string& b);
  absl::Status Unblock(const std::string& a, const std::string& b);

  // From now on every packet between hosts is delayed by `delay` and dropped
  // with probability `loss` (each direction of each link, as netem on every
  // host's interface would). `relay_binary` is tests/netem_relay.
  absl::Status Impair(absl::Duration delay, double loss, const std::string& relay_binary);

 private:
  explicit Netlab(std::string prefix) : prefix_(std::move(prefix)) {}
  int Index(const std::string& host) const;
  std::string Namespace(const std::string& host) const { return prefix_ + host; }
  std::string Router() const { return prefix_ + "router"; }
  // Runs `argv`; the error carries its stderr.
  absl::Status Run(const std::vector<std::string>& argv) const;
  absl::Status InRouter(std::vector<std::string> argv) const;
  absl::Status Forwarding(const std::string& action, const std::string& source,
                          const std::string& destination);

  std::string prefix_;
  std::string dir_;  // command logs
  std::vector<std::string> hosts_;
  std::vector<std::string> namespaces_;  // made so far, deleted at the end
  std::unique_ptr<Subprocess> relay_;
};

}  // namespace fulcrum

#endif  // FULCRUM_TESTS_NETLAB_H_
