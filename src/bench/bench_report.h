// The output of `flashmoe bench`: the machine, the measured disk bandwidth and every row, rendered as
// a Markdown table (what BENCHMARKS.md quotes), a JSON document, and a plot of decode tok/s against
// the expert cache size for each K with the disk-bandwidth limit beside it (plain SVG written here;
// PNG through gnuplot when it is installed).
//
// Thread-safety: plain functions over values. Failure: files that cannot be written are Error (Io);
// a PNG without gnuplot is Error (BadInput) saying to use .svg.
#pragma once

#include "bench/bench_row.h"
#include "bench/bench_system.h"
#include "bench/disk_probe.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace flashmoe::bench {

struct BenchReport {
    std::string command;        // the command line as run
    std::string model_path;     // the packed model measured
    std::string model_summary;  // "35B-A3B shapes, 40 layers, 256 experts, K=8; experts 18.1 GB, dense 1.4 GB, ..."
    uint64_t expert_record_bytes = 0;
    MachineInfo machine;
    std::optional<DiskProbeResult> disk;  // absent with --no-probe
    std::vector<std::string> notes;       // page-cache method, CUDA availability, ...
    std::vector<RowResult> rows;
};

// The streaming limit for a row's decode, disk bandwidth / disk bytes per decoded token (0 when the
// row read less than a quarter of an expert record per token, or no bandwidth was measured), and the
// row's decode as a share of it.
double limit_tok_s(const BenchReport& report, const RowResult& row);
double fraction_of_limit(const BenchReport& report, const RowResult& row);

std::string markdown_table(const BenchReport& report);
std::string text_header(const BenchReport& report);  // machine, disk, model: a few lines
nlohmann::ordered_json to_json(const BenchReport& report);

// Writes the plot; `path` ending in .svg is written directly, .png needs gnuplot on PATH.
void write_plot(const BenchReport& report, const std::string& path);
std::string svg_plot(const BenchReport& report);

}  // namespace flashmoe::bench
