// Front end of the CPU matmul: validates the weight view, picks the instruction set once per
// process, prepares the activations once per call and splits rows across the thread pool.
#include "kernels/cpu/matmul.h"

#include <cpuid.h>

#include "kernels/cpu/kernels_internal.h"
#include "util/error.h"
#include "util/thread_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace flashmoe {

namespace cpu {

ScratchFloats::ScratchFloats(size_t count) : data_(std::make_unique<float[]>(count)) {}
ScratchFloats::~ScratchFloats() = default;

bool uses_int8_activations(const Matrix& w) {
    return w.format == WeightFormat::Affine && (w.bits == 4 || w.bits == 8);
}

void check_matrix(const Matrix& w) {
    const std::string_view fmt_name = weight_format_name(w.format);
    if (fmt_name == "?") fail(ErrorKind::BadModel, "weight matrix: unknown weight format {}", int(w.format));
    if (w.rows < 0 || w.cols < 0)
        fail(ErrorKind::BadModel, "{} weight matrix: negative shape [{}, {}]", fmt_name, w.rows, w.cols);
    if (w.rows > 0 && w.cols > 0 && w.data == nullptr)
        fail(ErrorKind::BadModel, "{} weight matrix [{}, {}]: no data", fmt_name, w.rows, w.cols);
    if (w.format != WeightFormat::Affine) return;

    const int b = w.bits;
    if (b != 2 && b != 3 && b != 4 && b != 5 && b != 6 && b != 8)
        fail(ErrorKind::BadModel, "affine weight matrix [{}, {}]: unsupported bits {} (supported: 2, 3, 4, 5, 6, 8)",
             w.rows, w.cols, b);
    const int g = w.group_size;
    if (g != 32 && g != 64 && g != 128)
        fail(ErrorKind::BadModel,
             "affine weight matrix [{}, {}]: unsupported group size {} (supported: 32, 64, 128)", w.rows, w.cols, g);
    if (w.cols % g != 0)
        fail(ErrorKind::BadModel, "affine weight matrix [{}, {}]: {} columns are not a multiple of the group size {}",
             w.rows, w.cols, w.cols, g);
    if (w.scale_dtype != DType::BF16 && w.scale_dtype != DType::F16 && w.scale_dtype != DType::F32)
        fail(ErrorKind::BadModel,
             "affine weight matrix [{}, {}]: unsupported scale/bias dtype {} (supported: bf16, f16, f32)", w.rows,
             w.cols, dtype_name(w.scale_dtype));
    if (w.rows > 0 && w.cols > 0 && (w.scales == nullptr || w.biases == nullptr))
        fail(ErrorKind::BadModel, "affine weight matrix [{}, {}]: missing scales or biases", w.rows, w.cols);
}

}  // namespace cpu

namespace {

// F16C read from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows it.
bool has_f16c() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}

Isa detect() {
    __builtin_cpu_init();
    const bool base = __builtin_cpu_supports("fma") && has_f16c();
    if (base && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return Isa::Avx512;
    if (base && __builtin_cpu_supports("avx2")) return Isa::Avx2;
    return Isa::Scalar;
}

bool supported(Isa isa) { return int(isa) <= int(detected_isa()); }

Isa choose() {
    const char* env = std::getenv("FLASHMOE_ISA");
    if (env == nullptr || *env == '\0') return detected_isa();
    const std::string_view name(env);
    Isa wanted;
    if (name == "scalar") {
        wanted = Isa::Scalar;
    } else if (name == "avx2") {
        wanted = Isa::Avx2;
    } else if (name == "avx512") {
        wanted = Isa::Avx512;
    } else {
        fail(ErrorKind::BadInput, "FLASHMOE_ISA={}: expected scalar, avx2 or avx512", name);
    }
    if (!supported(wanted)) {
        // A forced ISA the CPU lacks would crash with SIGILL; run with what the CPU has instead.
        fmt::print(stderr, "flashmoe: FLASHMOE_ISA={} is not supported by this CPU; using {}\n", name,
                   isa_name(detected_isa()));
        return detected_isa();
    }
    return wanted;
}

bool detect_vnni() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
}

