// flashmoe bench MODEL [-p 512] [-n 128] [-r 3] [--k 4,6,8] [--cache 2GiB,4GiB] [--io page-cache,direct]
//                [--device cpu,cuda] [--cold | --warm] [--json FILE] [--plot FILE.svg]
//
// Measures every combination of the listed values as one row: prompt processing and decode tok/s
// (mean ± sd over repetitions), TTFT, bytes read from disk per token, expert cache hit rate, share of
// time waiting on reads, peak RSS, and decode as a fraction of the disk-bandwidth limit, the bandwidth
// itself measured first (bench/disk_probe.h). Each row runs in a fresh child process (this binary,
// re-run with the hidden --row-out flag), so that its peak RSS and its page-cache starting state are
// its own. Output: a header and a Markdown table on stdout, progress on stderr, optional JSON and plot.
#include "bench/bench_report.h"
#include "bench/bench_row.h"
#include "bench/bench_system.h"
#include "bench/disk_probe.h"
#include "cli/command.h"
#include "cli/options.h"
#include "engine/loaded_model.h"
#include "model/cuda/cuda_runner.h"
#include "store/expert_store.h"
#include "util/error.h"
#include "util/progress.h"
#include "util/sys.h"
#include "util/thread_pool.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

extern char** environ;

namespace flashmoe::cli {
namespace {

using namespace flashmoe::bench;

struct BenchArgs {
    std::string model;
    int64_t prompt = 512, gen = 128;
    int reps = 3;
    std::string k = "0", cache = "2GiB", io = "page-cache", device = "cpu", vram = "6GiB";
    std::string json, plot;
    bool cold = false, drop_caches = false, warm = false, no_probe = false, in_process = false;
    double probe_seconds = 3;
    uint64_t seed = 1;
    int threads = 0, io_threads = 8;
    // Child mode (hidden): run exactly one row and write its JSON here.
    std::string row_out, start_state = "as found", row_label;
};

std::vector<std::string> split_list(const std::string& text, const char* flag) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string::npos) end = text.size();
        std::string item = text.substr(start, end - start);
        while (!item.empty() && item.front() == ' ') item.erase(item.begin());
        while (!item.empty() && item.back() == ' ') item.pop_back();
        if (item.empty()) fail(ErrorKind::BadInput, "{} '{}': empty entry in the list", flag, text);
        out.push_back(item);
        start = end + 1;
    }
    return out;
}

std::vector<int64_t> parse_k_list(const std::string& text) {
    std::vector<int64_t> out;
    for (const auto& item : split_list(text, "--k")) {
        char* end = nullptr;
        long long v = std::strtoll(item.c_str(), &end, 10);
        if (end != item.c_str() + item.size() || v < 0) {
            fail(ErrorKind::BadInput, "--k '{}' is not a non-negative integer (0 = the model's K)", item);
        }
        out.push_back(v);
    }
    return out;
}

// Everything after the program name, as given (for the report).
std::string command_line() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), out = "flashmoe";
    size_t start = all.find('\0');
    while (start != std::string::npos && start + 1 < all.size()) {
        size_t end = all.find('\0', start + 1);
        std::string arg = all.substr(start + 1, end == std::string::npos ? std::string::npos : end - start - 1);
        out += " " + (arg.find(' ') != std::string::npos ? "'" + arg + "'" : arg);
        start = end;
    }
    return out;
}

// A status line on stderr: redrawn in place on a terminal, milestones only otherwise.
class StatusLine {
public:
    StatusLine() : tty_(::isatty(STDERR_FILENO)) {}
    void show(const std::string& line, bool milestone) {
        if (tty_) {
            fmt::print(stderr, "\r\033[K{}", line);
            if (milestone) fmt::print(stderr, "\n");
        } else if (milestone) {
            fmt::print(stderr, "{}\n", line);
        }
        std::fflush(stderr);
    }

private:
    bool tty_;
};

ExpertStoreOptions store_options(const BenchArgs& a, const std::string& io, uint64_t cache_bytes) {
    ExpertStoreOptions o;
    o.mode = parse_io_mode(io);
    o.cache_bytes = cache_bytes;
    o.io_threads = a.io_threads;
    return o;
}

// CUDA rows keep the dense weights and --vram of experts on the GPU; --cache is the pinned host tier.
RunnerOptions runner_options(const BenchArgs& a, const std::string& device) {
    RunnerOptions r;
    r.device = parse_device(device);
    r.vram_bytes = parse_size(a.vram, "--vram");
    return r;
}

