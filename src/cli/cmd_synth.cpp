// flashmoe synth --preset NAME -o OUT.fmoe: a full-size packed model with random weights, for
// measuring speed and memory at real scale (store/synth.h). Ctrl-C (or SIGTERM) stops the write
// between two pieces and removes the partial output, which for the large presets is tens of GB.
#include "cli/command.h"
#include "store/synth.h"
#include "util/error.h"

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <cstdio>

namespace flashmoe::cli {
namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

extern "C" void on_interrupt(int) { g_interrupted.store(true); }

// Routes SIGINT and SIGTERM to the flag for its lifetime.
class InterruptGuard {
public:
    InterruptGuard() {
        old_int_ = std::signal(SIGINT, on_interrupt);
        old_term_ = std::signal(SIGTERM, on_interrupt);
    }
    ~InterruptGuard() {
        std::signal(SIGINT, old_int_);
        std::signal(SIGTERM, old_term_);
    }
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;

private:
    void (*old_int_)(int);
    void (*old_term_)(int);
};

struct SynthArgs {
    std::string preset, quant = "q4", out;
    int64_t layers = 0;
    uint64_t seed = 0;
    bool force = false;
};

CommandRegistration reg("synth", [](CLI::App& app) -> std::function<int()> {
    auto args = std::make_shared<SynthArgs>();
    auto* cmd = app.add_subcommand("synth", "write a full-size packed model with random weights (for benchmarks)");
    std::string presets;
    for (auto& p : synth_preset_names()) presets += (presets.empty() ? "" : "|") + p;
    cmd->add_option("--preset", args->preset, "model shapes: " + presets)->required();
    cmd->add_option("--layers", args->layers, "number of layers (default: the preset's; keeps 3 DeltaNet : 1 attention)")
        ->check(CLI::Range(int64_t(1), int64_t(1000)));
    cmd->add_option("--quant", args->quant, "weight storage: q4 (affine 4-bit, group 64), q8, bf16")
        ->capture_default_str();
    cmd->add_option("--seed", args->seed, "random seed (the same seed writes the same bytes)")->capture_default_str();
    cmd->add_flag("--force", args->force, "replace an existing model at the output path");
    cmd->add_option("-o,--output", args->out, "output model directory (.fmoe)")->required();
    return [args]() {
        SynthOptions o;
        o.preset = args->preset;
        o.layers = args->layers;
        o.quant = parse_synth_quant(args->quant);
        o.seed = args->seed;
        o.force = args->force;
        o.out_dir = args->out;
        o.progress = stderr;
        o.cancel = &g_interrupted;
        SynthResult r;
        try {
            InterruptGuard guard;
            r = write_synth_model(o);
        } catch (const Error&) {
            if (!g_interrupted.load()) throw;
            fmt::print(stderr, "\nflashmoe: synth interrupted; the partial output was removed\n");
            return 130;  // the shell's code for a SIGINT
        }
        fmt::print("{}: {:.2f} GB dense + {:.2f} GB experts, {:.1f} s ({:.0f} MB/s)\n", o.out_dir,
                   double(r.dense_bytes) / 1e9, double(r.expert_bytes) / 1e9, r.total_seconds(), r.mb_per_second());
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
