// The affine bit packing (against literal bytes laid out as MLX packs them), dequantize_row against
// an independent decoder, and the errors that malformed weight views must raise.
#include "kernel_test_util.h"

#include "kernels/cpu/matmul.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace flashmoe;
using namespace flashmoe::test;

namespace {

// Two rows of 32 columns, one group of 32. Row 0 holds codes i % 2^bits, row 1 holds
// (5 i + 3) % 2^bits, packed as a little-endian bit stream (column c at bit c * bits). The bytes
// were written out by hand from that rule, and agree with MLX's extract_bits for 3/5/6 bits
// (8 codes in 3 bytes, 8 in 5 bytes, 4 in 3 bytes).
struct Packed {
    int bits;
    std::vector<uint8_t> row0, row1;
};

const Packed kPacked[] = {
    {2, {0xe4, 0xe4, 0xe4, 0xe4, 0xe4, 0xe4, 0xe4, 0xe4}, {0x93, 0x93, 0x93, 0x93, 0x93, 0x93, 0x93, 0x93}},
    {3,
     {0x88, 0xc6, 0xfa, 0x88, 0xc6, 0xfa, 0x88, 0xc6, 0xfa, 0x88, 0xc6, 0xfa},
     {0x43, 0x75, 0xc6, 0x43, 0x75, 0xc6, 0x43, 0x75, 0xc6, 0x43, 0x75, 0xc6}},
    {4,
     {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe},
     {0x83, 0x2d, 0xc7, 0x61, 0x0b, 0xa5, 0x4f, 0xe9, 0x83, 0x2d, 0xc7, 0x61, 0x0b, 0xa5, 0x4f, 0xe9}},
    {5,
     {0x20, 0x88, 0x41, 0x8a, 0x39, 0x28, 0xa9, 0xc5, 0x9a, 0x7b, 0x30, 0xca, 0x49, 0xab, 0xbd, 0x38, 0xeb, 0xcd, 0xbb,
      0xff},
     {0x03, 0x35, 0x79, 0x79, 0x30, 0x0b, 0x56, 0xfd, 0x49, 0x72, 0x13, 0x77, 0x71, 0x58, 0xb4, 0x1b, 0x14, 0xf5, 0x68,
      0xf6}},
    {6,
     {0x40, 0x20, 0x0c, 0x44, 0x61, 0x1c, 0x48, 0xa2, 0x2c, 0x4c, 0xe3, 0x3c,
      0x50, 0x24, 0x4d, 0x54, 0x65, 0x5d, 0x58, 0xa6, 0x6d, 0x5c, 0xe7, 0x7d},
     {0x03, 0xd2, 0x48, 0x17, 0x17, 0x9a, 0x2b, 0x5c, 0xeb, 0x3f, 0x91, 0x38,
      0x13, 0xd6, 0x89, 0x27, 0x1b, 0xdb, 0x3b, 0x50, 0x28, 0x0f, 0x95, 0x79}},
    {8,
     {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
      0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f},
     {0x03, 0x08, 0x0d, 0x12, 0x17, 0x1c, 0x21, 0x26, 0x2b, 0x30, 0x35, 0x3a, 0x3f, 0x44, 0x49, 0x4e,
      0x53, 0x58, 0x5d, 0x62, 0x67, 0x6c, 0x71, 0x76, 0x7b, 0x80, 0x85, 0x8a, 0x8f, 0x94, 0x99, 0x9e}},
};

// The tiny matrix of kPacked with scale/bias (0.5, -1) on row 0 and (2, 0.25) on row 1: exact in
// every scale dtype, so each weight is known exactly.
struct TinyMatrix {
    std::vector<uint8_t> data, scales, biases;
    Matrix view;
    TinyMatrix(const Packed& p, DType sd) {
        data = p.row0;
        data.insert(data.end(), p.row1.begin(), p.row1.end());
        const size_t es = dtype_size(sd);
        scales.resize(2 * es);
        biases.resize(2 * es);
        store_scalar(scales.data(), sd, 0.5f);
        store_scalar(scales.data() + es, sd, 2.0f);
        store_scalar(biases.data(), sd, -1.0f);
        store_scalar(biases.data() + es, sd, 0.25f);
        view = Matrix{WeightFormat::Affine, 2, 32, data.data(), p.bits, 32, scales.data(), biases.data(), sd};
    }
    static float expected(int bits, int64_t row, int64_t col) {
        const int64_t levels = int64_t(1) << bits;
        return row == 0 ? 0.5f * float(col % levels) - 1.0f : 2.0f * float((5 * col + 3) % levels) + 0.25f;
    }
};

TEST(AffinePacking, DequantizeRowDecodesHandPackedBytes) {
    for (const Packed& p : kPacked) {
        ASSERT_EQ(p.row0.size(), size_t(32 * p.bits / 8));
        for (DType sd : {DType::BF16, DType::F16, DType::F32}) {
            TinyMatrix m(p, sd);
            ASSERT_EQ(m.view.row_bytes(), p.row0.size());
            std::vector<float> out(32);
            for (int64_t r = 0; r < 2; ++r) {
                dequantize_row(m.view, r, out.data());
                for (int64_t c = 0; c < 32; ++c)
                    EXPECT_EQ(out[size_t(c)], TinyMatrix::expected(p.bits, r, c))
                        << "bits " << p.bits << " scales " << dtype_name(sd) << " row " << r << " col " << c;
            }
        }
    }
}

// The SIMD kernels unpack codes their own way (nibble tables, de-interleaved activations): a
// one-hot x picks out a single weight, so each kernel must reproduce every packed weight exactly.
TEST(AffinePacking, EveryKernelDecodesHandPackedBytes) {
    std::vector<Isa> isas{Isa::Scalar};
    if (int(detected_isa()) >= int(Isa::Avx2)) isas.push_back(Isa::Avx2);
    if (int(detected_isa()) >= int(Isa::Avx512)) isas.push_back(Isa::Avx512);
    for (const Packed& p : kPacked)
        for (Isa isa : isas)
            for (int64_t n : {1, 2}) {
                TinyMatrix m(p, DType::BF16);
                for (int64_t c = 0; c < 32; ++c) {
                    std::vector<float> x(size_t(32 * n), 0.0f), y(size_t(2 * n), -7.0f);
                    for (int64_t t = 0; t < n; ++t) x[size_t(t * 32 + c)] = 1.0f;
                    matmul_rows(isa, m.view, x.data(), n, y.data(), 0, 2);
                    for (int64_t t = 0; t < n; ++t)
                        for (int64_t r = 0; r < 2; ++r)
                            EXPECT_EQ(y[size_t(t * 2 + r)], TinyMatrix::expected(p.bits, r, c))
                                << isa_name(isa) << " bits " << p.bits << " n " << n << " row " << r << " col " << c;
                }
            }
}

// dequantize_row on random codes against a decoder written differently (a 64-bit window).
TEST(AffinePacking, DequantizeRowMatchesIndependentDecoderOnRandomCodes) {
    std::mt19937_64 rng(test_seed());
    for (int bits : {2, 3, 4, 5, 6, 8})
        for (int group : {32, 64, 128})
            for (DType sd : {DType::BF16, DType::F16, DType::F32}) {
                MatrixSpec spec{WeightFormat::Affine, 3, 4 * group, bits, group, sd, 1};
                RandomMatrix m(spec, rng);
                std::vector<float> out(size_t(spec.cols));
                const size_t es = dtype_size(sd);
                for (int64_t r = 0; r < spec.rows; ++r) {
                    dequantize_row(m.view, r, out.data());
                    const uint8_t* row = static_cast<const uint8_t*>(m.view.data) + r * int64_t(m.view.row_bytes());
                    for (int64_t c = 0; c < spec.cols; ++c) {
                        uint64_t window = 0;
                        const int64_t first = c * bits / 8;
                        for (int64_t k = 0; k < 2 && first + k < int64_t(m.view.row_bytes()); ++k)
                            window |= uint64_t(row[first + k]) << (8 * k);
                        const uint64_t q = (window >> (c * bits % 8)) & ((uint64_t(1) << bits) - 1);
                        const int64_t g = r * (spec.cols / group) + c / group;
                        const float s = load_scalar(static_cast<const uint8_t*>(m.view.scales) + g * es, sd);
                        const float b = load_scalar(static_cast<const uint8_t*>(m.view.biases) + g * es, sd);
                        const float want = s * float(q) + b;
                        ASSERT_EQ(out[size_t(c)], want) << spec.name() << " row " << r << " col " << c;
                    }
                }
            }
}

// ---- malformed views fail with BadModel, naming what is wrong ----

void expect_bad_model(const Matrix& w, const std::string& fragment) {
    std::vector<float> x(size_t(std::max<int64_t>(w.cols, 1)), 1.0f), y(size_t(std::max<int64_t>(w.rows, 1)));
    auto check = [&](auto&& call, const char* what) {
        try {
            call();
            ADD_FAILURE() << what << ": no error for a matrix that should be rejected (" << fragment << ")";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::BadModel) << what << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
                << what << ": message '" << e.what() << "' does not name '" << fragment << "'";
        }
    };
    check([&] { matmul(w, x.data(), 1, y.data(), nullptr); }, "matmul");
    check([&] { matmul_rows(Isa::Scalar, w, x.data(), 1, y.data(), 0, w.rows); }, "matmul_rows");
    check([&] { dequantize_row(w, 0, y.data()); }, "dequantize_row");
}