// Child mode: one row in this process, its JSON to --row-out.
int run_child(const BenchArgs& a) {
    RowSpec spec;
    spec.k = parse_k_list(a.k).at(0);
    spec.cache_text = a.cache;
    spec.cache_bytes = parse_size(a.cache, "--cache");
    spec.io = a.io;
    spec.device = a.device;
    spec.prompt_tokens = a.prompt;
    spec.gen_tokens = a.gen;
    spec.reps = a.reps;
    spec.seed = a.seed;
    spec.start_state = a.start_state;
    if (a.threads > 0) set_default_pool_threads(a.threads);
    auto model = LoadedModel::open(a.model, store_options(a, a.io, spec.cache_bytes), runner_options(a, spec.device));
    StatusLine status;
    RowResult r = run_row(*model, spec, [&](const std::string& line, bool milestone) {
        status.show(fmt::format("{} {}", a.row_label, line), milestone);
    });
    std::ofstream out(a.row_out, std::ios::trunc);
    out << to_json(r).dump(2) << "\n";
    out.close();
    if (!out) fail(ErrorKind::Io, "cannot write {}", a.row_out);
    return 0;
}

// Runs one row in a child process; a failed child becomes a row with status "failed: ...".
RowResult spawn_row(const BenchArgs& a, const std::string& model_path, const RowSpec& spec, const std::string& label) {
    std::error_code ec;
    const std::string exe = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (ec) fail(ErrorKind::Io, "cannot find this program's path (/proc/self/exe): {}", ec.message());
    const std::string out = (std::filesystem::temp_directory_path() /
                             fmt::format("flashmoe-bench-{}-{}.json", ::getpid(), std::hash<std::string>{}(label)))
                                .string();
    std::vector<std::string> args = {exe,
                                     "bench",
                                     model_path,
                                     "-p", std::to_string(spec.prompt_tokens),
                                     "-n", std::to_string(spec.gen_tokens),
                                     "-r", std::to_string(spec.reps),
                                     "--k", std::to_string(spec.k),
                                     "--cache", spec.cache_text,
                                     "--io", spec.io,
                                     "--device", spec.device,
                                     "--vram", a.vram,
                                     "--seed", std::to_string(spec.seed),
                                     "--threads", std::to_string(a.threads),
                                     "--io-threads", std::to_string(a.io_threads),
                                     "--start-state", spec.start_state,
                                     "--row-label", label,
                                     "--row-out", out};
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), environ);
    if (rc != 0) fail(ErrorKind::Io, "cannot start {}: {}", exe, std::strerror(rc));
    int wstatus = 0;
    struct rusage ru {};
    while (::wait4(pid, &wstatus, 0, &ru) < 0) {
        if (errno != EINTR) fail(ErrorKind::Io, "waiting for the bench row: {}", std::strerror(errno));
    }
    RowResult r;
    r.spec = spec;
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        r.status = WIFEXITED(wstatus) ? fmt::format("failed: exit code {}", WEXITSTATUS(wstatus))
                                      : fmt::format("failed: killed by signal {}", WTERMSIG(wstatus));
        std::remove(out.c_str());
        return r;
    }
    try {
        std::ifstream in(out);
        r = row_result_from_json(nlohmann::json::parse(in));
    } catch (const nlohmann::json::exception& e) {
        r.status = fmt::format("failed: unreadable row result: {}", e.what());
    }
    std::remove(out.c_str());
    r.peak_rss = std::max<uint64_t>(r.peak_rss, uint64_t(ru.ru_maxrss) * 1024);
    return r;
}

std::string describe_model(LoadedModel& m) {
    const ModelConfig& c = m.config();
    WeightSummary w = m.summary();
    std::string s = fmt::format("{} layers, hidden {}, {} experts, K={}; experts {:.2f} GB, dense {:.2f} GB; {}",
                                c.num_layers, c.hidden_size, c.num_experts, c.num_experts_per_tok,
                                double(w.expert_bytes) / 1e9, double(w.dense_bytes) / 1e9, w.quantization);
    if (ExpertStore* store = m.expert_store()) {
        s += fmt::format("; expert record {} bytes", store->layout().record_stride);
    }
    return s;
}

