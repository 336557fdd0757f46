// netem_relay: what Linux's netem qdisc does (a fixed delay and random loss
// on every packet), for kernels built without it (CONFIG_NET_SCH_NETEM unset,
// as on the machines these tests run on). It reads IP packets from one TUN
// device and writes them to another `--delay_ms` later, dropping each with
// probability `--loss`. Netlab (tests/netlab.h) routes every packet between
// its test hosts through it, so TCP sees the delay in its round trips and
// recovers the losses itself, as on a real slow and lossy link.
//
//   netem_relay --from=tun0 --to=tun1 --delay_ms=100 --loss=0.05
//
// Both devices must exist (`ip tuntap add dev NAME mode tun`); it runs until
// killed.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, from, "tun0", "TUN device packets are read from.");
ABSL_FLAG(std::string, to, "tun1", "TUN device packets are written to.");
ABSL_FLAG(int, delay_ms, 100, "Delay added to every packet, milliseconds.");
ABSL_FLAG(double, loss, 0, "Probability that a packet is dropped, in [0, 1].");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the loss decisions.");

namespace {

int OpenTun(const std::string& name) {
  const int fd = open("/dev/net/tun", O_RDWR);
  if (fd < 0) {
    std::fprintf(stderr, "netem_relay: /dev/net/tun: %s\n", std::strerror(errno));
    return -1;
  }
  ifreq request{};
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::snprintf(request.ifr_name, IFNAMSIZ, "%s", name.c_str());
  if (ioctl(fd, TUNSETIFF, &request) < 0) {
    std::fprintf(stderr, "netem_relay: attaching to %s: %s\n", name.c_str(), std::strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

struct Packet {
  absl::Time due;
  std::vector<char> bytes;
};

// FIFO of packets in flight: every packet has the same delay, so the front is
// always the next one due.
class DelayLine {
 public:
  void Add(Packet packet) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(packet));
  }

  // Blocks until the front packet is due, then returns it.
  Packet Next() {
    absl::MutexLock lock(&mu_);
    while (true) {
      mu_.Await(absl::Condition(
          +[](std::deque<Packet>* q) { return !q->empty(); }, &queue_));
      const absl::Time due = queue_.front().due;
      const absl::Time now = absl::Now();
      if (due <= now) break;
      mu_.Unlock();
      absl::SleepFor(due - now);
      mu_.Lock();
    }
    Packet packet = std::move(queue_.front());
    queue_.pop_front();
    return packet;
  }

 private:
  absl::Mutex mu_;
  std::deque<Packet> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const double loss = absl::GetFlag(FLAGS_loss);
  if (loss < 0 || loss > 1) {
    std::fprintf(stderr, "netem_relay: --loss must be in [0, 1], not %g\n", loss);
    return 2;
  }
  const absl::Duration delay = absl::Milliseconds(absl::GetFlag(FLAGS_delay_ms));
  const int in = OpenTun(absl::GetFlag(FLAGS_from));
  const int out = OpenTun(absl::GetFlag(FLAGS_to));
  if (in < 0 || out < 0) return 1;

  DelayLine line;
  std::thread writer([&] {
    while (true) {
      const Packet packet = line.Next();
      if (write(out, packet.bytes.data(), packet.bytes.size()) < 0 && errno != EINTR) {
        // A packet the kernel refuses (device going down) is a lost packet.
        continue;
      }
    }
  });
  std::mt19937_64 random(absl::GetFlag(FLAGS_seed));
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<char> buffer(1 << 16);
  while (true) {
    const ssize_t n = read(in, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "netem_relay: reading %s: %s\n", absl::GetFlag(FLAGS_from).c_str(),
                   std::strerror(errno));
      // Not a return: the writer thread still runs and uses `line`.
      std::_Exit(1);
    }
    if (loss > 0 && uniform(random) < loss) continue;
    line.Add(Packet{absl::Now() + delay, std::vector<char>(buffer.data(), buffer.data() + n)});
  }
}