TEST(AffineValidation, UnsupportedBitsGroupsAndScaleTypesRaiseBadModel) {
    std::vector<uint8_t> data(4096, 0x5a), params(1024, 0x3f);
    const Matrix good{WeightFormat::Affine, 2, 256, data.data(), 4, 64, params.data(), params.data(), DType::BF16};
    for (int bits : {0, 1, 7, 9, 16}) {
        Matrix w = good;
        w.bits = bits;
        expect_bad_model(w, "bits " + std::to_string(bits));
    }
    for (int group : {0, 16, 48, 256}) {
        Matrix w = good;
        w.group_size = group;
        expect_bad_model(w, "group size " + std::to_string(group));
    }
    for (DType sd : {DType::I8, DType::F64, DType::U32}) {
        Matrix w = good;
        w.scale_dtype = sd;
        expect_bad_model(w, std::string("dtype ") + std::string(dtype_name(sd)));
    }
    Matrix ragged = good;
    ragged.cols = 96;  // not a multiple of 64
    expect_bad_model(ragged, "not a multiple of the group size 64");
    Matrix no_scales = good;
    no_scales.scales = nullptr;
    expect_bad_model(no_scales, "missing scales");
    Matrix no_data = good;
    no_data.data = nullptr;
    expect_bad_model(no_data, "no data");
    Matrix bad_format = good;
    bad_format.format = WeightFormat(42);
    expect_bad_model(bad_format, "unknown weight format 42");

    // The same matrix with valid fields is accepted (the checks are not rejecting everything).
    std::vector<float> x(256, 1.0f), y(2);
    EXPECT_NO_THROW(matmul(good, x.data(), 1, y.data(), nullptr));
}

TEST(CpuIsa, NamesAndDetection) {
    EXPECT_EQ(isa_name(Isa::Scalar), "scalar");
    EXPECT_EQ(isa_name(Isa::Avx2), "avx2");
    EXPECT_EQ(isa_name(Isa::Avx512), "avx512");
    EXPECT_LE(int(active_isa()), int(detected_isa()));  // a forced ISA never exceeds the CPU
}

TEST(CpuIsa, UnsupportedIsaIsAnErrorNotACrash) {
    if (detected_isa() == Isa::Avx512) GTEST_SKIP() << "every ISA is supported on this CPU";
    // Asking for an instruction set the CPU lacks is a caller bug, reported instead of SIGILL.
    std::vector<uint8_t> data(64 * 4, 1);
    const Matrix w{WeightFormat::F32, 8, 8, data.data()};
    float x[8] = {}, y[8];
    EXPECT_THROW(matmul_rows(Isa::Avx512, w, x, 1, y, 0, 8), Error);
}

}  // namespace