bool has_vnni() {
    static const bool vnni = detect_vnni();
    return vnni;
}

// The chosen mode: FLASHMOE_MATMUL_ACT=f32|int8 at start-up, later set_matmul_activations; -1 while
// none was chosen (each backend then takes its best).
int initial_activations() {
    const char* env = std::getenv("FLASHMOE_MATMUL_ACT");
    if (env == nullptr || *env == '\0') return -1;
    MatmulActivations mode;
    if (!parse_matmul_activations(env, &mode))
        fail(ErrorKind::BadInput, "FLASHMOE_MATMUL_ACT={}: expected f32 or int8", env);
    return int(mode);
}

std::atomic<int>& activations_state() {
    static std::atomic<int> mode{initial_activations()};
    return mode;
}

const cpu::IsaKernels& kernels_for(Isa isa, MatmulActivations act) {
    if (!supported(isa))
        fail(ErrorKind::Internal, "matmul: instruction set {} is not supported by this CPU (best: {})",
             isa_name(isa), isa_name(detected_isa()));
    const bool int8 = act == MatmulActivations::Int8;
    switch (isa) {
        case Isa::Avx512: return int8 && has_vnni() ? cpu::avx512_q8_kernels() : cpu::avx512_kernels();
        case Isa::Avx2: return cpu::avx2_kernels();
        case Isa::Scalar: break;
    }
    return int8 ? cpu::scalar_q8_kernels() : cpu::scalar_kernels();
}

void check_call(const Matrix& w, const float* x, int64_t n, float* y) {
    cpu::check_matrix(w);
    if (n < 0) fail(ErrorKind::Internal, "matmul: negative token count {}", n);
    if (n > 0 && w.rows > 0 && (x == nullptr || y == nullptr))
        fail(ErrorKind::Internal, "matmul: null activation or output pointer");
}

// Below this much weight data a parallel_for costs more (wake-ups, locking) than it saves.
constexpr int64_t kMinParallelBytes = 64 * 1024;
// Each chunk should stream at least this much weight data, and whole 16-row tiles.
constexpr int64_t kChunkBytes = 32 * 1024;
constexpr int64_t kRowTile = 16;

}  // namespace

Isa detected_isa() {
    static const Isa isa = detect();
    return isa;
}

Isa active_isa() {
    static const Isa isa = choose();
    return isa;
}

bool int8_activations_available() { return active_isa() == Isa::Avx512 && has_vnni(); }

MatmulActivations matmul_activations() { return matmul_activations_for(int8_activations_available()); }

MatmulActivations matmul_activations_for(bool backend_has_int8) {
    const int chosen = activations_state().load(std::memory_order_relaxed);
    if (chosen >= 0) return MatmulActivations(chosen);
    return backend_has_int8 ? MatmulActivations::Int8 : MatmulActivations::F32;
}

void set_matmul_activations(MatmulActivations mode) {
    activations_state().store(int(mode), std::memory_order_relaxed);
}

std::string_view matmul_activations_name(MatmulActivations mode) {
    return mode == MatmulActivations::Int8 ? "int8" : "f32";
}

bool parse_matmul_activations(std::string_view name, MatmulActivations* out) {
    if (name == "f32") {
        *out = MatmulActivations::F32;
    } else if (name == "int8") {
        *out = MatmulActivations::Int8;
    } else {
        return false;
    }
    return true;
}

std::string_view isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return "scalar";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512: return "avx512";
    }
    return "?";
}