int run_bench(const BenchArgs& a) {
    if (!a.row_out.empty()) return run_child(a);
    if (a.cold && a.warm) fail(ErrorKind::BadInput, "--cold and --warm exclude each other");
    if (a.prompt < 1) fail(ErrorKind::BadInput, "-p must be at least 1");
    if (a.gen < 1) fail(ErrorKind::BadInput, "-n must be at least 1");
    if (a.reps < 1) fail(ErrorKind::BadInput, "-r must be at least 1");
    if (a.io_threads < 1 || a.io_threads > 256) fail(ErrorKind::BadInput, "--io-threads must be between 1 and 256");
    if (a.threads < 0) fail(ErrorKind::BadInput, "--threads must not be negative");
    if (!a.plot.empty()) {
        const std::string ext = std::filesystem::path(a.plot).extension().string();
        if (ext != ".svg" && ext != ".png") fail(ErrorKind::BadInput, "--plot {}: the name must end in .svg or .png", a.plot);
        if (ext == ".png" && std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
            fail(ErrorKind::BadInput, "--plot {}: PNG output needs gnuplot, which is not installed; use a .svg name", a.plot);
        }
    }
    const std::vector<int64_t> ks = parse_k_list(a.k);
    std::vector<std::pair<std::string, uint64_t>> caches;
    for (const auto& c : split_list(a.cache, "--cache")) caches.emplace_back(c, parse_size(c, "--cache"));
    const std::vector<std::string> ios = split_list(a.io, "--io"), devices = split_list(a.device, "--device");
    for (const auto& io : ios) parse_io_mode(io);
    for (const auto& d : devices) {
        if (d != "cpu" && d != "cuda") fail(ErrorKind::BadInput, "--device '{}' is not one of cpu, cuda", d);
    }

    BenchReport report;
    report.command = command_line();
    report.machine = collect_machine_info();
    int64_t layers = 0, experts = 0;
    {
        // Opened once to resolve a snapshot into its packed copy and read the shapes; closed before rows.
        ModelFlags mf;
        mf.cache = "64MiB";
        mf.io_threads = 1;
        auto m = open_model(a.model, mf);
        if (!m->expert_store()) fail(ErrorKind::BadInput, "{}: bench needs a packed model (not --no-convert)", a.model);
        for (int64_t k : ks) {
            if (k > m->config().num_experts) {
                fail(ErrorKind::BadInput, "--k {} is more than the model's {} experts", k, m->config().num_experts);
            }
        }
        report.model_path = m->path();
        report.model_summary = describe_model(*m);
        report.expert_record_bytes = m->expert_store()->layout().record_stride;
        layers = m->config().num_layers;
        experts = m->config().num_experts;
    }
    StatusLine status;
    if (!a.no_probe) {
        status.show(fmt::format("measuring disk bandwidth ({} parallel O_DIRECT reads of {} for {:.0f} s)...",
                                a.io_threads, format_bytes(report.expert_record_bytes), a.probe_seconds), false);
        DiskProbeOptions po;
        po.model_dir = report.model_path;
        po.layers = layers;
        po.experts = experts;
        po.record_stride = report.expert_record_bytes;
        po.threads = a.io_threads;
        po.seconds = a.probe_seconds;
        po.seed = a.seed;
        report.disk = probe_disk(po);
        status.show(fmt::format("disk: {:.2f} GB/s", report.disk->bytes_per_second / 1e9), true);
    }
    const bool have_gpu = cuda_device_count() > 0;
    if (std::find(devices.begin(), devices.end(), "cuda") != devices.end() && !have_gpu) {
        report.notes.push_back("--device cuda: no CUDA device (or a build without CUDA); those rows are skipped");
    }

    // Rows: device, then I/O mode, then cache size, then K (the plot's series are K/io/device).
    std::vector<RowSpec> specs;
    for (const auto& device : devices)
        for (const auto& io : ios)
            for (const auto& [text, bytes] : caches) {
                // Mapped experts on the CPU ignore the budget: one row per K is enough.
                if (io == "mmap" && device == "cpu" && text != caches.front().first) continue;
                for (int64_t k : ks) {
                    RowSpec s;
                    s.k = k;
                    s.cache_text = text;
                    s.cache_bytes = bytes;
                    s.io = io;
                    s.device = device;
                    s.prompt_tokens = a.prompt;
                    s.gen_tokens = a.gen;
                    s.reps = a.reps;
                    s.seed = a.seed;
                    specs.push_back(s);
                }
            }
    std::string prep_note;
    for (size_t i = 0; i < specs.size(); ++i) {
        RowSpec& s = specs[i];
        const std::string label = fmt::format("[{}/{}] K={} cache={} io={} {}", i + 1, specs.size(),
                                              s.k ? std::to_string(s.k) : "model", s.cache_text, s.io, s.device);
        if (s.device == "cuda" && !have_gpu) {
            RowResult r;
            r.spec = s;
            r.status = "skipped: no CUDA device";
            status.show(fmt::format("{}: {}", label, r.status), true);
            report.rows.push_back(r);
            continue;
        }
        if (a.cold) {
            status.show(fmt::format("{}: dropping the model from the page cache", label), false);
            PageCacheResult pc = drop_page_cache(report.model_path, a.drop_caches);
            s.start_state = "cold (" + pc.method + ")";
            if (!pc.note.empty()) prep_note = pc.note;
        } else if (a.warm) {
            status.show(fmt::format("{}: reading the model into the page cache", label), false);
            PageCacheResult pc = preload_page_cache(report.model_path);
            s.start_state = "warm (preloaded)";
            if (!pc.note.empty()) prep_note = pc.note;
        } else {
            s.start_state = "as found";
        }
        const double resident = page_cache_resident_share(report.model_path);
        RowResult r;
        if (a.in_process) {
            auto m = LoadedModel::open(report.model_path, store_options(a, s.io, s.cache_bytes), runner_options(a, s.device));
            r = run_row(*m, s, [&](const std::string& line, bool milestone) {
                status.show(fmt::format("{} {}", label, line), milestone);
            });
        } else {
            r = spawn_row(a, report.model_path, s, label);
        }
        r.cache_resident_share_start = resident;
        if (r.ok()) {
            status.show(fmt::format("{}: pp {:.1f} tok/s, TTFT {:.2f} s, tg {:.2f} tok/s, hit {:.1f}%, {:.1f} MB/token, "
                                    "peak RSS {}", label, summarize(r.prefill_tok_s).mean, summarize(r.ttft_s).mean,
                                    summarize(r.decode_tok_s).mean, r.decode.hit_rate() * 100,
                                    r.decode.disk_bytes_per_token() / 1e6, format_bytes(r.peak_rss)),
                        true);
        } else {
            status.show(fmt::format("{}: {}", label, r.status), true);
        }
        report.rows.push_back(std::move(r));
    }
    if (!prep_note.empty()) report.notes.push_back(prep_note);
    if (a.in_process) report.notes.push_back("--in-process: peak RSS is the running maximum over rows");
    if (!process_disk_read_bytes()) {
        report.notes.push_back("/proc/self/io is not available: disk bytes are the expert store's reads");
    }

    fmt::print("{}\n{}", text_header(report), markdown_table(report));
    std::fflush(stdout);
    if (!a.json.empty()) {
        std::ofstream out(a.json, std::ios::trunc);
        out << to_json(report).dump(2) << "\n";
        out.close();
        if (!out) fail(ErrorKind::Io, "cannot write {}", a.json);
    }
    if (!a.plot.empty()) write_plot(report, a.plot);
    for (const auto& r : report.rows) {
        if (r.status.rfind("failed", 0) == 0) return exit_code_for(ErrorKind::Internal);
    }
    return 0;
}

