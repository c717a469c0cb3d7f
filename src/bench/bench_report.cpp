#include "bench/bench_report.h"

#include "util/error.h"
#include "util/progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

namespace flashmoe::bench {

namespace {

constexpr double kGiB = 1024.0 * 1024 * 1024;

std::string mean_sd(const std::vector<double>& v, int digits) {
    if (v.empty()) return "-";
    Summary s = summarize(v);
    if (v.size() == 1) return fmt::format("{:.{}f}", s.mean, digits);
    return fmt::format("{:.{}f} ± {:.{}f}", s.mean, digits, s.sd, digits);
}

std::string pct(double share) { return fmt::format("{:.1f}", share * 100); }

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) fail(ErrorKind::Io, "cannot write {}", path);
}

std::string xml_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

}  // namespace

double limit_tok_s(const BenchReport& report, const RowResult& row) {
    if (!report.disk || report.disk->bytes_per_second <= 0) return 0;
    // Less than a quarter of an expert record per token is not streaming (stray page faults): no limit.
    const double per_token = row.decode.disk_bytes_per_token();
    const double floor = std::max(1.0, double(report.expert_record_bytes) / 4);
    return per_token >= floor ? report.disk->bytes_per_second / per_token : 0;
}

double fraction_of_limit(const BenchReport& report, const RowResult& row) {
    const double limit = limit_tok_s(report, row);
    if (limit <= 0 || row.decode_tok_s.empty()) return 0;
    return summarize(row.decode_tok_s).mean / limit;
}

std::string text_header(const BenchReport& r) {
    const MachineInfo& m = r.machine;
    std::string out;
    out += fmt::format("machine: {}, {} CPUs, {:.1f} GiB RAM, {}{}; {}\n", m.cpu_model.empty() ? "unknown CPU" : m.cpu_model,
                       m.cpus, double(m.ram_bytes) / kGiB, m.kernel, m.gpu.empty() ? "" : ", GPU " + m.gpu, m.date_utc);
    out += fmt::format("model:   {} ({})\n", r.model_path, r.model_summary);
    if (r.disk) {
        const DiskProbeResult& d = *r.disk;
        out += fmt::format("disk:    {:.2f} GB/s ({} reads of {} with {} in flight{}, {:.2f} ms each, over {:.1f} s){}\n",
                           d.bytes_per_second / 1e9, d.reads, format_bytes(d.record_bytes), d.threads,
                           d.direct ? ", O_DIRECT" : ", buffered", d.mean_latency_ms, d.seconds,
                           d.note.empty() ? "" : "; " + d.note);
    } else {
        out += "disk:    not measured (--no-probe): no limit column\n";
    }
    for (const auto& n : r.notes) out += fmt::format("note:    {}\n", n);
    return out;
}

// With --io mmap on the CPU the OS page cache is the only cache: the --cache budget plays no part.
std::string cache_label(const RowSpec& s) { return s.io == "mmap" && s.device == "cpu" ? "page cache" : s.cache_text; }

std::string markdown_table(const BenchReport& r) {
    std::string out =
        "| K | cache | io | device | start | pp tok/s | TTFT s | prefill read GB | tg tok/s | disk MB/token | hit % | "
        "I/O wait % | limit tok/s | of limit | peak RSS GiB | tg cores busy / starved | load |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& row : r.rows) {
        const RowSpec& s = row.spec;
        if (!row.ok()) {
            out += fmt::format("| {} | {} | {} | {} | {} | {} ||||||||||||\n", s.k ? fmt::format("{}", s.k) : "model",
                               cache_label(s), s.io, s.device, s.start_state, row.status);
            continue;
        }
        const double limit = limit_tok_s(r, row);
        std::string rss = fmt::format("{:.2f}", double(row.peak_rss) / kGiB);
        if (row.peak_vram) rss += fmt::format(" (VRAM {:.2f})", double(row.peak_vram) / kGiB);
        out += fmt::format(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2f} | {} | {:.1f} | {} | {} | {} | {} | {} | {:.2f} / {:.2f} | {:.1f}-{:.1f} |\n",
            row.k_used, cache_label(s), s.io, s.device, s.start_state, mean_sd(row.prefill_tok_s, 1),
            mean_sd(row.ttft_s, 2), double(row.prefill.disk_bytes ? *row.prefill.disk_bytes : row.prefill.store_bytes) /
                                         1e9 / double(std::max(1, s.reps)),
            mean_sd(row.decode_tok_s, 2), row.decode.disk_bytes_per_token() / 1e6, pct(row.decode.hit_rate()),
            pct(row.decode.io_wait_share()), limit > 0 ? fmt::format("{:.2f}", limit) : "-",
            limit > 0 ? fmt::format("{:.2f}", fraction_of_limit(r, row)) : "-", rss, row.decode.cores_used(),
            row.decode.seconds > 0 ? row.decode.runqueue_seconds / row.decode.seconds : 0.0, row.load_start, row.load_end);
    }
    return out;
}

