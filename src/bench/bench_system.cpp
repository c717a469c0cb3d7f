#include "bench/bench_system.h"

#include "util/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>

namespace flashmoe::bench {

namespace fs = std::filesystem;

namespace {

std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    size_t i = 0;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    return s.substr(i);
}

// The value after "key:" on the first line of `path` starting with `key` ("" when absent).
std::string field_of(const std::string& path, const std::string& key) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key, 0) != 0) continue;
        size_t colon = line.find(':');
        if (colon != std::string::npos) return trim(line.substr(colon + 1));
    }
    return "";
}

uint64_t meminfo_bytes(const std::string& key) {
    std::string v = field_of("/proc/meminfo", key);  // "24563412 kB"
    return v.empty() ? 0 : uint64_t(std::strtoull(v.c_str(), nullptr, 10)) * 1024;
}

std::string gpu_names() {
    std::string out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
        std::string model = field_of((e.path() / "information").string(), "Model");
        if (model.empty()) continue;
        out += (out.empty() ? "" : ", ") + model;
    }
    return out;
}

}  // namespace

MachineInfo collect_machine_info() {
    MachineInfo m;
    m.cpu_model = field_of("/proc/cpuinfo", "model name");
    m.cpus = int(sysconf(_SC_NPROCESSORS_ONLN));
    m.ram_bytes = meminfo_bytes("MemTotal");
    struct utsname u {};
    if (uname(&u) == 0) {
        m.kernel = std::string(u.sysname) + " " + u.release;
        m.hostname = u.nodename;
    }
    std::time_t now = std::time(nullptr);
    char buf[32];
    std::tm tm {};
    gmtime_r(&now, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    m.date_utc = buf;
    m.gpu = gpu_names();
    return m;
}

double load_average_1m() {
    double l[1];
    return getloadavg(l, 1) == 1 ? l[0] : -1.0;
}

std::optional<uint64_t> process_disk_read_bytes() {
    std::string v = field_of("/proc/self/io", "read_bytes");
    if (v.empty()) return std::nullopt;
    return uint64_t(std::strtoull(v.c_str(), nullptr, 10));
}

CpuTimes process_cpu_times() {
    CpuTimes t;
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/proc/self/task", ec)) {
        std::ifstream in(e.path() / "schedstat");
        unsigned long long run = 0, wait = 0;
        if (in >> run >> wait) {
            t.cpu_seconds += double(run) * 1e-9;
            t.runqueue_seconds += double(wait) * 1e-9;
        }
    }
    return t;
}

std::vector<std::string> model_files(const std::string& model_dir) {
    std::vector<std::string> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(model_dir, ec);
    if (ec) fail(ErrorKind::Io, "{}: cannot list the model directory: {}", model_dir, ec.message());
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) fail(ErrorKind::Io, "{}: cannot list the model directory: {}", model_dir, ec.message());
        if (it->is_regular_file()) files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    return files;
}

PageCacheResult drop_page_cache(const std::string& model_dir, bool system_wide) {
    auto t0 = std::chrono::steady_clock::now();
    PageCacheResult r;
    r.method = "fadvise";
    if (system_wide) {
        ::sync();
        int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
        bool ok = fd >= 0 && ::write(fd, "1", 1) == 1;
        int err = errno;
        if (fd >= 0) ::close(fd);
        if (ok) r.method = "drop_caches+fadvise";
        else r.note = fmt::format("/proc/sys/vm/drop_caches not writable ({}; needs root outside a container): "
                                  "model files evicted with posix_fadvise only", std::strerror(err));
    }
    int failed = 0;
    for (const auto& path : model_files(model_dir)) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            ++failed;
            continue;
        }
        ::fdatasync(fd);
        if (::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) ++failed;
        ::close(fd);
    }
    if (failed) r.note += fmt::format("{}posix_fadvise failed on {} file(s)", r.note.empty() ? "" : "; ", failed);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

PageCacheResult preload_page_cache(const std::string& model_dir) {
    auto t0 = std::chrono::steady_clock::now();
    PageCacheResult r;
    r.method = "preload";
    uint64_t total = 0;
    std::vector<char> buf(size_t(8) << 20);
    for (const auto& path : model_files(model_dir)) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail(ErrorKind::Io, "cannot open {}: {}", path, std::strerror(errno));
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        for (;;) {
            ssize_t n = ::read(fd, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            total += uint64_t(n);
        }
        ::close(fd);
    }
    uint64_t available = meminfo_bytes("MemAvailable");
    if (available && total > available) {
        r.note = fmt::format("the model files ({:.1f} GB) exceed the memory available for caching ({:.1f} GB): "
                             "part of them stays on disk", double(total) / 1e9, double(available) / 1e9);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

double page_cache_resident_share(const std::string& model_dir) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    uint64_t pages = 0, resident = 0;
    std::vector<unsigned char> vec;
    for (const auto& path : model_files(model_dir)) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return -1.0;
        struct stat st {};
        ::fstat(fd, &st);
        const size_t size = size_t(st.st_size);
        if (size == 0) {
            ::close(fd);
            continue;
        }
        void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
        ::close(fd);
        if (map == MAP_FAILED) return -1.0;
        const size_t n = (size + page - 1) / page;
        vec.assign(n, 0);
        if (::mincore(map, size, vec.data()) == 0) {
            pages += n;
            for (unsigned char c : vec) resident += c & 1;
        }
        ::munmap(map, size);
    }
    return pages ? double(resident) / double(pages) : -1.0;
}

}  // namespace flashmoe::bench
