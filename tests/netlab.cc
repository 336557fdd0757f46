#include "tests/netlab.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status_macros.h"

namespace fulcrum {
namespace {

constexpr char kIp[] = "/usr/sbin/ip";
constexpr char kIptables[] = "/usr/sbin/iptables";
constexpr char kSysctl[] = "/usr/sbin/sysctl";
constexpr int kImpairedTable = 100;  // routing table sending packets to the relay

// Namespaces of earlier runs that were killed before their destructor ran:
// any fx* namespace older than an hour (no test lasts that long).
void DeleteStaleNamespaces() {
  DIR* dir = opendir("/run/netns");
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    struct stat st;
    if (name.rfind("fx", 0) == 0 && stat(("/run/netns/" + name).c_str(), &st) == 0 &&
        st.st_mtime < std::time(nullptr) - 3600) {
      stale.push_back(name);
    }
  }
  closedir(dir);
  for (const std::string& name : stale) {
    Subprocess del;
    if (del.Start({kIp, "netns", "del", name}, "/dev/null", "/dev/null").ok()) {
      del.Wait(absl::Seconds(10)).IgnoreError();
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Netlab>> Netlab::Create(const std::vector<std::string>& hosts) {
  if (geteuid() != 0) {
    return absl::UnavailableError("network namespaces need root; this test runs as another user");
  }
  for (const char* tool : {kIp, kIptables, kSysctl}) {
    if (access(tool, X_OK) != 0) {
      return absl::UnavailableError(absl::StrCat(tool, " is missing (iproute2, iptables, procps)"));
    }
  }
  DeleteStaleNamespaces();
  std::random_device random;
  const uint32_t tag = std::uniform_int_distribution<uint32_t>(0, 0xffffff)(random);
  char prefix[16];
  std::snprintf(prefix, sizeof(prefix), "fx%06x-", tag);
  std::unique_ptr<Netlab> lab(new Netlab(prefix));
  lab->dir_ = TestDir(absl::StrCat("netlab-", prefix));
  lab->hosts_ = hosts;

  const std::string router = lab->Router();
  if (absl::Status s = lab->Run({kIp, "netns", "add", router}); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot make a network namespace here: ", s.message()));
  }
  lab->namespaces_.push_back(router);
  FULCRUM_RETURN_IF_ERROR(lab->InRouter({kSysctl, "-qw", "net.ipv4.ip_forward=1"}));
  // Packets come back from the relay on a device other than the one their
  // source is routed through; strict reverse-path filtering would drop them.
  FULCRUM_RETURN_IF_ERROR(lab->InRouter({kSysctl, "-qw", "net.ipv4.conf.all.rp_filter=0"}));
  FULCRUM_RETURN_IF_ERROR(lab->InRouter({kSysctl, "-qw", "net.ipv4.conf.default.rp_filter=0"}));
  FULCRUM_RETURN_IF_ERROR(lab->Run({kIp, "-n", router, "link", "set", "lo", "up"}));
  for (size_t i = 0; i < hosts.size(); ++i) {
    const std::string ns = lab->Namespace(hosts[i]);
    const std::string link = absl::StrCat("h", i + 1);
    const std::string subnet = absl::StrCat("10.99.", i + 1, ".");
    FULCRUM_RETURN_IF_ERROR(lab->Run({kIp, "netns", "add", ns}));
    lab->namespaces_.push_back(ns);
    FULCRUM_RETURN_IF_ERROR(lab->Run({kIp, "-n", router, "link", "add", link, "type", "veth",
                                      "peer", "name", "eth0", "netns", ns}));
    FULCRUM_RETURN_IF_ERROR(
        lab->Run({kIp, "-n", router, "addr", "add", subnet + "1/24", "dev", link}));
    FULCRUM_RETURN_IF_ERROR(lab->Run({kIp, "-n", router, "link", "set", link, "up"}));
    FULCRUM_RETURN_IF_ERROR(
        lab->Run({kIp, "-n", ns, "addr", "add", subnet + "2/24", "dev", "eth0"}));
    FULCRUM_RETURN_IF_ERROR(lab->Run({kIp, "-n", ns, "link", "set", "eth0", "up"}));
    FULCRUM_RETURN_IF_ERROR(lab->Run({kIp, "-n", ns, "link", "set", "lo", "up"}));
    FULCRUM_RETURN_IF_ERROR(
        lab->Run({kIp, "-n", ns, "route", "add", "default", "via", subnet + "1"}));
  }
  return lab;
}

Netlab::~Netlab() {
  if (relay_ != nullptr) relay_.reset();  // SIGKILLs it
  for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) {
    Run({kIp, "netns", "del", *it}).IgnoreError();
  }
}

int Netlab::Index(const std::string& host) const {
  auto it = std::find(hosts_.begin(), hosts_.end(), host);
  return it == hosts_.end() ? -1 : static_cast<int>(it - hosts_.begin());
}

std::string Netlab::Address(const std::string& host) const {
  const int i = Index(host);
  return i < 0 ? std::string("0.0.0.0") : absl::StrCat("10.99.", i + 1, ".2");
}

std::vector<std::string> Netlab::Launcher(const std::string& host) const {
  return {kIp, "netns", "exec", Namespace(host)};
}

absl::Status Netlab::Run(const std::vector<std::string>& argv) const {
  static int count = 0;
  absl::Status done =
      RunToCompletion(argv, absl::StrCat(dir_, "/cmd", ++count), absl::Seconds(30)).status();
  if (done.ok()) return done;
  return absl::Status(done.code(), absl::StrCat(absl::StrJoin(argv, " "), ": ", done.message()));
}

absl::Status Netlab::InRouter(std::vector<std::string> argv) const {
  argv.insert(argv.begin(), {kIp, "netns", "exec", Router()});
  return Run(argv);
}

absl::Status Netlab::Forwarding(const std::string& action, const std::string& source,
                                const std::string& destination) {
  std::vector<std::string> argv = {kIptables, action, "FORWARD"};
  for (const auto& [option, host] : {std::pair{"-s", source}, std::pair{"-d", destination}}) {
    if (host.empty()) continue;
    if (Index(host) < 0) return absl::NotFoundError("this lab has no host " + host);
    argv.insert(argv.end(), {option, Address(host)});
  }
  argv.insert(argv.end(), {"-j", "DROP"});
  return InRouter(argv);
}

absl::Status Netlab::Cut(const std::string& host) {
  FULCRUM_RETURN_IF_ERROR(Forwarding("-I", host, ""));
  return Forwarding("-I", "", host);
}

absl::Status Netlab::Reconnect(const std::string& host) {
  FULCRUM_RETURN_IF_ERROR(Forwarding("-D", host, ""));
  return Forwarding("-D", "", host);
}

absl::Status Netlab::Block(const std::string& a, const std::string& b) {
  FULCRUM_RETURN_IF_ERROR(Forwarding("-I", a, b));
  return Forwarding("-I", b, a);
}

absl::Status Netlab::Unblock(const std::string& a, const std::string& b) {
  FULCRUM_RETURN_IF_ERROR(Forwarding("-D", a, b));
  return Forwarding("-D", b, a);
}

absl::Status Netlab::Impair(absl::Duration delay, double loss, const std::string& relay_binary) {
  if (relay_ != nullptr) return absl::FailedPreconditionError("the links are already impaired");
  const std::string router = Router();
  for (const char* tun : {"tun0", "tun1"}) {
    FULCRUM_RETURN_IF_ERROR(Run({kIp, "-n", router, "tuntap", "add", "dev", tun, "mode", "tun"}));
    FULCRUM_RETURN_IF_ERROR(Run({kIp, "-n", router, "link", "set", tun, "up"}));
  }
  relay_ = std::make_unique<Subprocess>();
  std::vector<std::string> argv = {kIp,
                                   "netns",
                                   "exec",
                                   router,
                                   relay_binary,
                                   "--from=tun0",
                                   "--to=tun1",
                                   absl::StrCat("--delay_ms=", absl::ToInt64Milliseconds(delay)),
                                   absl::StrCat("--loss=", loss)};
  FULCRUM_RETURN_IF_ERROR(relay_->Start(argv, dir_ + "/relay.out", dir_ + "/relay.err"));
  if (relay_->Wait(absl::Milliseconds(300)).ok()) {
    return absl::InternalError("netem_relay exited: " + ReadFileOrEmpty(dir_ + "/relay.err"));
  }
  // Packets arriving from a host go to the relay (tun0); what the relay
  // writes to tun1 is routed to its destination by the main table.
  const std::string table = absl::StrCat(kImpairedTable);
  FULCRUM_RETURN_IF_ERROR(
      Run({kIp, "-n", router, "route", "add", "default", "dev", "tun0", "table", table}));
  for (size_t i = 0; i < hosts_.size(); ++i) {
    FULCRUM_RETURN_IF_ERROR(
        Run({kIp, "-n", router, "rule", "add", "iif", absl::StrCat("h", i + 1), "lookup", table}));
  }
  FULCRUM_RETURN_IF_ERROR(InRouter({kSysctl, "-qw", "net.ipv4.conf.tun1.rp_filter=0"}));
  return absl::OkStatus();
}

}  // namespace fulcrum