nlohmann::ordered_json to_json(const BenchReport& r) {
    nlohmann::ordered_json j;
    j["command"] = r.command;
    j["model"] = {{"path", r.model_path}, {"summary", r.model_summary}, {"expert_record_bytes", r.expert_record_bytes}};
    const MachineInfo& m = r.machine;
    j["machine"] = {{"cpu_model", m.cpu_model}, {"cpus", m.cpus},   {"ram_bytes", m.ram_bytes},
                    {"kernel", m.kernel},       {"hostname", m.hostname}, {"gpu", m.gpu},
                    {"date_utc", m.date_utc}};
    if (r.disk) {
        const DiskProbeResult& d = *r.disk;
        j["disk"] = {{"bytes_per_second", d.bytes_per_second}, {"reads", d.reads},         {"bytes", d.bytes},
                     {"seconds", d.seconds},                   {"threads", d.threads},     {"record_bytes", d.record_bytes},
                     {"mean_latency_ms", d.mean_latency_ms},   {"direct", d.direct},       {"note", d.note}};
    } else {
        j["disk"] = nullptr;
    }
    j["notes"] = r.notes;
    j["rows"] = nlohmann::ordered_json::array();
    for (const auto& row : r.rows) {
        nlohmann::ordered_json rj = to_json(row);
        const double limit = limit_tok_s(r, row);
        rj["limit_tok_s"] = limit > 0 ? nlohmann::ordered_json(limit) : nlohmann::ordered_json(nullptr);
        rj["fraction_of_limit"] = limit > 0 ? nlohmann::ordered_json(fraction_of_limit(r, row)) : nullptr;
        j["rows"].push_back(std::move(rj));
    }
    return j;
}

// ---- the plot -----------------------------------------------------------------------------------

namespace {

struct Series {
    std::string label;
    std::vector<std::tuple<double, double, double, double>> points;  // cache GiB, tok/s mean, sd, limit
};

std::vector<Series> plot_series(const BenchReport& r) {
    std::map<std::tuple<int64_t, std::string, std::string>, Series> by_key;
    for (const auto& row : r.rows) {
        if (!row.ok() || row.decode_tok_s.empty()) continue;
        if (cache_label(row.spec) != row.spec.cache_text) continue;  // no cache size to plot it against
        auto key = std::make_tuple(row.k_used, row.spec.io, row.spec.device);
        Series& s = by_key[key];
        s.label = fmt::format("K={} {} {}", row.k_used, row.spec.io, row.spec.device);
        Summary sm = summarize(row.decode_tok_s);
        s.points.emplace_back(double(row.spec.cache_bytes) / kGiB, sm.mean, sm.sd, limit_tok_s(r, row));
    }
    std::vector<Series> out;
    for (auto& [k, s] : by_key) {
        std::sort(s.points.begin(), s.points.end());
        out.push_back(std::move(s));
    }
    return out;
}

double nice_step(double range) {
    const double raw = range / 5;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
        if (m * mag >= raw) return m * mag;
    }
    return 10 * mag;
}

}  // namespace

