// Synthetic packed models: full-size Qwen3.5-MoE models with random weights, so that speed and
// memory can be measured at real scale without downloading a checkpoint.
//
// The shapes come from a named preset (the three released sizes, or `tiny` for tests); the layer
// count can be overridden (the 3:1 DeltaNet:attention pattern is kept). Weights are drawn so that a
// forward stays finite and the logits are spread: affine codes are uniform and each group's scale
// gives the dequantised weights a standard deviation near 1/sqrt(fan_in), centred by the bias;
// zero-centred norms sit near 0 (multiplier ~1), the DeltaNet norm near 1, A_log = log(U(1, 16)),
// dt_bias near 0, conv taps ~U with std 1/sqrt(kernel). Every byte is a pure function of (seed,
// tensor or expert, position), computed with a counter-based generator, so the same seed writes
// byte-identical files however the work is split across threads.
//
// Writing goes through PackedWriter (store/packed_writer.h): nothing carries the output name until
// the whole model is flushed, and an interrupted run leaves nothing behind. Expert records are
// generated in runs of ~32 MiB on the thread pool while the previous run is written; the expert files
// the writer created are written with O_DIRECT where the filesystem allows it (buffered writes are
// limited by the page-cache copy, at a third of the disk's speed on the machines measured), else
// through the writer. Either way the bytes are the same.
//
// Thread-safety: write_synth_model is reentrant (no shared state besides the pool it is given).
// Failure: a bad preset, layer count or quantisation, an existing output without `force`, or with
// `force` a path that is not a packed model, is an Error (BadInput) raised before anything is
// written, as is too little free space (Io). OS failures are Error (Io) naming the file; a
// cancellation is Error (BadInput, "interrupted"). In every failure the partial output is removed.
#pragma once

#include "model/config.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace flashmoe {

class ThreadPool;

enum class SynthQuant { Q4, Q8, BF16 };

SynthQuant parse_synth_quant(const std::string& text);  // "q4" | "q8" | "bf16"; BadInput otherwise
std::string synth_quant_name(SynthQuant quant);
std::vector<std::string> synth_preset_names();

// The text config of a preset; `layers` > 0 replaces its layer count. BadInput for an unknown preset.
ModelConfig synth_config(const std::string& preset, int64_t layers = 0);

struct SynthOptions {
    std::string preset = "tiny";
    int64_t layers = 0;  // 0: the preset's own count
    SynthQuant quant = SynthQuant::Q4;
    uint64_t seed = 0;
    bool force = false;  // replace an existing output
    std::string out_dir;
    // Progress on this stream (nullptr: silent). On a terminal the line is redrawn in place;
    // otherwise a plain line is printed every few seconds.
    std::FILE* progress = nullptr;
    bool direct_io = true;  // O_DIRECT expert writes where possible (false: always buffered)
    // Polled between tensors and between runs of experts: once true, the write stops with
    // Error (BadInput, "interrupted") and the partial output is removed. May be set from a signal handler.
    const std::atomic<bool>* cancel = nullptr;
};

struct SynthResult {
    uint64_t dense_bytes = 0;    // tensor payload of dense.safetensors
    uint64_t expert_bytes = 0;   // expert record payload, all layers
    double write_seconds = 0;    // generating and writing every byte
    double flush_seconds = 0;    // fsync and rename at the end
    double total_seconds() const { return write_seconds + flush_seconds; }
    double mb_per_second() const;  // (dense + expert bytes) / total seconds, in 1e6 bytes
};

// Writes the model to options.out_dir. `pool` (nullptr: the default pool) generates the bytes.
SynthResult write_synth_model(const SynthOptions& options, ThreadPool* pool = nullptr);

// A human description of the weight storage, as written into model.json's info.quantization.
std::string synth_quant_description(SynthQuant quant);

}  // namespace flashmoe