CommandRegistration reg("bench", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<BenchArgs>();
    auto* cmd = app.add_subcommand("bench", "measure pp/tg tok/s, TTFT, I/O per token, hit rate and memory");
    cmd->add_option("model", a->model, "packed model, or HF/MLX snapshot directory")->required();
    cmd->add_option("-p,--prompt-tokens", a->prompt, "random prompt length")->capture_default_str();
    cmd->add_option("-n,--gen-tokens", a->gen, "tokens to generate")->capture_default_str();
    cmd->add_option("-r,--reps", a->reps, "repetitions per row")->capture_default_str();
    cmd->add_option("--k", a->k, "routed experts per token, a list (0 = the model's)")->capture_default_str();
    cmd->add_option("--cache", a->cache, "expert cache budgets, a list")->capture_default_str();
    cmd->add_option("--io", a->io, "expert reads, a list of page-cache, direct, mmap")->capture_default_str();
    cmd->add_option("--device", a->device, "a list of cpu, cuda")->capture_default_str();
    cmd->add_option("--vram", a->vram, "CUDA rows: routed-expert VRAM cache")->capture_default_str();
    cmd->add_option("--json", a->json, "write every figure as JSON to this file");
    cmd->add_option("--plot", a->plot, "draw decode tok/s vs cache size per K (.svg, or .png with gnuplot)");
    auto* cold = cmd->add_flag("--cold", a->cold, "evict the model's files from the page cache before each row");
    cmd->add_flag("--drop-caches", a->drop_caches, "with --cold: also drop the whole page cache (root)")->needs(cold);
    cmd->add_flag("--warm", a->warm, "read the model's files into the page cache before each row");
    cmd->add_flag("--no-probe", a->no_probe, "skip the disk bandwidth measurement (no limit column)");
    cmd->add_option("--probe-seconds", a->probe_seconds, "length of the disk bandwidth measurement")->capture_default_str();
    cmd->add_option("--seed", a->seed, "seed of the random prompts and sampling")->capture_default_str();
    cmd->add_option("--threads,-t", a->threads, "compute threads (0 = all cores)");
    cmd->add_option("--io-threads", a->io_threads, "parallel expert reads (and probe reads)")->capture_default_str();
    cmd->add_flag("--in-process", a->in_process, "run rows in this process (peak RSS then accumulates)");
    cmd->add_option("--row-out", a->row_out)->group("");  // child mode: run one row, write its JSON here
    cmd->add_option("--start-state", a->start_state)->group("");
    cmd->add_option("--row-label", a->row_label)->group("");
    return [a]() { return run_bench(*a); };
});

}  // namespace
}  // namespace flashmoe::cli