std::string svg_plot(const BenchReport& r) {
    const std::vector<Series> series = plot_series(r);
    const double W = 760, H = 460, left = 70, right = 210, top = 40, bottom = 60;
    const double pw = W - left - right, ph = H - top - bottom;
    double xmin = 1e300, xmax = 0, ymax = 0, tok_max = 0;
    for (const auto& s : series) {
        for (auto [x, y, sd, lim] : s.points) {
            xmin = std::min(xmin, x);
            xmax = std::max(xmax, x);
            tok_max = std::max(tok_max, y + sd);
            ymax = std::max(ymax, std::max(y + sd, lim));
        }
    }
    if (series.empty()) xmin = 1, xmax = 2, ymax = tok_max = 1;
    // Limits far above every measured speed would flatten the plot: clip them at 3x the best speed.
    const bool clipped = ymax > 3 * tok_max;
    if (clipped) ymax = 3 * tok_max;
    if (ymax <= 0) ymax = 1;
    const double ystep = nice_step(ymax);
    ymax = std::ceil(ymax / ystep) * ystep;
    const bool logx = xmin > 0 && xmax / xmin >= 3.9;
    auto fx = [&](double x) {
        if (xmax <= xmin) return left + pw / 2;
        double t = logx ? (std::log2(x) - std::log2(xmin)) / (std::log2(xmax) - std::log2(xmin)) : (x - xmin) / (xmax - xmin);
        return left + pw * (0.05 + 0.9 * t);
    };
    auto fy = [&](double y) { return top + ph * (1 - std::min(y, ymax) / ymax); };
    const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

    std::string o;
    o += fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                     "width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n",
                     W, H);
    o += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"white\"/>\n", W, H);
    o += fmt::format("<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n", left + pw / 2,
                     xml_escape("decode tok/s vs expert cache size — " +
                                std::filesystem::path(r.model_path).filename().string()));
    // Axes, grid and ticks.
    for (double y = 0; y <= ymax + 1e-9; y += ystep) {
        o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, fy(y),
                         left + pw, fy(y));
        o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:g}</text>\n", left - 6, fy(y) + 4, y);
    }
    std::vector<double> xs;
    for (const auto& s : series)
        for (auto& p : s.points) xs.push_back(std::get<0>(p));
    std::sort(xs.begin(), xs.end());
    xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
    for (double x : xs) {
        o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#999\"/>\n", fx(x),
                         top + ph, top + ph + 5);
        o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:g}</text>\n", fx(x), top + ph + 18, x);
    }
    o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", left, top, pw, ph);
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">expert cache (GiB{})</text>\n", left + pw / 2,
                     H - 18, logx ? ", log scale" : "");
    o += fmt::format("<text transform=\"translate(18 {:.1f}) rotate(-90)\" text-anchor=\"middle\">decode tok/s</text>\n",
                     top + ph / 2);

    // Series: measured (solid, with ±sd bars) and the disk-bandwidth limit (dashed).
    double ly = top + 10;
    for (size_t i = 0; i < series.size(); ++i) {
        const Series& s = series[i];
        const char* c = colors[i % std::size(colors)];
        std::string line, limit;
        for (auto [x, y, sd, lim] : s.points) {
            line += fmt::format("{:.1f},{:.1f} ", fx(x), fy(y));
            if (lim > 0) limit += fmt::format("{:.1f},{:.1f} ", fx(x), fy(lim));
            o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"/>\n", fx(x), fy(y), c);
            if (sd > 0) {
                o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\"/>\n",
                                 fx(x), fy(y - sd), fy(y + sd), c);
            }
            if (lim > 0) {
                o += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"6\" height=\"6\" fill=\"none\" stroke=\"{}\"/>\n",
                                 fx(x) - 3, fy(lim) - 3, c);
            }
        }
        if (s.points.size() > 1) {
            o += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", line, c);
        }
        if (!limit.empty() && s.points.size() > 1) {
            o += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" "
                             "stroke-dasharray=\"6 4\"/>\n", limit, c);
        }
        o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\"/>\n",
                         W - right + 12, ly, W - right + 36, c);
        o += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", W - right + 42, ly + 4, xml_escape(s.label));
        ly += 18;
        o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"1.5\" "
                         "stroke-dasharray=\"6 4\"/>\n", W - right + 12, ly, W - right + 36, c);
        o += fmt::format("<text x=\"{}\" y=\"{}\">limit (disk bw)</text>\n", W - right + 42, ly + 4);
        ly += 22;
    }
    if (series.empty()) {
        o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">no decode rows</text>\n", left + pw / 2,
                         top + ph / 2);
    }
    if (clipped) {
        o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\">limits above {:g} tok/s are drawn at the top</text>\n",
                         left + 4, top + 12, ymax);
    }
    if (r.disk) {
        o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"10\">disk {:.2f} GB/s measured</text>\n", W - right + 12,
                         ly + 6, r.disk->bytes_per_second / 1e9);
    }
    o += "</svg>\n";
    return o;
}

void write_plot(const BenchReport& r, const std::string& path) {
    const std::string ext = std::filesystem::path(path).extension().string();
    if (ext == ".svg") {
        write_file(path, svg_plot(r));
        return;
    }
    if (ext != ".png") fail(ErrorKind::BadInput, "--plot {}: the file name must end in .svg or .png", path);
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fail(ErrorKind::BadInput, "--plot {}: PNG output needs gnuplot, which is not installed; use a .svg name", path);
    }
    // gnuplot draws from a data file: one block per series (cache GiB, tok/s, sd, limit).
    const std::string data = path + ".dat", script = path + ".gp";
    std::string d, plots;
    const std::vector<Series> series = plot_series(r);
    for (size_t i = 0; i < series.size(); ++i) {
        for (auto [x, y, sd, lim] : series[i].points) d += fmt::format("{} {} {} {}\n", x, y, sd, lim > 0 ? lim : NAN);
        d += "\n\n";
        plots += fmt::format("{}'{}' index {} using 1:2:3 with yerrorlines lw 2 lc {} title '{}', "
                             "'{}' index {} using 1:4 with lines dt 2 lc {} title 'limit'",
                             i ? ", " : "", data, i, i + 1, series[i].label, data, i, i + 1);
    }
    write_file(data, d);
    write_file(script, fmt::format("set terminal pngcairo size 900,540\nset output '{}'\nset xlabel 'expert cache (GiB)'\n"
                                   "set ylabel 'decode tok/s'\nset yrange [0:*]\nset key outside right\nset grid\n"
                                   "plot {}\n",
                                   path, plots.empty() ? "NaN notitle" : plots));
    int rc = std::system(fmt::format("gnuplot '{}'", script).c_str());
    std::remove(data.c_str());
    std::remove(script.c_str());
    if (rc != 0) fail(ErrorKind::Io, "--plot {}: gnuplot failed (exit status {})", path, rc);
}

}  // namespace flashmoe::bench