void matmul_rows(Isa isa, const Matrix& w, const float* x, int64_t n, float* y, int64_t row_begin,
                 int64_t row_end, MatmulActivations act) {
    check_call(w, x, n, y);
    if (row_begin < 0 || row_end > w.rows || row_begin > row_end)
        fail(ErrorKind::Internal, "matmul_rows: row range [{}, {}) outside [0, {})", row_begin, row_end, w.rows);
    if (n == 0 || row_begin == row_end) return;
    const cpu::IsaKernels& k = kernels_for(isa, act);
    std::vector<float> xprep(k.prep_floats(w, n));
    if (!xprep.empty()) k.prepare(w, x, n, xprep.data());
    cpu::KernelArgs args{&w, x, n, y, xprep.empty() ? nullptr : xprep.data()};
    if (w.cols == 0) {
        for (int64_t t = 0; t < n; ++t) std::fill(y + t * w.rows + row_begin, y + t * w.rows + row_end, 0.0f);
        return;
    }
    k.rows(args, row_begin, row_end);
}

void matmul(const Matrix& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
    check_call(w, x, n, y);
    if (n == 0 || w.rows == 0) return;
    if (w.cols == 0) {
        std::fill(y, y + n * w.rows, 0.0f);
        return;
    }
    const cpu::IsaKernels& k = kernels_for(active_isa(), matmul_activations());
    std::vector<float> xprep(k.prep_floats(w, n));
    if (!xprep.empty()) k.prepare(w, x, n, xprep.data());
    const cpu::KernelArgs args{&w, x, n, y, xprep.empty() ? nullptr : xprep.data()};

    const int64_t row_bytes = std::max<int64_t>(int64_t(w.row_bytes()), 1);
    const int64_t total = row_bytes * w.rows * std::min<int64_t>(n, 64);
    if (pool == nullptr || pool->size() == 1 || total < kMinParallelBytes) {
        k.rows(args, 0, w.rows);
        return;
    }
    int64_t grain = std::max<int64_t>(kRowTile, kChunkBytes / row_bytes);
    grain = (grain + kRowTile - 1) / kRowTile * kRowTile;
    pool->parallel_for(w.rows, grain, [&](int64_t begin, int64_t end) { k.rows(args, begin, end); });
}

void matmul_pair(const Matrix& a, const Matrix& b, const float* x, int64_t n, float* ya, float* yb,
                 ThreadPool* pool) {
    check_call(a, x, n, ya);
    check_call(b, x, n, yb);
    const bool shared = a.format == b.format && a.cols == b.cols && a.bits == b.bits && a.group_size == b.group_size;
    if (!shared || n == 0 || a.cols == 0 || a.rows == 0 || b.rows == 0) {
        matmul(a, x, n, ya, pool);
        matmul(b, x, n, yb, pool);
        return;
    }
    const cpu::IsaKernels& k = kernels_for(active_isa(), matmul_activations());
    std::vector<float> xprep(k.prep_floats(a, n));
    if (!xprep.empty()) k.prepare(a, x, n, xprep.data());
    const float* prep = xprep.empty() ? nullptr : xprep.data();
    const cpu::KernelArgs args_a{&a, x, n, ya, prep}, args_b{&b, x, n, yb, prep};
    const int64_t rows = a.rows + b.rows;
    auto run = [&](int64_t begin, int64_t end) {  // rows of A, then rows of B
        if (begin < a.rows) k.rows(args_a, begin, std::min(end, a.rows));
        if (end > a.rows) k.rows(args_b, std::max(begin, a.rows) - a.rows, end - a.rows);
    };

    const int64_t row_bytes = std::max<int64_t>(int64_t(a.row_bytes()), 1);
    const int64_t total = row_bytes * rows * std::min<int64_t>(n, 64);
    if (pool == nullptr || pool->size() == 1 || total < kMinParallelBytes) {
        run(0, rows);
        return;
    }
    int64_t grain = std::max<int64_t>(kRowTile, kChunkBytes / row_bytes);
    grain = (grain + kRowTile - 1) / kRowTile * kRowTile;
    pool->parallel_for(rows, grain, run);
}

void dequantize_row(const Matrix& w, int64_t row, float* out) {
    cpu::check_matrix(w);
    if (row < 0 || row >= w.rows)
        fail(ErrorKind::Internal, "dequantize_row: row {} outside [0, {})", row, w.rows);
    cpu::dequantize_row_ref(w, row, out);
}

}  // namespace flashmoe
